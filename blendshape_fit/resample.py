"""Time alignment: video-rate codes onto the mel frame grid, and gap filling.

Mel frame ``k`` of a clip is centred at ``clip_start_s + k * 256 / 24000`` seconds: the mel
rate is 24000 / 256 = 93.75 Hz exactly (never 94). A clip of ``n`` samples at 24 kHz has
``1 + n // 256`` mel frames. Interpolation is linear; angle columns are unwrapped first;
times outside the source grid take the nearest end value (clamped).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from shards.codes import ANGLE_COLUMNS
from shards.spec import AUDIO_SR, HOP


def unwrap_angles(codes: np.ndarray, columns: tuple[int, ...] = ANGLE_COLUMNS) -> np.ndarray:
    """Copy of ``codes`` (T, D) with the angle columns unwrapped along time."""
    out = np.array(codes, dtype=np.float64, copy=True)
    if out.shape[0] > 1 and columns:
        cols = list(columns)
        out[:, cols] = np.unwrap(out[:, cols], axis=0)
    return out


def fill_missing_frames(codes: np.ndarray, valid: np.ndarray, columns: tuple[int, ...] = ANGLE_COLUMNS,
                        times_s: np.ndarray | None = None) -> np.ndarray:
    """Fill rows where ``valid`` is False by linear interpolation in time (held at the ends).

    ``times_s`` are the rows' times (seconds; None: evenly spaced). All-invalid input gives
    zeros. Angle columns are unwrapped over the valid rows first.
    """
    codes = np.asarray(codes, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool)
    n = codes.shape[0]
    if not valid.any():
        return np.zeros_like(codes)
    idx = np.flatnonzero(valid)
    good = unwrap_angles(codes[idx], columns)
    if idx.size == n:
        return good
    t = np.arange(n, dtype=np.float64) if times_s is None else np.asarray(times_s, dtype=np.float64)
    return interpolate_rows(good, t[idx], t)


def interpolate_rows(values: np.ndarray, src_pos: np.ndarray, dst_pos: np.ndarray) -> np.ndarray:
    """Linear interpolation of rows (S, D) at increasing ``src_pos`` onto ``dst_pos``, clamped."""
    s = src_pos.shape[0]
    if s == 1:
        return np.repeat(values[:1], dst_pos.shape[0], axis=0)
    i1 = np.clip(np.searchsorted(src_pos, dst_pos, side="right"), 1, s - 1)
    i0 = i1 - 1
    span = src_pos[i1] - src_pos[i0]
    w = np.clip((dst_pos - src_pos[i0]) / np.where(span > 0, span, 1.0), 0.0, 1.0)[:, None]
    return (1.0 - w) * values[i0] + w * values[i1]


def resample_to_mel(codes: np.ndarray, src_start_s: float, src_fps: float, clip_start_s: float, n_frames: int,
                    columns: tuple[int, ...] = ANGLE_COLUMNS) -> np.ndarray:
    """Codes (T, D) on the grid ``src_start_s + i / src_fps`` -> (n_frames, D) float32 on the mel grid.

    Source positions of the mel centres are computed from exact ratios
    (``k * 256 * fps / 24000``), so no drift builds up over long clips.
    """
    codes = np.asarray(codes, dtype=np.float64)
    if codes.shape[0] == 0:
        raise ValueError("no source frames to resample")
    fps = Fraction(src_fps).limit_denominator(1_000_000)
    step = Fraction(HOP, AUDIO_SR) * fps  # source frames per mel frame (8/25 at 30 fps)
    k = np.arange(n_frames, dtype=np.float64)
    pos = (clip_start_s - src_start_s) * float(fps) + k * step.numerator / step.denominator
    src = np.arange(codes.shape[0], dtype=np.float64)
    out = interpolate_rows(unwrap_angles(codes, columns), src, pos)
    return out.astype(np.float32)


def resample_at_times(codes: np.ndarray, src_times_s: np.ndarray, dst_times_s: np.ndarray,
                      columns: tuple[int, ...] = ANGLE_COLUMNS) -> np.ndarray:
    """Codes (T, D) at increasing ``src_times_s`` (e.g. each video frame's own time) -> (len(dst), D) float32.

    Linear between the two source rows around each destination time, angles unwrapped first,
    clamped to the end rows outside the source range: the one interpolation between a video
    frame's presentation time and the mel grid.
    """
    codes = np.asarray(codes, dtype=np.float64)
    if codes.shape[0] == 0:
        raise ValueError("no source frames to resample")
    src = np.asarray(src_times_s, dtype=np.float64)
    out = interpolate_rows(unwrap_angles(codes, columns), src, np.asarray(dst_times_s, dtype=np.float64))
    return out.astype(np.float32)
