"""Time alignment onto the 93.75 Hz mel grid and gap filling."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from blendshape_fit.resample import fill_missing_frames, resample_to_mel
from shards.codes import CODE_DIM
from shards.spec import FRAME_RATE, count_mel_frames, mel_frame_times


def test_mel_grid_is_exactly_93_75_hz() -> None:
    assert FRAME_RATE == Fraction(375, 4)
    assert count_mel_frames(0) == 1 and count_mel_frames(255) == 1 and count_mel_frames(256) == 2
    assert count_mel_frames(24000 * 10) == 1 + 240000 // 256 == 938
    t = mel_frame_times(1.5, 3751)
    assert t[375] == 1.5 + 4.0 and t[3750] == pytest.approx(1.5 + 40.0, abs=1e-12)
    assert np.diff(t) == pytest.approx(256 / 24000)


def test_linear_signal_is_reproduced_and_edges_clamp() -> None:
    fps = 30.0
    t_src = 2.0 + np.arange(90) / fps  # 3 s of video from 2.0 s
    codes = np.zeros((90, CODE_DIM))
    codes[:, 0] = 0.1 * t_src
    codes[:, 54] = 5.0 - t_src
    n = count_mel_frames(int(2.5 * 24000))
    out = resample_to_mel(codes, 2.0, fps, 2.25, n)
    assert out.shape == (n, CODE_DIM) and out.dtype == np.float32
    t_mel = mel_frame_times(2.25, n)
    inside = t_mel <= t_src[-1]
    np.testing.assert_allclose(out[inside, 0], 0.1 * t_mel[inside], atol=1e-6)
    np.testing.assert_allclose(out[inside, 54], 5.0 - t_mel[inside], atol=1e-5)
    np.testing.assert_allclose(out[~inside, 0], 0.1 * t_src[-1], atol=1e-6)  # clamped at the end
    early = resample_to_mel(codes, 2.0, fps, 1.0, 10)  # mel grid before the first video frame
    np.testing.assert_allclose(early[:, 0], 0.2, atol=1e-7)


def test_no_drift_over_a_long_clip() -> None:
    fps = 30.0
    n_src = 30 * 600  # 10 minutes
    codes = np.zeros((n_src, CODE_DIM))
    codes[:, 0] = np.arange(n_src) / fps  # the value is the frame time
    n = count_mel_frames(24000 * 590)
    out = resample_to_mel(codes, 0.0, fps, 0.0, n).astype(np.float64)
    np.testing.assert_allclose(out[:, 0], mel_frame_times(0.0, n), atol=2e-4)  # float32 storage only


def test_angles_are_interpolated_after_unwrapping() -> None:
    codes = np.zeros((2, CODE_DIM))
    codes[:, 53] = [np.pi - 0.1, -np.pi + 0.1]  # roll crossing +-pi: 0.2 rad apart, not 6.08
    out = resample_to_mel(codes, 0.0, 1.0, 0.0, count_mel_frames(24000))
    mid = out[int(len(out) / 2), 53]
    assert abs(abs(mid) - np.pi) < 0.11  # stays near +-pi, never swings through 0
    assert np.abs(np.diff(out[:, 53])).max() < 0.01


def test_fill_missing_frames_interpolates_gaps_and_holds_ends() -> None:
    codes = np.full((6, CODE_DIM), np.nan)
    valid = np.array([False, True, False, False, True, False])
    codes[1] = 1.0
    codes[4] = 4.0
    out = fill_missing_frames(codes, valid)
    np.testing.assert_allclose(out[:, 0], [1.0, 1.0, 2.0, 3.0, 4.0, 4.0])
    assert not np.isnan(out).any()
    assert not fill_missing_frames(codes, np.zeros(6, bool)).any()
