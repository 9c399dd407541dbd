"""The faces stage on real media: one talking head, a multi-shot clip, a group photo as video.

Only the insightface checkpoints are stand-ins (tiny random ONNX files from faces_fixtures.py),
since buffalo_l cannot be downloaded here; MediaPipe models and all media are real.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from stages.face_identity import DLIB_DESCRIPTOR_DIM, DLIB_SAME_PERSON_DIST
from stages.faces import FacesConfig, FaceTrackStage, main, plan_sample_ranges
from stages.item import FileItem
from stages.probe import ProbeConfig, probe_file
from tests.conftest import write_video
from tests.stages.faces_fixtures import build_buffalo_root, make_item

FPS = 25.0


@pytest.fixture(scope="module")
def stage():
    s = FaceTrackStage(cfg=FacesConfig(sample_fps=FPS))
    s.setup()
    return s


def test_sample_ranges_pad_clip_to_shots_merge_and_snap():
    cfg = FacesConfig(sample_fps=25.0, margin_s=0.25, merge_gap_s=1.0)
    shots = [(0.0, 5.0), (5.0, 20.0)]
    spans = [(1.01, 2.0, 0), (2.5, 4.9, 0), (5.1, 6.0, 1), (12.0, 13.0, 1)]
    ranges = plan_sample_ranges(spans, shots, cfg)
    assert [k for k, _, _ in ranges] == [0, 1, 1]
    (_, a0, b0), (_, a1, b1), (_, a2, b2) = ranges
    assert a0 == pytest.approx(0.76) and b0 == 5.0  # merged (gap 0.5 s), clipped at the shot end
    assert a1 == 5.0 and b1 == pytest.approx(6.25)  # clipped at the shot start
    assert a2 == pytest.approx(11.76) and b2 == pytest.approx(13.25)
    for _, a, _ in ranges:
        assert a * 25 == pytest.approx(round(a * 25), abs=1e-6)  # starts on the file's 1/25 s grid


def test_talking_head_gives_one_long_track_with_moving_mouth(stage, media_dir):
    item = make_item(media_dir / "sadtalker_WDA_KatieHill_000.mp4")
    stage.process([item])
    assert not item.rejected
    assert item.face_fps == FPS
    (t,) = item.face_tracks
    assert t.end_s - t.start_s > 7.5 and np.isfinite(t.scores).mean() > 0.95
    assert np.nanmean(t.area_fracs()) > 0.05
    assert np.nanstd(t.mouth_open) > 0.02 and np.nanmax(t.mouth_open) > 0.15  # she talks
    assert abs(np.nanmedian(t.yaw_deg)) < 20  # roughly frontal
    assert np.allclose(np.diff(t.times_s), 1 / FPS)
    assert t.frame_w == 512 and t.frame_h == 512
    # Identity offline (dlib): one person, all close to the track's mean. Every 5th frame is due; as they
    # agree, the gap grows to 25 frames (stages/identity_sampler.py): about one embedding a second.
    assert t.embedding is not None and t.embedding.shape == (DLIB_DESCRIPTOR_DIM,)
    due = math.ceil(len(t.times_s) / 5)
    assert due / 5 <= t.n_embeddings <= due / 5 + 4, (t.n_embeddings, due)
    assert t.identity_max_dist < DLIB_SAME_PERSON_DIST and t.identity_min_cos is None and t.split_from is None
    assert "face_identity" not in item.provenance["skipped"]
    prov = item.provenance["faces"]
    assert prov["tracks"] == 1 and prov["frames_decoded"] == len(t.times_s)
    assert prov["embeddings"] == t.n_embeddings and prov["identity_splits"] == 0
    assert "face_landmarker.task" in item.provenance["models"]["faces"]
    assert "+identity=dlib-" in item.provenance["models"]["faces"]


def test_only_speech_ranges_are_decoded(stage, media_dir):
    item = make_item(media_dir / "sadtalker_WDA_KatieHill_000.mp4", spans=[(1.0, 2.0), (6.0, 7.0)])
    stage.process([item])
    prov = item.provenance["faces"]
    assert prov["seconds_sampled"] == pytest.approx(3.0, abs=0.05)  # 2 x (1 s + 2 x 0.25 s margin)
    assert prov["frames_sampled"] == pytest.approx(75, abs=2)
    assert len(item.face_tracks) == 2  # one per range: a tracker never bridges undecoded time
    assert item.face_tracks[0].end_s < 2.3 and item.face_tracks[1].start_s > 5.7


def test_tracks_never_cross_shot_boundaries(stage, media_dir):
    item = make_item(media_dir / "face_recognition_short_hamilton_clip.mp4", with_shots=True)
    assert len(item.shots) >= 3
    stage.process([item])
    assert len(item.face_tracks) >= 3
    for t in item.face_tracks:
        a, b = item.shots[t.shot_index]
        assert a - 1e-6 <= t.start_s and t.end_s < b
    assert len({t.shot_index for t in item.face_tracks}) >= 3
    # The video starts 0.85 s after the audio: nothing can be seen before that.
    assert min(t.start_s for t in item.face_tracks) >= item.probe.video_start_s - item.probe.audio_start_s - 0.05
    assert len({t.track_id for t in item.face_tracks}) == len(item.face_tracks)


def test_tracks_carry_landmarks_at_every_source_frame(stage, media_dir):
    """One landmark pass (stages/face_landmarks.py): a track has MediaPipe's measure at each source frame it
    spans, at the frame's own time, including the 29.97 fps frames between two 25 Hz grid times."""
    import av

    from blendshape_fit.landmarker import time_origin_s

    path = media_dir / "face_recognition_short_hamilton_clip.mp4"
    item = make_item(path, with_shots=True)
    stage.process([item])
    with av.open(str(path)) as c:
        origin, s = time_origin_s(c), c.streams.video[0]
        pts = np.array([f.pts * float(s.time_base) - origin for f in c.decode(s)])
    long_tracks = [t for t in item.face_tracks if t.end_s - t.start_s > 1.0]
    assert long_tracks
    for t in long_tracks:
        lm = t.landmarks
        assert lm is not None and lm.points.shape == (len(lm.times_s), 478, 3)
        assert lm.scores.shape == (len(lm.times_s), 52) and lm.matrices.shape == (len(lm.times_s), 4, 4)
        spanned = pts[(pts >= lm.times_s[0] - 1e-6) & (pts <= lm.times_s[-1] + 1e-6)]
        np.testing.assert_allclose(lm.times_s, spanned, atol=1e-6)  # every frame, its own time
        assert len(lm.times_s) > 1.15 * len(t.times_s)  # more rows than 25 Hz samples: 30 fps frames
    frontal = [t for t in long_tracks if t.landmarks.found.mean() > 0.9]
    assert len(frontal) >= 2
    for t in frontal:
        lm = t.landmarks
        # points in source pixels, inside the track's box (boxes: source pixels) at the nearest sample
        k = np.clip(np.searchsorted(t.times_s, lm.times_s[lm.found]), 0, len(t.times_s) - 1)
        nose = lm.points[lm.found, 1, :2]
        box = t.boxes[k]
        ok = np.isfinite(box).all(axis=1)
        inside = (nose[ok, 0] > box[ok, 0]) & (nose[ok, 0] < box[ok, 2]) & (nose[ok, 1] > box[ok, 1]) & \
            (nose[ok, 1] < box[ok, 3])
        assert inside.mean() > 0.95
    prov = item.provenance["faces"]
    assert prov["frames_between"] > 0 and prov["landmarks_followed"] >= prov["frames_between"]


def test_group_photo_gives_several_simultaneous_tracks(stage, media_dir, tmp_path):
    video = write_video(tmp_path / "group.mp4", 1.2, fps=25, size=(640, 442), image=media_dir / "insightface_t1_group.jpg")
    item = make_item(video)
    stage.process([item])
    long_tracks = [t for t in item.face_tracks if t.end_s - t.start_s > 0.8]
    assert len(long_tracks) >= 4
    assert max(t.start_s for t in long_tracks) < min(t.end_s for t in long_tracks)  # all overlap in time
    centres = [np.nanmedian((t.boxes[:, 0] + t.boxes[:, 2]) / 2) for t in long_tracks]
    assert np.min(np.diff(np.sort(centres))) > 20  # distinct people, not duplicate boxes


def test_audio_only_and_segmentless_files_are_skipped(stage, media_dir):
    audio = FileItem(source_path=str(media_dir / "whisper_jfk.flac"))
    audio.probe = probe_file(audio.source_path, ProbeConfig())
    stage.process([audio])
    assert not audio.rejected and audio.face_tracks == [] and "faces" in audio.provenance["skipped"]
    silent = make_item(media_dir / "sadtalker_WDA_KatieHill_000.mp4", spans=[])
    stage.process([silent])
    assert not silent.rejected and silent.provenance["skipped"]["faces"].startswith("no speech")


def test_arcface_identity_runs_with_an_insightface_root(media_dir, tmp_path):
    root = build_buffalo_root(tmp_path / "if")
    s = FaceTrackStage(cfg=FacesConfig(insightface_root=str(root), identity_every_n_frames=5, min_identity_cos=-1.0))
    item = make_item(media_dir / "sadtalker_WDA_KatieHill_000.mp4", spans=[(2.0, 3.5)])
    s.process([item])
    (t,) = item.face_tracks
    assert t.embedding is not None and t.embedding.shape == (512,)
    assert np.linalg.norm(t.embedding) == pytest.approx(1.0, abs=1e-5)
    assert t.identity_min_cos is not None and -1.0 <= t.identity_min_cos <= 1.0 and t.identity_max_dist is None
    assert item.provenance["faces"]["embeddings"] >= 3  # ~37 frames: 8 due, embedded at due frames 1, 2, 4, 8
    assert "face_identity" not in item.provenance["skipped"]
    assert "identity=insightface:buffalo_l" in item.provenance["models"]["faces"]  # ArcFace wins over dlib
    assert "dlib" not in item.provenance["models"]["faces"]


def test_insightface_detector_without_root_rejects_with_a_clear_message(media_dir):
    item = make_item(media_dir / "sadtalker_WDA_KatieHill_000.mp4", spans=[(1.0, 2.0)])
    FaceTrackStage(cfg=FacesConfig(detector="insightface")).process([item])
    assert item.rejected and "faces.insightface_root" in item.rejects[0].detail


def test_insightface_detector_path_runs_end_to_end(media_dir, tmp_path):
    root = build_buffalo_root(tmp_path / "if")
    item = make_item(media_dir / "sadtalker_WDA_KatieHill_000.mp4", spans=[(1.0, 1.4)])
    FaceTrackStage(cfg=FacesConfig(detector="insightface", insightface_root=str(root))).process([item])
    assert not item.rejected  # random weights: any number of tracks, but the path runs
    assert item.provenance["models"]["faces"].startswith("insightface:buffalo_l(det=det_10g.onnx@")
    assert item.provenance["faces"]["frames_decoded"] > 0


def test_cli_prints_track_summary(media_dir, capsys):
    main([str(media_dir / "sadtalker_WDA_KatieHill_000.mp4"), "--end", "1.5"])
    out = json.loads(capsys.readouterr().out)
    (t,) = out["tracks"]
    assert set(t) >= {"track_id", "shot", "start_s", "end_s", "mean_area_frac", "median_yaw_deg",
                      "mouth_open_std", "n_embeddings", "identity_min_cos", "identity_max_dist", "split_from"}
    assert t["mean_area_frac"] > 0.05 and t["identity_min_cos"] is None
    assert t["n_embeddings"] >= 3 and 0 < t["identity_max_dist"] < DLIB_SAME_PERSON_DIST and t["split_from"] is None
    assert t["landmark_frames"] == t["n_frames"] and t["landmarks_found_frac"] > 0.95  # 25 fps: one row per sample
    ident = out["identity"]
    assert ident["model"].startswith("dlib-") and ident["metric"] == "euclidean"
    assert ident["threshold"] == FacesConfig().max_identity_dist and ident["splits"] == 0
    assert ident["embeddings"] == t["n_embeddings"] and ident["ms_per_embedding"] > 0
    assert 0 < ident["share_of_stage"] < 1
