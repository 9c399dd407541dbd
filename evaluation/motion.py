"""Motion statistics of 61-d codes (93.75 Hz): speaking style, jaw-speech coupling and diversity over seeds.

Style (per clip, compared between a generated clip and its reference; the paper's claim is style mimicking):

* ``head_motion_dps``: head-motion energy, the RMS angular speed of (pitch, yaw, roll) in degrees per second;
* ``blink_per_min``: blinks per minute: rises of the mean of ``eyeBlinkLeft`` and ``eyeBlinkRight``
  through ``BLINK_ON`` after having been below ``BLINK_OFF`` (hysteresis);
* ``expr_range``: expression range, the mean over the 51 blendshapes of their 5-95 percentile span
  (blendshape weight, 0-1).

``jaw_env_corr``: Pearson correlation, over frames, of ``jawOpen`` with the speech envelope (the log of the
summed mel energy per frame, from the clip's own log-mel), at zero lag. Real speech opens the jaw on
loud syllables; a face that ignores the audio scores near 0.

``pose_diversity_deg``: for one clip generated with several seeds, the standard deviation across seeds of
(pitch, yaw, roll), averaged over frames and the three angles, in degrees; 0 for a deterministic system.
"""

from __future__ import annotations

import numpy as np

from core.signals import pearson
from shards.codes import EXPRESSION_NAMES, EXPRESSION_SLICE, ROTATION_SLICE
from shards.spec import FRAME_RATE_HZ

BLINK_ON = 0.5  # blendshape weight: a blink starts when the mean eyeBlink rises through this
BLINK_OFF = 0.35  # ... after having been below this (hysteresis, so jitter is not counted twice)
BLINK_COLUMNS = (EXPRESSION_NAMES.index("eyeBlinkLeft"), EXPRESSION_NAMES.index("eyeBlinkRight"))
JAW_OPEN = EXPRESSION_SLICE.start + EXPRESSION_NAMES.index("jawOpen")
STYLE_STATS = ("head_motion_dps", "blink_per_min", "expr_range")


def head_motion_dps(codes: np.ndarray) -> float:
    """RMS angular speed of the head rotation, degrees per second (NaN for fewer than 2 frames)."""
    rot = np.degrees(np.asarray(codes, np.float64)[:, ROTATION_SLICE])
    if len(rot) < 2:
        return float("nan")
    speed = np.diff(rot, axis=0) * FRAME_RATE_HZ
    return float(np.sqrt((speed ** 2).sum(axis=1).mean()))


def count_blinks(blink: np.ndarray, on: float = BLINK_ON, off: float = BLINK_OFF) -> int:
    """Rises of ``blink`` through ``on`` after having been below ``off``."""
    count, armed = 0, True
    for v in np.asarray(blink, np.float64):
        if armed and v >= on:
            count, armed = count + 1, False
        elif not armed and v < off:
            armed = True
    return count


def blink_per_min(codes: np.ndarray) -> float:
    """Blinks per minute of ``(N, 61)`` codes (NaN when empty)."""
    x = np.asarray(codes, np.float64)
    if not len(x):
        return float("nan")
    blink = x[:, list(BLINK_COLUMNS)].mean(axis=1)
    return count_blinks(blink) / (len(x) / FRAME_RATE_HZ / 60.0)


def expr_range(codes: np.ndarray) -> float:
    """Mean over the 51 blendshapes of their 5-95 percentile span (weight units)."""
    x = np.asarray(codes, np.float64)[:, EXPRESSION_SLICE]
    if not len(x):
        return float("nan")
    p5, p95 = np.percentile(x, [5, 95], axis=0)
    return float((p95 - p5).mean())


def style_stats(codes: np.ndarray) -> dict[str, float]:
    """The three style statistics of one clip (names in ``STYLE_STATS``)."""
    return {"head_motion_dps": head_motion_dps(codes), "blink_per_min": blink_per_min(codes),
            "expr_range": expr_range(codes)}


def speech_envelope(mel: np.ndarray) -> np.ndarray:
    """``(N,)`` log of the summed mel magnitude per frame (the shards' natural-log mel)."""
    m = np.asarray(mel, np.float64)
    top = m.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(m - top).sum(axis=1, keepdims=True)))[:, 0]


def jaw_env_corr(codes: np.ndarray, mel: np.ndarray) -> float:
    """Pearson correlation of ``jawOpen`` with the speech envelope over the common frames."""
    n = min(len(codes), len(mel))
    return pearson(np.asarray(codes)[:n, JAW_OPEN], speech_envelope(np.asarray(mel)[:n]))


def pose_diversity_deg(samples: list[np.ndarray]) -> float:
    """Std across seeds of the head rotation, mean over frames and angles, degrees (NaN for < 2 samples)."""
    if len(samples) < 2:
        return float("nan")
    n = min(len(s) for s in samples)
    rot = np.degrees(np.stack([np.asarray(s, np.float64)[:n, ROTATION_SLICE] for s in samples]))
    return float(rot.std(axis=0).mean())


def style_consistency(generated: list[dict[str, float]], reference: list[dict[str, float]]) -> dict[str, float]:
    """Per statistic: the mean absolute gap between generated clip and its reference, and their Pearson
    correlation across clips (``<stat>_gap``, ``<stat>_corr``; the correlation is NaN under 3 clips)."""
    out: dict[str, float] = {}
    for name in STYLE_STATS:
        g = np.array([d[name] for d in generated], np.float64)
        r = np.array([d[name] for d in reference], np.float64)
        ok = np.isfinite(g) & np.isfinite(r)
        out[f"{name}_gap"] = float(np.abs(g[ok] - r[ok]).mean()) if ok.any() else float("nan")
        out[f"{name}_corr"] = pearson(g, r)
    return out
