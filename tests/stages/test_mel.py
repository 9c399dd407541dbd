"""The log-mel matches Vocos' mel_24khz definition, checked two independent ways."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from shards.spec import count_mel_frames
from stages.mel import LogMel


def numpy_reference_log_mel(audio: np.ndarray) -> np.ndarray:
    """Straight from the formula: reflect pad, periodic Hann, |DFT|, HTK filters, ln(max(., 1e-7))."""
    x = np.pad(audio.astype(np.float64), (512, 512), mode="reflect")
    n_frames = 1 + (len(x) - 1024) // 256
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(1024) / 1024)
    frames = np.stack([x[k * 256:k * 256 + 1024] * window for k in range(n_frames)])
    n = np.arange(1024)
    f = np.arange(513)
    dft = np.exp(-2j * np.pi * np.outer(n, f) / 1024)
    mag = np.abs(frames @ dft)
    # Filterbank written out independently of stages.mel: HTK mel, Hz-space triangles.
    mel = lambda hz: 2595 * np.log10(1 + hz / 700)  # noqa: E731
    inv = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    edges = inv(np.linspace(mel(0.0), mel(12000.0), 102))
    freqs = np.arange(513) * 24000 / 1024
    fb = np.zeros((513, 100))
    for m in range(100):
        lo, c, hi = edges[m], edges[m + 1], edges[m + 2]
        fb[:, m] = np.clip(np.minimum((freqs - lo) / (c - lo), (hi - freqs) / (hi - c)), 0, None)
    return np.log(np.maximum(mag @ fb, 1e-7))


@pytest.fixture(scope="module")
def speech_24k(media_dir):
    import soundfile as sf
    import soxr

    a, sr = sf.read(str(media_dir / "f5tts_basic_ref_en.wav"), dtype="float32", always_2d=True)
    return soxr.resample(a.mean(1), sr, 24000)[: 24000 * 2]


def test_matches_librosa(speech_24k):
    ours = LogMel()(speech_24k)
    S = librosa.feature.melspectrogram(y=speech_24k, sr=24000, n_fft=1024, hop_length=256, win_length=1024,
                                       n_mels=100, htk=True, norm=None, power=1.0, center=True, pad_mode="reflect")
    ref = np.log(np.maximum(S, 1e-7)).T
    assert ours.shape == ref.shape == (count_mel_frames(len(speech_24k)), 100)
    assert np.abs(ours - ref).max() < 1e-3


def test_matches_numpy_formula(speech_24k):
    clip = speech_24k[: 24000 // 2]
    ours = LogMel()(clip)
    ref = numpy_reference_log_mel(clip)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 1e-3
