"""Fréchet distances of facial motion: E-FID (51 expression blendshapes) and P-FID (6 head-pose values).

The Fréchet (2-Wasserstein) distance between Gaussians fitted to two sets of feature vectors::

    FD = |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))

Features are taken over windows, not single frames, so that motion counts as well as posture: a clip's
``(N, 61)`` codes at 93.75 Hz are cut into windows of ``window_frames`` frames every ``hop_frames``, and
each window gives the per-column mean and standard deviation of its frames (``2 * 51`` values for
E-FID, ``2 * 6`` for P-FID). A face held still has the right mean but zero spread, and is far from
real speech. :func:`frechet_distance` is in the features' units squared; the harness's
:func:`cross_fold_frechet` first divides each feature by its spread over the real windows, so E-FID and
P-FID are dimensionless (the codes mix blendshape weights, radians, image units and ``-ln`` scale,
``shards/codes.py``).

Pose is compared relative to the speaker's reference (:func:`center_pose`: the reference's mean pose is
subtracted), because where a camera puts the head (translation, scale) differs far more between sources
than any motion does, and a generator is asked to keep its reference's placement, not to guess it.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg

from shards.codes import EXPRESSION_SLICE, POSE_SLICE

WINDOW_FRAMES = 32  # frames per window (0.34 s at 93.75 Hz)
HOP_FRAMES = 16  # frames between window starts
SCALE_FLOOR = 1e-6  # added to each feature's real std before dividing by it
EPS = 1e-6  # diagonal offset when the covariance product is singular (as pytorch-fid)


def fit_gaussian(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mean (D,), covariance (D, D))`` of ``features (M, D)``; needs ``M >= 2``."""
    x = np.asarray(features, np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors of one size, got shape {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def frechet_distance(mu_a: np.ndarray, cov_a: np.ndarray, mu_b: np.ndarray, cov_b: np.ndarray) -> float:
    """The Fréchet distance between ``N(mu_a, cov_a)`` and ``N(mu_b, cov_b)`` (>= 0)."""
    mu_a, mu_b = np.atleast_1d(mu_a).astype(np.float64), np.atleast_1d(mu_b).astype(np.float64)
    cov_a, cov_b = np.atleast_2d(cov_a).astype(np.float64), np.atleast_2d(cov_b).astype(np.float64)
    diff = mu_a - mu_b
    with warnings.catch_warnings():  # few windows: singular covariances are expected, handled below
        warnings.simplefilter("ignore")
        covmean, _ = linalg.sqrtm(cov_a @ cov_b, disp=False)
        if not np.isfinite(covmean).all():
            offset = np.eye(len(mu_a)) * EPS
            covmean = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    covmean = np.real(covmean)
    value = float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean))
    return max(value, 0.0)


def frechet_of_sets(a: np.ndarray, b: np.ndarray) -> float:
    """The Fréchet distance between Gaussians fitted to the feature sets ``a (M, D)`` and ``b (K, D)``."""
    return frechet_distance(*fit_gaussian(a), *fit_gaussian(b))


def window_features(codes: np.ndarray, columns: slice, window_frames: int = WINDOW_FRAMES,
                    hop_frames: int = HOP_FRAMES) -> np.ndarray:
    """``(M, 2 * C)``: per window of ``codes[:, columns]``, the column means then the column stds.

    A clip shorter than one window gives one window over all its frames; an empty clip gives none.
    """
    x = np.asarray(codes, np.float64)[:, columns]
    n = len(x)
    if n == 0:
        return np.zeros((0, 2 * x.shape[1]))
    starts = range(0, n - window_frames + 1, hop_frames) if n >= window_frames else [0]
    wins = [x[s:s + window_frames] for s in starts]
    return np.stack([np.concatenate([w.mean(0), w.std(0)]) for w in wins])


def expression_features(codes: np.ndarray) -> np.ndarray:
    """E-FID features ``(M, 102)`` of one clip's ``(N, 61)`` codes."""
    return window_features(codes, EXPRESSION_SLICE)


def pose_features(codes: np.ndarray) -> np.ndarray:
    """P-FID features ``(M, 12)`` of one clip's ``(N, 61)`` codes."""
    return window_features(codes, POSE_SLICE)


def center_pose(codes: np.ndarray, ref_codes: np.ndarray) -> np.ndarray:
    """A copy of ``codes (N, 61)`` with the mean pose of ``ref_codes (R, 61)`` subtracted from the 6 pose columns."""
    out = np.array(codes, np.float64, copy=True)
    if len(ref_codes):
        out[:, POSE_SLICE] -= np.asarray(ref_codes, np.float64)[:, POSE_SLICE].mean(axis=0)
    return out


def fold_of(position: int, n_folds: int) -> int:
    """The fold of the clip at ``position`` in the sorted test list (round robin)."""
    return position % n_folds


def cross_fold_frechet(generated: list[np.ndarray], real_test: list[np.ndarray], real_other: list[np.ndarray],
                       features: str) -> float:
    """The Fréchet distance of generated clips to real data they were not paired with, averaged over folds.

    ``generated[i]`` and ``real_test[i]`` are the ``(N_i, 61)`` codes of test clip ``i``; ``real_other``
    are real clips that are not evaluated (e.g. the training side). With two or more test clips, the clips
    are dealt into two folds; fold ``f``'s generated windows are compared with the real windows of every
    other clip (the other fold's test clips and ``real_other``). So ground truth scores the spread of real
    data (not 0), and a system is not rewarded for copying its own clip.

    Every feature is divided by its standard deviation over all real windows (test and other) first, so
    radians, image units and blendshape weights, and posture and motion, weigh alike: the distance is in
    units of the real data's spread (dimensionless). NaN when there are too few windows.
    """
    feat = expression_features if features == "expression" else pose_features
    n_folds = min(2, len(generated))
    real_all = [feat(c) for c in [*real_test, *real_other]]
    real_all = [x for x in real_all if len(x)]
    if not real_all or n_folds == 0:
        return float("nan")
    scale = np.concatenate(real_all).std(axis=0) + SCALE_FLOOR
    values = []
    for f in range(n_folds):
        gen = [feat(c) for i, c in enumerate(generated) if fold_of(i, n_folds) == f]
        real = [feat(c) for i, c in enumerate(real_test) if fold_of(i, n_folds) != f] + [feat(c) for c in real_other]
        gen_x = np.concatenate(gen) if gen else np.zeros((0, len(scale)))
        real_x = np.concatenate(real) if real else np.zeros((0, len(scale)))
        if len(gen_x) < 2 or len(real_x) < 2:
            continue
        values.append(frechet_of_sets(gen_x / scale, real_x / scale))
    return float(np.mean(values)) if values else float("nan")
