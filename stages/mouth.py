"""Mouth and head measures from MediaPipe's 478 face-mesh landmarks.

Shared by face tracking (``stages/faces.py``) and active-speaker detection
(``stages/asd.py``), so both read the same signal.

- ``measure_mouth_open``: inner-lip gap over mouth width (unitless, scale and
  in-plane-rotation invariant; about 0 closed, 0.3-0.6 wide open).
- ``estimate_yaw_deg``: head yaw from MediaPipe's facial transformation matrix
  (degrees, 0 = frontal, positive = the face turns to the image's left).
- ``mesh_keypoints``: the 5 keypoints (eyes, nose tip, mouth corners) that face
  alignment for identity embeddings needs, when the detector gives none.
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


# Face-mesh indices standing in for insightface's 5 keypoints (image-left eye first):
# iris centres, nose tip, mouth corners.
MESH_KEYPOINTS = (468, 473, 1, 61, 291)


def mesh_keypoints(landmarks: np.ndarray) -> np.ndarray:
    """(5, 2) eye centres, nose tip and mouth corners from 478 landmarks, in insightface's order."""
    pts = landmarks[list(MESH_KEYPOINTS), :2].astype(np.float32)
    if pts[0, 0] > pts[1, 0]:
        pts[[0, 1]] = pts[[1, 0]]
    if pts[3, 0] > pts[4, 0]:
        pts[[3, 4]] = pts[[4, 3]]
    return pts
