"""Canonical mesh from the .task bundle, the shipped basis asset, projection and the code layout."""

from __future__ import annotations

import numpy as np
import pytest

from blendshape_fit.canonical import read_canonical_geometry
from blendshape_fit.face_model import DEFAULT_BASIS_PATH, euler_to_matrix, matrix_to_euler
from blendshape_fit.landmarker import locate_task_file
from blendshape_fit.neutral import PROCRUSTES_IDS, PROCRUSTES_WEIGHTS
from blendshape_fit.prior import build_prior
from shards.codes import CODE_DIM, CODE_LAYOUT, CODE_NAMES, EXPRESSION_NAMES, MP_BLENDSHAPE_NAMES
from tests.blendshape_fit.media import shipped_model


def test_canonical_mesh_comes_out_of_the_task_bundle() -> None:
    geo = read_canonical_geometry(locate_task_file())
    v = geo.vertices
    assert v.shape == (468, 3) and geo.triangles.shape == (898, 3)
    assert geo.triangles.max() == 467
    # Left-right symmetric about x = 0; subject's left eye corner (263) at +x, nose tip in front.
    assert v[263, 0] > 4 and v[33, 0] == pytest.approx(-v[263, 0])
    assert v[1, 2] == pytest.approx(v[:, 2].max(), abs=0.2)
    assert v[10, 1] > 0 > v[152, 1]  # forehead up, chin down
    np.testing.assert_array_equal(geo.procrustes_ids, PROCRUSTES_IDS)
    np.testing.assert_allclose(geo.procrustes_weights, PROCRUSTES_WEIGHTS, atol=1e-6)


def test_mediapipe_category_order_matches_the_code_names() -> None:
    from mediapipe.tasks.python.vision import face_landmarker as mp_fl

    mp_names = [b.name.replace("_", "").lower() for b in mp_fl.Blendshapes]
    assert [n.replace("_", "").lower() for n in MP_BLENDSHAPE_NAMES] == mp_names
    assert len(EXPRESSION_NAMES) == 51 and "_neutral" not in EXPRESSION_NAMES
    assert len(CODE_NAMES) == CODE_DIM == CODE_LAYOUT["dim"] == 61
    groups = CODE_LAYOUT["groups"]
    assert groups["expression"] == [0, 51] and groups["eye"] == [57, 61]


def test_shipped_basis_is_small_complete_and_consistent() -> None:
    assert DEFAULT_BASIS_PATH.stat().st_size < 2 * 1024 * 1024
    m = shipped_model()
    assert m.mean.shape == (478, 3) and m.exp_basis.shape == (51, 478, 3) and m.eye_basis.shape == (4, 478, 3)
    assert m.version == "v1" and m.score_rms is not None and m.score_rms.shape == (51,)
    geo = read_canonical_geometry(locate_task_file())
    np.testing.assert_allclose(m.mean[:468], geo.vertices, atol=1e-5)
    # Iris points: 468-472 subject's right (x < 0), 473-477 left, in front of the eyeball centres.
    assert (m.mean[468:473, 0] < 0).all() and (m.mean[473:, 0] > 0).all()
    assert (m.mean[468:, 2] > m.eyeball_centres[:, 2].max()).all()
    # Expressions never move the iris; eye rotations move only the iris.
    assert not m.exp_basis[:, 468:].any()
    assert not m.eye_basis[:, :468].any()
    assert (np.abs(m.eye_basis[:, 468:]).sum(axis=(1, 2)) > 0).all()
    # Every blendshape deforms something (the prior keeps rarely excited ones alive).
    assert (np.linalg.norm(m.exp_basis, axis=-1).max(axis=1) > 0.04).all()


def test_basis_deforms_in_the_expected_directions() -> None:
    m = shipped_model()
    jaw = m.exp_basis[EXPRESSION_NAMES.index("jawOpen")]
    assert jaw[152, 1] < -1.0 and jaw[14, 1] < -1.0 and abs(jaw[13, 1]) < 0.5  # chin + lower lip drop
    blink = m.exp_basis[EXPRESSION_NAMES.index("eyeBlinkLeft")]
    assert blink[386, 1] < -0.2 and abs(blink[159, 1]) < 0.05  # left upper lid closes, right does not
    smile = m.exp_basis[EXPRESSION_NAMES.index("mouthSmileLeft")]
    assert smile[291, 1] > 0.1 and smile[291, 0] > 0.0  # left corner up and out
    prior = build_prior(read_canonical_geometry(locate_task_file()).vertices)
    cos = (prior * m.exp_basis).sum(axis=(1, 2)) / (
        np.linalg.norm(prior.reshape(51, -1), axis=1) * np.linalg.norm(m.exp_basis.reshape(51, -1), axis=1))
    assert (cos > 0.5).all(), dict(zip(EXPRESSION_NAMES, np.round(cos, 2), strict=True))


def test_euler_round_trip() -> None:
    rng = np.random.default_rng(3)
    angles = rng.uniform([-1.2, -1.3, -3.0], [1.2, 1.3, 3.0], size=(200, 3))
    r = euler_to_matrix(angles)
    np.testing.assert_allclose(r @ r.transpose(0, 2, 1), np.broadcast_to(np.eye(3), r.shape), atol=1e-12)
    np.testing.assert_allclose(matrix_to_euler(r), angles, atol=1e-9)
    # Sign conventions: positive yaw turns the nose (+z) towards +x, positive pitch tips it down.
    nose = np.array([0.0, 0.0, 1.0])
    assert (euler_to_matrix(np.array([0.0, 0.3, 0.0])) @ nose)[0] > 0
    assert (euler_to_matrix(np.array([0.3, 0.0, 0.0])) @ nose)[1] < 0


def test_project_is_vectorized_and_places_the_face() -> None:
    m = shipped_model()
    codes = np.zeros((4, 5, CODE_DIM))
    codes[..., 54] = 0.5
    codes[..., 55] = 0.4
    codes[..., 56] = -np.log(0.03)  # 0.03 image heights per cm
    pts, lm2 = m.project(codes, aspect=4 / 3)
    assert pts.shape == (4, 5, 478, 3) and lm2.shape == (4, 5, 478, 2)
    # Neutral frontal face: landmark = t + s * (x / aspect, -y).
    np.testing.assert_allclose(lm2[0, 0, :, 0], 0.5 + 0.03 * m.mean[:, 0] / (4 / 3), atol=1e-12)
    np.testing.assert_allclose(lm2[0, 0, :, 1], 0.4 - 0.03 * m.mean[:, 1], atol=1e-12)
    assert lm2[0, 0, 10, 1] < lm2[0, 0, 152, 1]  # forehead above chin in image coordinates
    jaw = codes.copy()
    jaw[..., EXPRESSION_NAMES.index("jawOpen")] = 1.0
    _, lm_jaw = m.project(jaw, aspect=4 / 3)
    assert lm_jaw[0, 0, 152, 1] > lm2[0, 0, 152, 1] + 0.03  # the chin goes down in the image
    eye = codes.copy()
    eye[..., 57] = 0.3  # left eye yaw
    _, lm_eye = m.project(eye, aspect=4 / 3)
    assert lm_eye[0, 0, 473, 0] > lm2[0, 0, 473, 0] and lm_eye[0, 0, 468, 0] == lm2[0, 0, 468, 0]
