"""Pose normalization of 3D landmarks and the per-clip identity (neutral-shape) offset.

Eq. 1 has no identity term: a subject whose rest face differs from the canonical mesh
(a lower lip that sits lower, rounder eyes) would otherwise be explained by blendshapes
(a permanent ``mouthLowerDown``, a blink clipped at 0). Before fitting a clip we estimate
the subject's neutral offset in model space and fit against ``mean + offset``:

    offset = n / (n + n0) * mean_t( canon_t - mean - B_exp . b_t )

where ``canon_t`` are the frame's 3D landmarks similarity-aligned to the canonical mesh
(MediaPipe's rigid ``procrustes_landmark_basis`` points and weights) and ``b_t`` are
MediaPipe's blendshape scores for that frame. So the offset is what MediaPipe's scores and
our basis leave unexplained on average, i.e. identity; per-frame motion still comes only
from our own fit. Iris points take the offset of their eye opening, so eye codes stay
gaze relative to the eye (not relative to the clip's average gaze).
"""

from __future__ import annotations

import numpy as np

from blendshape_fit.canonical import LEFT_EYE_RING, RIGHT_EYE_RING
from blendshape_fit.face_model import FaceModel

# MediaPipe's rigid landmarks and weights (procrustes_landmark_basis of the geometry pipeline
# in face_landmarker.task; read with canonical.read_canonical_geometry and pinned here).
PROCRUSTES_IDS = np.array([4, 6, 10, 33, 54, 67, 117, 119, 121, 127, 129, 132, 133, 136, 143, 147, 198, 205,
                           263, 284, 297, 346, 348, 350, 356, 358, 361, 362, 365, 372, 376, 420, 425])
PROCRUSTES_WEIGHTS = np.array([0.07091, 0.0321, 0.008447, 0.058724, 0.007667, 0.009078, 0.009792, 0.014565,
                               0.018591, 0.005198, 0.120625, 0.00556, 0.053286, 0.06689, 0.014817, 0.014263,
                               0.025462, 0.047252, 0.058724, 0.007667, 0.009078, 0.009792, 0.014565, 0.018591,
                               0.005198, 0.120625, 0.00556, 0.053286, 0.06689, 0.014817, 0.014263, 0.025462,
                               0.047252])
NEUTRAL_PRIOR_FRAMES = 5.0  # n0: shrinkage of the offset for very short clips, frames


def to_canonical_axes(points_px: np.ndarray) -> np.ndarray:
    """Pixels (x right, y down, z away) -> canonical axes (x right, y up, z towards camera)."""
    return np.asarray(points_px, dtype=np.float64) * np.array([1.0, -1.0, -1.0])


def normalize_pose(points: np.ndarray, target: np.ndarray, ids: np.ndarray = PROCRUSTES_IDS,
                   weights: np.ndarray = PROCRUSTES_WEIGHTS) -> np.ndarray:
    """Weighted 3D similarity Procrustes of frames (F, N, 3) onto ``target`` (N, 3) via ``ids``."""
    w = weights / weights.sum()
    src = points[:, ids]
    dst = target[ids]
    sm = np.einsum("k,fkj->fj", w, src)
    dm = w @ dst
    sc = src - sm[:, None]
    dc = dst - dm
    cov = np.einsum("k,ki,fkj->fij", w, dc, sc)
    u, sv, vt = np.linalg.svd(cov)
    d = np.ones((points.shape[0], 3))
    d[:, 2] = np.sign(np.linalg.det(u @ vt))
    rot = u @ (d[:, :, None] * vt)
    scale = (sv * d).sum(-1) / np.einsum("k,fkj,fkj->f", w, sc, sc)
    return scale[:, None, None] * np.einsum("fij,fnj->fni", rot, points - sm[:, None]) + dm


def estimate_neutral(landmarks_px: np.ndarray, mp_scores: np.ndarray, model: FaceModel,
                     valid: np.ndarray | None = None, prior_frames: float = NEUTRAL_PRIOR_FRAMES) -> np.ndarray:
    """Identity offset (478, 3) cm from 3D landmarks (T, 478, 3) px and MediaPipe scores (T, 52)."""
    pts = np.asarray(landmarks_px, dtype=np.float64)
    ok = np.isfinite(pts).all(axis=(1, 2))
    if valid is not None:
        ok &= np.asarray(valid, dtype=bool)
    n = int(ok.sum())
    if n == 0:
        return np.zeros_like(model.mean)
    canon = normalize_pose(to_canonical_axes(pts[ok]), model.mean)
    scores = np.asarray(mp_scores, dtype=np.float64)[ok, 1:]
    explained = model.mean + (scores @ model.exp_basis.reshape(model.exp_basis.shape[0], -1)).reshape(n, -1, 3)
    offset = (canon - explained).mean(axis=0) * (n / (n + prior_frames))
    for ring, iris in ((RIGHT_EYE_RING, slice(468, 473)), (LEFT_EYE_RING, slice(473, 478))):
        offset[iris] = offset[list(ring)].mean(axis=0)
    return offset
