"""shards/spec.py: the frame grid, mel settings and 16-bit grid every other package imports."""

from __future__ import annotations

import io
from fractions import Fraction

import librosa
import numpy as np
import pytest
import soundfile as sf

from shards.spec import (
    AUDIO_SR,
    FRAME_RATE,
    FRAME_RATE_HZ,
    FRAME_RATE_TEXT,
    MEL_SPEC,
    build_mel_filterbank,
    count_mel_frames,
    mel_frame_times,
    quantize_pcm16,
    to_pcm16,
)


def test_frame_rate_is_exactly_93_75():
    assert FRAME_RATE == Fraction(24000, 256)
    assert FRAME_RATE_HZ == 93.75
    assert FRAME_RATE_TEXT == "24000/256" and Fraction(FRAME_RATE_TEXT) == FRAME_RATE
    assert Fraction(MEL_SPEC["frame_rate"]) == FRAME_RATE
    t = mel_frame_times(1.0, 4)
    assert t[0] == 1.0 and np.allclose(np.diff(t), 256 / 24000)


@pytest.mark.parametrize("n", [0, 1, 255, 256, 257, 24000, 24001])
def test_frame_count(n):
    assert count_mel_frames(n) == 1 + n // 256


def test_filterbank_matches_librosa_htk():
    ours = build_mel_filterbank()
    ref = librosa.filters.mel(sr=24000, n_fft=1024, n_mels=100, htk=True, norm=None).T
    assert np.abs(ours - ref).max() < 1e-6


def test_quantize_is_the_flac_grid():
    x = np.array([0.0, 0.5, -1.0, 0.99999, 1.0, 1e-6, -2.0], np.float32)
    q = quantize_pcm16(x)
    assert np.all(np.isclose(q * 32768, np.round(q * 32768)))
    assert q.max() <= 32767 / 32768 and q.min() == -1.0
    # What FLAC stores (to_pcm16) decodes to exactly the quantized floats.
    buf = io.BytesIO()
    sf.write(buf, to_pcm16(x), AUDIO_SR, format="FLAC", subtype="PCM_16")
    buf.seek(0)
    decoded, rate = sf.read(buf, dtype="float32")
    assert rate == AUDIO_SR
    np.testing.assert_array_equal(decoded, q)
