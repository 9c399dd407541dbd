"""mel: 100-bin log-mel spectrogram at 24 kHz, Vocos ``mel_24khz`` features.

The exact formula (what Vocos' ``MelSpectrogramFeatures`` computes through
torchaudio, ``padding="center"``):

    x      = reflect_pad(audio, 512)                       # n_fft // 2 on each side
    X[k,f] = sum_n x[k*256 + n] * w[n] * exp(-2*pi*i*f*n/1024),  n < 1024
             w = periodic Hann window of length 1024, f = 0..512
    M[k,m] = sum_f fb[f,m] * |X[k,f]|                      # power = 1 (magnitude)
             fb = HTK-scale triangular filters, 100 bins, 0 Hz .. 12 kHz, no area norm
    mel    = log(max(M, 1e-7))                             # natural log

    n_frames = 1 + n_samples // 256,  frame k centred at k * 256 / 24000 s

The frame rate is 24000/256 = 93.75 Hz exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import torch

from stages.base import Resources, Stage
from stages.item import AUDIO_SR, FileItem

N_FFT = 1024
HOP = 256
WIN = 1024
N_MELS = 100
LOG_FLOOR = 1e-7
FRAME_RATE = Fraction(AUDIO_SR, HOP)  # 93.75 Hz, exactly

MEL_SPEC = {
    "sample_rate": AUDIO_SR, "n_fft": N_FFT, "hop_length": HOP, "win_length": WIN, "n_mels": N_MELS,
    "f_min": 0.0, "f_max": AUDIO_SR / 2, "window": "hann_periodic", "center": True, "pad_mode": "reflect",
    "power": 1.0, "mel_scale": "htk", "norm": None, "log": "ln(max(x, 1e-7))",
    "frame_rate": f"{FRAME_RATE.numerator}/{FRAME_RATE.denominator}", "compatible_with": "vocos mel_24khz",
}


def count_frames(n_samples: int) -> int:
    """Mel frames of a clip of ``n_samples`` samples at 24 kHz (centered STFT)."""
    return 1 + n_samples // HOP


def hz_to_mel_htk(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + f / 700.0)


def mel_to_hz_htk(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def build_mel_filterbank(sample_rate: int = AUDIO_SR, n_fft: int = N_FFT, n_mels: int = N_MELS,
                         f_min: float = 0.0, f_max: float | None = None) -> np.ndarray:
    """HTK triangular filterbank ``(n_fft // 2 + 1, n_mels)`` without area normalization."""
    f_max = sample_rate / 2 if f_max is None else f_max
    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    m_pts = np.linspace(hz_to_mel_htk(np.array(f_min)), hz_to_mel_htk(np.array(f_max)), n_mels + 2)
    f_pts = mel_to_hz_htk(m_pts)
    f_diff = np.diff(f_pts)
    slopes = f_pts[None, :] - freqs[:, None]
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return np.maximum(0.0, np.minimum(down, up))


class LogMel:
    """Batched torch implementation of the formula above (CPU or GPU)."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.window = torch.hann_window(WIN, periodic=True, dtype=torch.float32, device=self.device)
        self.fb = torch.from_numpy(build_mel_filterbank().astype(np.float32)).to(self.device)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """``(n_frames, 100)`` float32 log-mel of 24 kHz mono ``audio``."""
        x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)).to(self.device)
        pad_mode = "reflect" if len(x) > N_FFT // 2 else "constant"
        x = torch.nn.functional.pad(x[None, None], (N_FFT // 2, N_FFT // 2), mode=pad_mode)[0, 0]
        spec = torch.stft(x, N_FFT, HOP, WIN, self.window, center=False, return_complex=True).abs()
        mel = torch.clamp(self.fb.T @ spec, min=LOG_FLOOR).log()
        return mel.T.contiguous().cpu().numpy()


def quantize_pcm16(audio: np.ndarray) -> np.ndarray:
    """Round float audio to the 16-bit grid the shard's FLAC stores (values k / 32768)."""
    q = np.clip(np.round(np.asarray(audio, dtype=np.float64) * 32768.0), -32768, 32767)
    return (q / 32768.0).astype(np.float32)


@dataclass
class MelConfig:
    torch_threads: int = 1  # intra-op threads for the STFT (per worker)


@dataclass
class MelStage(Stage):
    """Computes each surviving segment's mel from the 16-bit audio that the shard stores.

    The clip audio is quantized first, so ``mel == LogMel()(decode(audio_flac))``
    holds exactly for every shard row.
    """

    name: str = "mel"
    cfg: MelConfig = field(default_factory=MelConfig)
    resources: Resources = field(default_factory=lambda: Resources(num_cpus=1, batch_size=1))
    _mel: LogMel | None = field(default=None, repr=False)

    def setup(self) -> None:
        if self._mel is None:
            torch.set_num_threads(self.cfg.torch_threads)
            self._mel = LogMel()

    def process_item(self, item: FileItem) -> None:
        self.setup()
        assert item.audio_24k is not None
        for seg in item.segments:
            clip = quantize_pcm16(item.audio_24k[seg.start_sample:seg.end_sample])
            seg.mel = self._mel(clip)
            assert seg.mel.shape[0] == count_frames(len(clip)), "mel length must be 1 + n // 256"
        item.record_model(self.name, f"logmel-{N_MELS}x{N_FFT}/{HOP}@{AUDIO_SR}")


def frame_times(n_frames: int, start_s: float = 0.0) -> np.ndarray:
    """Centre times (seconds) of ``n_frames`` mel frames of a clip starting at ``start_s``."""
    return start_s + np.arange(n_frames) * (HOP / AUDIO_SR)


assert math.isclose(float(FRAME_RATE), 93.75)
