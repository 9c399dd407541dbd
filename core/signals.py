"""Small statistics on 1-D signals, shared by the trainers, the evaluation and the benches.

Pure numpy (the ``core`` layer imports no torch, Ray or MediaPipe).
"""

from __future__ import annotations

import numpy as np


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equal-length series over the frames where both are finite; NaN when
    fewer than 3 such frames remain or either series is constant there."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) < 3 or a.std() < 1e-12 or b.std() < 1e-12:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])
