"""Eq. 1 fit: round trip through ``project`` with pixel noise, bounds, smoothing, warm start."""

from __future__ import annotations

import numpy as np

from blendshape_fit.fit import EYE_BOUND_RAD, BlendshapeFitter, FitOptions
from shards.codes import CODE_DIM, EXPRESSION_NAMES
from tests.blendshape_fit.media import shipped_model

W, H = 640, 480  # px


def random_codes(rng: np.random.Generator, n: int, p_active: float = 0.15, max_weight: float = 0.7) -> np.ndarray:
    """Sparse talking-like codes: each blendshape active with ``p_active``, weight U(0, max_weight)."""
    c = np.zeros((n, CODE_DIM))
    c[:, :51] = (rng.random((n, 51)) < p_active) * rng.uniform(0.0, max_weight, (n, 51))
    c[:, 51] = rng.uniform(-0.35, 0.35, n)  # pitch, rad (+-20 deg)
    c[:, 52] = rng.uniform(-0.52, 0.52, n)  # yaw (+-30 deg)
    c[:, 53] = rng.uniform(-0.26, 0.26, n)  # roll (+-15 deg)
    c[:, 54] = rng.uniform(0.35, 0.65, n)  # tx, fraction of the width
    c[:, 55] = rng.uniform(0.35, 0.65, n)  # ty, fraction of the height
    c[:, 56] = -np.log(rng.uniform(0.02, 0.04, n))  # face ~0.3-0.6 image heights tall
    c[:, 57:] = rng.uniform(-0.3, 0.3, (n, 4))  # eye yaw/pitch, rad
    return c


def synthesize(codes: np.ndarray, noise_iod: float, rng: np.random.Generator) -> np.ndarray:
    """Landmarks in pixels through ``project`` plus Gaussian noise of ``noise_iod`` x inter-ocular distance."""
    m = shipped_model()
    _, lm = m.project(codes, aspect=W / H)
    px = lm * np.array([W, H])
    iod_px = np.exp(-codes[:, 56]) * m.inter_ocular_cm * H
    return px + rng.normal(size=px.shape) * (noise_iod * iod_px)[:, None, None]


def test_round_trip_recovers_pose_and_blendshapes() -> None:
    rng = np.random.default_rng(2024)
    truth = random_codes(rng, 900)
    px = synthesize(truth, 0.005, rng)  # 0.5 % of the inter-ocular distance
    res = BlendshapeFitter(shipped_model()).fit(px, W, H)
    assert res.valid.all()
    pose_err_deg = np.degrees(np.abs(res.codes[:, 51:54] - truth[:, 51:54]))
    mae = np.abs(res.codes[:, :51] - truth[:, :51]).mean(axis=0)
    eye_mae = np.abs(res.codes[:, 57:] - truth[:, 57:]).mean()
    worst = np.argsort(-mae)[:5]
    print(f"\nround trip (900 frames, noise 0.5% IOD): pose error max {pose_err_deg.max():.3f} deg, "
          f"mean {pose_err_deg.mean():.3f} deg; blendshape MAE {mae.mean():.4f}; eye MAE {eye_mae:.4f} rad; "
          f"worst: {', '.join(f'{EXPRESSION_NAMES[k]} {mae[k]:.3f}' for k in worst)}")
    assert pose_err_deg.max() < 1.0
    assert mae.mean() < 0.05
    assert eye_mae < 0.03
    np.testing.assert_allclose(res.codes[:, 54:56], truth[:, 54:56], atol=0.01)
    np.testing.assert_allclose(res.codes[:, 56], truth[:, 56], atol=0.05)


def test_noise_free_round_trip_is_nearly_exact() -> None:
    rng = np.random.default_rng(7)
    truth = random_codes(rng, 200)
    px = synthesize(truth, 0.0, rng)
    opts = FitOptions(n_iterations=10, n_sweeps=30, ridge_cm2=1e-4, ridge_rel=0.0, noise_cm2=0.0)
    res = BlendshapeFitter(shipped_model(), opts).fit(px, W, H)
    assert np.degrees(np.abs(res.codes[:, 51:54] - truth[:, 51:54])).max() < 0.05
    assert np.median(res.rmse_iod) < 1e-3


def test_codes_respect_the_bounds_and_invalid_frames_stay_empty() -> None:
    rng = np.random.default_rng(11)
    truth = random_codes(rng, 60, p_active=0.5, max_weight=1.0)
    truth[:, 57:] = rng.uniform(-1.0, 1.0, (60, 4))  # beyond the eye bound
    px = synthesize(truth, 0.02, rng)
    px[5] = np.nan
    valid = np.ones(60, bool)
    valid[7] = False
    res = BlendshapeFitter(shipped_model()).fit(px, W, H, valid)
    ok = res.valid
    assert not ok[5] and not ok[7] and ok.sum() == 58
    assert np.isnan(res.codes[~ok]).all() and np.isnan(res.rmse_iod[~ok]).all()
    over = np.abs(truth[ok, 57:]) > EYE_BOUND_RAD + 0.05  # eye angles beyond the bound land on it
    assert over.any() and np.allclose(np.abs(res.codes[ok, 57:][over]), EYE_BOUND_RAD, atol=0.05)


def test_temporal_smoothing_reduces_jitter() -> None:
    rng = np.random.default_rng(5)
    truth = np.repeat(random_codes(rng, 1), 120, axis=0)  # a still face
    px = synthesize(truth, 0.01, rng)
    m = shipped_model()
    raw = BlendshapeFitter(m).fit(px, W, H).codes[:, :51]
    smooth = BlendshapeFitter(m, FitOptions(smooth_cm2=5.0)).fit(px, W, H).codes[:, :51]
    jitter_raw = np.abs(np.diff(raw, axis=0)).mean()
    jitter_smooth = np.abs(np.diff(smooth, axis=0)).mean()
    assert jitter_smooth < 0.5 * jitter_raw


def test_warm_start_and_chunking_agree_with_a_single_solve() -> None:
    rng = np.random.default_rng(9)
    truth = random_codes(rng, 100)
    px = synthesize(truth, 0.005, rng)
    m = shipped_model()
    one = BlendshapeFitter(m, FitOptions(n_iterations=8)).fit(px, W, H).codes
    chunked = BlendshapeFitter(m, FitOptions(n_iterations=8, chunk_frames=16)).fit(px, W, H).codes
    warm = BlendshapeFitter(m, FitOptions(n_iterations=8)).fit(px, W, H, init_codes=one[0]).codes
    np.testing.assert_allclose(chunked, one, atol=0.02)
    np.testing.assert_allclose(warm, one, atol=0.02)
