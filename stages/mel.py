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

from dataclasses import dataclass, field

import numpy as np
import torch

from shards.spec import (
    AUDIO_SR,
    HOP,
    LOG_FLOOR,
    N_FFT,
    N_MELS,
    WIN,
    build_mel_filterbank,
    count_mel_frames,
    quantize_pcm16,
)
from stages.base import Resources, Stage
from stages.item import FileItem


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
            clip = quantize_pcm16(item.slice_audio_24k(seg.start_sample, seg.end_sample))
            seg.mel = self._mel(clip)
            assert seg.mel.shape[0] == count_mel_frames(len(clip)), "mel length must be 1 + n // 256"
        item.record_model(self.name, f"logmel-{N_MELS}x{N_FFT}/{HOP}@{AUDIO_SR}")
