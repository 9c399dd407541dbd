"""Face detectors: tiling/merging logic, MediaPipe on real photos, insightface loading from tiny ONNX files.

The insightface checkpoints are tiny random stand-ins (tests/stages/faces_fixtures.py): the real
buffalo_l pack cannot be downloaded here. They exercise the loading, routing and calling code;
their detections are meaningless (with the fixture's score bias: usually none).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from stages.face_detectors import (
    CropLandmarker,
    InsightFaceDetector,
    InsightFaceMissing,
    MediaPipeFaceDetector,
    cap_faces,
    merge_detections,
    plan_roi_crops,
    plan_tiles,
    touches_inner_edge,
)
from stages.face_tracking import Detection
from tests.stages.faces_fixtures import build_buffalo_root


def load_rgb(path: Path, long_side: int = 640) -> np.ndarray:
    img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    k = long_side / max(img.shape[:2])
    return cv2.resize(img, (int(round(img.shape[1] * k)), int(round(img.shape[0] * k))))


@pytest.fixture(scope="module")
def mp_detector():
    d = MediaPipeFaceDetector(min_confidence=0.6, tile_grid=3)
    yield d
    d.close()


@pytest.fixture(scope="module")
def buffalo_root(tmp_path_factory) -> Path:
    return build_buffalo_root(tmp_path_factory.mktemp("insightface"))


def box(x0, y0, x1, y1, score=0.9) -> Detection:
    return Detection(box=np.array([x0, y0, x1, y1], np.float32), score=score)


def test_tiles_cover_the_frame_with_overlap():
    tiles = plan_tiles(640, 442, 3)
    covered = np.zeros((442, 640), bool)
    for x, y, s in tiles:
        assert 0 <= x and x + s <= 640 and 0 <= y and y + s <= 442
        covered[y:y + s, x:x + s] = True
    assert covered.all()
    assert plan_tiles(640, 442, 1) == []


def test_merge_keeps_best_and_drops_boxes_inside_kept_ones():
    dets = [box(0, 0, 100, 100, 0.9), box(5, 5, 105, 105, 0.8), box(20, 20, 60, 60, 0.7), box(300, 0, 340, 40, 0.6)]
    kept = merge_detections(dets)
    assert [d.score for d in kept] == [0.9, 0.6]
    assert len(cap_faces(kept, 1)) == 1 and cap_faces(kept, 1)[0].score == 0.9  # the largest stays


def test_tile_edge_and_roi_rules():
    assert touches_inner_edge(np.array([100, 10, 161, 50]), 100, 0, 60, 640, 442)  # cut by the tile's left edge
    assert not touches_inner_edge(np.array([0, 10, 30, 50]), 0, 0, 60, 640, 442)  # frame edge is fine
    crops = plan_roi_crops([np.array([600, 400, 640, 440]), np.array([0, 0, 400, 400])], 640, 442)
    assert len(crops) == 1  # the big face needs no crop
    x, y, s = crops[0]
    assert s == 120 and x + s <= 640 and y + s <= 442


def test_mediapipe_finds_the_six_faces_of_the_group_photo_only_with_tiles(mp_detector, media_dir):
    rgb = load_rgb(media_dir / "insightface_t1_group.jpg")
    whole = mp_detector.detect_image(rgb)
    tiled = mp_detector.detect(rgb)
    assert len(whole) <= 1  # BlazeFace short-range on a 128 px letterbox misses faces this small
    assert 5 <= len(tiled) <= 7
    assert all(d.score >= 0.6 and d.keypoints is not None for d in tiled)
    centres = np.array([[(d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2] for d in tiled])
    assert np.ptp(centres[:, 0]) > 400  # spread across the table, not duplicates of one face
    assert "face_landmarker.task:64184e229b26" in mp_detector.model_id


def test_crop_landmarker_measures_a_portrait(mp_detector, media_dir):
    rgb = load_rgb(media_dir / "sadtalker_people_0.png", 474)
    (face,) = mp_detector.detect(rgb)
    lm = CropLandmarker(crop_scale=1.6)
    try:
        got = lm.measure(rgb, face.box)
        assert got is not None
        lms, matrix, scores = got
        assert lms.shape == (478, 3) and matrix.shape == (4, 4) and scores.shape == (52,)
        assert 0 <= scores.min() and scores.max() <= 1 and scores.max() > 0.1  # MediaPipe's blendshape scores
        inside = (lms[:, 0] > face.box[0] - 40) & (lms[:, 0] < face.box[2] + 40)
        assert inside.mean() > 0.95  # landmarks mapped back into frame pixels
        assert lm.measure(rgb, np.array([0, 0, 40, 40], np.float32)) is None  # no face in that corner
    finally:
        lm.close()


def test_insightface_loads_buffalo_layout_and_runs(buffalo_root, media_dir):
    d = InsightFaceDetector(str(buffalo_root), "buffalo_l", min_confidence=0.5)
    assert d.has_identity
    assert d.model_id.startswith("insightface:buffalo_l(det=det_10g.onnx@")
    assert "rec=w600k_r50.onnx@" in d.model_id
    assert type(d._app.det_model).__name__ == "SCRFD" and d._app.det_model.use_kps
    rgb = load_rgb(media_dir / "sadtalker_people_0.png", 474)
    dets = d.detect(rgb)  # random weights: the count is meaningless, the types are not
    assert all(x.box.shape == (4,) and x.keypoints.shape == (5, 2) for x in dets)
    kps = np.array([[190, 150], [280, 150], [235, 190], [200, 230], [270, 230]], np.float32)
    emb = d.embed(rgb, Detection(box=np.array([146, 91, 325, 270], np.float32), score=0.9, keypoints=kps))
    assert emb.shape == (512,) and np.linalg.norm(emb) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="5 keypoints"):
        d.embed(rgb, box(146, 91, 325, 270))


def test_insightface_missing_root_names_the_config_field(tmp_path):
    with pytest.raises(InsightFaceMissing, match="faces.insightface_root"):
        InsightFaceDetector(str(tmp_path / "nowhere"))
    (tmp_path / "models" / "buffalo_l").mkdir(parents=True)  # present but empty: still a clear error
    with pytest.raises(InsightFaceMissing, match="buffalo_l"):
        InsightFaceDetector(str(tmp_path))
