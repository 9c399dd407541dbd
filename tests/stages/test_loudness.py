"""BS.1770 loudness: the standard's calibration tone and the normalization gain."""

from __future__ import annotations

import numpy as np
import pytest

from stages.audio import AudioConfig, standardize
from stages.loudness import compute_normalization_gain_db, measure_integrated_loudness


def tone(sr: int, amp: float = 1.0, seconds: float = 5.0, hz: float = 997.0) -> np.ndarray:
    return amp * np.sin(2 * np.pi * hz * np.arange(int(sr * seconds)) / sr)


def test_full_scale_997hz_sine_is_minus_3_lufs_at_48k():
    # BS.1770: a 0 dBFS 997 Hz sine in one channel reads -3.01 LUFS.
    assert measure_integrated_loudness(tone(48000), 48000) == pytest.approx(-3.01, abs=0.05)


def test_24k_agrees_with_48k():
    assert measure_integrated_loudness(tone(24000), 24000) == pytest.approx(-3.01, abs=0.1)


def test_silence_and_too_short_are_minus_inf():
    assert measure_integrated_loudness(np.zeros(48000), 24000) == float("-inf")
    assert measure_integrated_loudness(tone(24000, seconds=0.2), 24000) == float("-inf")


def test_normalization_reaches_target_and_respects_peak():
    cfg = AudioConfig(target_lufs=-20.0, max_peak_dbfs=-1.0)
    a24, a16, before, gain = standardize(tone(24000, amp=0.01).astype(np.float32), 24000, cfg)
    assert before == pytest.approx(-43.0, abs=0.2)
    assert measure_integrated_loudness(a24, 24000) == pytest.approx(-20.0, abs=0.1)
    assert len(a16) == pytest.approx(len(a24) * 2 / 3, abs=2)
    # A peaky signal: the ceiling wins over the loudness target.
    g = compute_normalization_gain_db(loudness_lufs=-40.0, peak=0.5, target_lufs=-20.0, max_peak_dbfs=-1.0)
    assert g == pytest.approx(-1.0 - 20 * np.log10(0.5))
