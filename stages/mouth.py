"""Mouth and head measures from MediaPipe's 478 face-mesh landmarks.

Shared by face tracking (``stages/faces.py``) and active-speaker detection
(``stages/asd.py``), so both read the same signal.

- ``measure_mouth_open``: inner-lip gap over mouth width (unitless, scale and
  in-plane-rotation invariant; about 0 closed, 0.3-0.6 wide open).
- ``estimate_yaw_deg``: head yaw from MediaPipe's facial transformation matrix
  (degrees, 0 = frontal, positive = the face turns to the image's left).
"""

from __future__ import annotations

import numpy as np

UPPER_INNER_LIP = 13  # face-mesh index: centre of the upper lip's inner edge
LOWER_INNER_LIP = 14  # centre of the lower lip's inner edge
MOUTH_LEFT = 61  # outer mouth corners
MOUTH_RIGHT = 291
# Extra inner-lip pairs (upper, lower) either side of the centre, averaged with it
# so a lopsided mouth still reads as open.
INNER_LIP_PAIRS = ((13, 14), (82, 87), (312, 317), (81, 178), (311, 402))


def measure_mouth_open(landmarks: np.ndarray) -> np.ndarray:
    """Inner-lip gap / mouth width for (..., 478, 2|3) landmarks in any consistent unit.

    Returns an array of shape ``landmarks.shape[:-2]``; NaN where the landmarks are NaN.
    """
    xy = np.asarray(landmarks, dtype=np.float64)[..., :2]
    gaps = [np.linalg.norm(xy[..., u, :] - xy[..., lo, :], axis=-1) for u, lo in INNER_LIP_PAIRS]
    width = np.linalg.norm(xy[..., MOUTH_LEFT, :] - xy[..., MOUTH_RIGHT, :], axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.mean(gaps, axis=0) / width


def estimate_yaw_deg(matrix: np.ndarray) -> np.ndarray:
    """Yaw in degrees from (..., 4, 4) facial transformation matrices (rotation part, Y-axis angle)."""
    m = np.asarray(matrix, dtype=np.float64)
    r = m[..., :3, :3]
    scale = np.linalg.norm(r[..., :, 0], axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sin_yaw = -r[..., 2, 0] / scale
    return np.degrees(np.arcsin(np.clip(sin_yaw, -1.0, 1.0)))
