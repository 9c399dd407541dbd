"""The log-mel matches Vocos' mel_24khz definition, checked two independent ways."""

from __future__ import annotations

from fractions import Fraction

import librosa
import numpy as np
import pytest

from stages.mel import FRAME_RATE, LogMel, build_mel_filterbank, count_frames, frame_times, quantize_pcm16


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


def test_frame_rate_is_exactly_93_75():
    assert FRAME_RATE == Fraction(24000, 256)
    assert float(FRAME_RATE) == 93.75
    t = frame_times(4, 1.0)
    assert np.allclose(np.diff(t), 256 / 24000)


@pytest.mark.parametrize("n", [0, 1, 255, 256, 257, 24000, 24001])
def test_frame_count(n):
    assert count_frames(n) == 1 + n // 256


def test_matches_librosa(speech_24k):
    ours = LogMel()(speech_24k)
    S = librosa.feature.melspectrogram(y=speech_24k, sr=24000, n_fft=1024, hop_length=256, win_length=1024,
                                       n_mels=100, htk=True, norm=None, power=1.0, center=True, pad_mode="reflect")
    ref = np.log(np.maximum(S, 1e-7)).T
    assert ours.shape == ref.shape == (count_frames(len(speech_24k)), 100)
    assert np.abs(ours - ref).max() < 1e-3


def test_matches_numpy_formula(speech_24k):
    clip = speech_24k[: 24000 // 2]
    ours = LogMel()(clip)
    ref = numpy_reference_log_mel(clip)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 1e-3


def test_filterbank_matches_librosa_htk():
    ours = build_mel_filterbank()
    ref = librosa.filters.mel(sr=24000, n_fft=1024, n_mels=100, htk=True, norm=None).T
    assert np.abs(ours - ref).max() < 1e-6


def test_quantize_is_the_flac_grid():
    x = np.array([0.0, 0.5, -1.0, 0.99999, 1.0, 1e-6], np.float32)
    q = quantize_pcm16(x)
    assert np.all(np.isclose(q * 32768, np.round(q * 32768)))
    assert q.max() <= 32767 / 32768
