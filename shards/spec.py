"""The feature spec of a shard: audio rate, log-mel settings and the 93.75 Hz frame grid.

Every stored clip is 24 kHz mono. Its log-mel (Vocos ``mel_24khz`` features, formula in
``stages/mel.py``) has ``1 + n_samples // 256`` frames; frame ``k`` is centred at
``clip_start_s + k * 256 / 24000`` seconds. The visual codes share that grid, so a clip's
mel and codes have the same length and time base as its audio. The frame rate is
24000 / 256 = 93.75 Hz exactly, never 94.

This module is the one definition of these facts; everything else imports them.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

AUDIO_SR = 24000  # Hz: the sample rate of every stored clip
N_FFT = 1024  # samples: STFT size of the log-mel
HOP = 256  # samples at 24 kHz: one mel (and visual-code) frame
WIN = 1024  # samples: Hann window length
N_MELS = 100  # log-mel bins per frame
LOG_FLOOR = 1e-7  # magnitude floor before the natural log
FRAME_RATE = Fraction(AUDIO_SR, HOP)  # 93.75 Hz, exactly: mel and visual frames per second
FRAME_RATE_HZ = float(FRAME_RATE)  # 93.75, for float arithmetic
FRAME_RATE_TEXT = f"{AUDIO_SR}/{HOP}"  # "24000/256": how shards and npz files write the rate
VIDEO_TRACK_FPS = 30.0  # Hz: grid of the per-video-frame columns mp_blendshapes and face_boxes (i at start_s + i / 30)
PCM16_SCALE = 32768.0  # the shard's FLAC stores 16-bit samples: value k / 32768

MEL_SPEC: dict[str, Any] = {
    "sample_rate": AUDIO_SR, "n_fft": N_FFT, "hop_length": HOP, "win_length": WIN, "n_mels": N_MELS,
    "f_min": 0.0, "f_max": AUDIO_SR / 2, "window": "hann_periodic", "center": True, "pad_mode": "reflect",
    "power": 1.0, "mel_scale": "htk", "norm": None, "log": "ln(max(x, 1e-7))",
    "frame_rate": f"{FRAME_RATE.numerator}/{FRAME_RATE.denominator}", "compatible_with": "vocos mel_24khz",
}
AUDIO_SPEC: dict[str, Any] = {"sample_rate": AUDIO_SR, "channels": 1, "codec": "flac"}


def count_mel_frames(n_samples: int) -> int:
    """Mel frames of a clip of ``n_samples`` samples at 24 kHz (centred STFT): ``1 + n // 256``."""
    return 1 + int(n_samples) // HOP


def mel_frame_times(clip_start_s: float, n_frames: int) -> np.ndarray:
    """Centres ``(n_frames,)`` in seconds of the mel frames of a clip: ``clip_start_s + k * 256 / 24000``."""
    k = np.arange(n_frames, dtype=np.float64)
    return clip_start_s + (k * HOP) / AUDIO_SR


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1] as the int16 samples the shard's FLAC stores (rounded, clipped)."""
    q = np.clip(np.round(np.asarray(audio, dtype=np.float64) * PCM16_SCALE), -PCM16_SCALE, PCM16_SCALE - 1)
    return q.astype(np.int16)


def quantize_pcm16(audio: np.ndarray) -> np.ndarray:
    """Float audio rounded to the 16-bit grid the shard's FLAC stores (values k / 32768), float32."""
    return (to_pcm16(audio).astype(np.float64) / PCM16_SCALE).astype(np.float32)


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
