"""dashboards.data: reading an output folder, safety checks, and the numbers the app draws."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dashboards import data
from shards.reader import REJECTS, SHARDS, SOURCES
from tests.dashboards.conftest import make_clip, write_output_folder, write_part


class RecordingFolder(data.OutputFolder):
    """An OutputFolder that records every path it opens."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.opened: list[str] = []

    def open_input(self, path: str) -> pa.NativeFile:
        self.opened.append(path)
        return super().open_input(path)


def test_lists_only_committed_parts(synthetic_out: Path) -> None:
    parts = data.OutputFolder(str(synthetic_out)).list_parts(SHARDS)
    assert [Path(p.path).name for p in parts] == ["part-aaa.parquet", "part-bbb.parquet"]


def test_read_clips_has_scalar_columns_only(synthetic_out: Path) -> None:
    clips = data.OutputFolder(str(synthetic_out)).read_clips()
    assert clips.num_rows == 5
    assert sorted(clips.column("clip_id").to_pylist()) == [f"clip{i:02d}" for i in range(5)]
    assert not set(data.HEAVY_COLUMNS) & set(clips.column_names)
    assert {"_part", "_row", "dnsmos_ovrl", "language"} <= set(clips.column_names)
    # the score the sync stage kept each clip on, from its three stored numbers (shards.sync_score)
    conf, dist = clips.column("sync_conf").to_numpy(), clips.column("sync_dist").to_numpy()
    lag_cost = 0.5 * np.abs(clips.column("av_offset_s").to_numpy())
    assert lag_cost.max() > 0  # the fixture's clips have offsets: the cost is exercised
    np.testing.assert_allclose(clips.column("sync_score").to_numpy(), conf + 1 - dist - lag_cost, rtol=1e-6)


def test_read_clip_finds_rows_in_later_row_groups(synthetic_out: Path) -> None:
    folder = data.OutputFolder(str(synthetic_out))
    clips = folder.read_clips()
    assert pq.ParquetFile(synthetic_out / "shards" / "part-aaa.parquet").num_row_groups == 2
    for part, row, clip_id in zip(clips["_part"].to_pylist(), clips["_row"].to_pylist(),
                                  clips["clip_id"].to_pylist(), strict=True):
        full = folder.read_clip(part, row)
        assert full["clip_id"] == clip_id
        assert len(full["mel"]) == full["n_frames"]
        assert full["audio_flac"][:4] == b"fLaC"


def test_reads_are_cached_and_a_rewritten_part_is_read_again(tmp_path: Path) -> None:
    root = write_output_folder(tmp_path / "out")
    folder = RecordingFolder(str(root))
    folder.read_clips()
    n = len(folder.opened)
    folder.read_clips()
    assert len(folder.opened) == n, "second read should come from the cache"
    write_part(root / "shards" / "part-bbb.parquet", [make_clip(i, "en", "/m/x.mp4", 0.0, 3.0) for i in range(5, 9)])
    os.utime(root / "shards" / "part-bbb.parquet", ns=(1, 1))  # a new mtime even on coarse clocks
    clips = folder.read_clips()
    assert len(folder.opened) > n
    assert clips.num_rows == 7


def test_missing_and_empty_folders_say_so(tmp_path: Path) -> None:
    with pytest.raises(data.NoShardsError, match="no such output folder"):
        data.OutputFolder(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    folder = data.OutputFolder(str(tmp_path / "empty"))
    with pytest.raises(data.NoShardsError, match=r"no shards here \(no shards/part-\*\.parquet\)"):
        folder.read_clips()
    assert folder.read_manifest() is None
    assert folder.read_all(REJECTS) is None


@pytest.mark.parametrize("kind", ["garbage", "no_metadata", "v1"])
def test_bad_parts_are_named_in_the_error(tmp_path: Path, synthetic_out: Path, kind: str) -> None:
    root = tmp_path / "out"
    shutil.copytree(synthetic_out, root)
    bad = root / "shards" / "part-zzz.parquet"
    if kind == "garbage":
        bad.write_bytes(b"PAR1 this is not parquet at all")
    else:
        table = pq.read_table(root / "shards" / "part-bbb.parquet")
        meta = {} if kind == "no_metadata" else {b"omnitalker.schema_version": b"1"}
        pq.write_table(table.replace_schema_metadata(meta), bad)
    with pytest.raises(data.CorruptPartError) as err:
        data.OutputFolder(str(root)).read_clips()
    assert str(bad) in str(err.value)


def test_broken_manifest_is_named(tmp_path: Path) -> None:
    root = write_output_folder(tmp_path / "out")
    (root / "manifest.json").write_text("{not json")
    with pytest.raises(data.CorruptPartError, match="manifest.json"):
        data.OutputFolder(str(root)).read_manifest()


def test_paths_outside_the_folder_are_refused(tmp_path: Path, synthetic_out: Path) -> None:
    root = tmp_path / "out"
    shutil.copytree(synthetic_out, root)
    secret = tmp_path / "secret.parquet"
    shutil.copy(root / "shards" / "part-aaa.parquet", secret)
    (root / "shards" / "part-link.parquet").symlink_to(secret)
    folder = data.OutputFolder(str(root))
    with pytest.raises(data.OutsideFolderError, match="outside the output folder"):
        folder.read_clips()
    for path in (str(secret), str(root / ".." / "secret.parquet"), "/etc/passwd"):
        with pytest.raises(data.OutsideFolderError):
            folder.open_input(path)
    with pytest.raises(data.DashboardDataError, match="not a shard part"):
        folder.read_clip(str(secret), 0)


def test_source_paths_in_rows_are_never_opened(tmp_path: Path) -> None:
    root = write_output_folder(tmp_path / "out")
    folder = RecordingFolder(str(root))
    clips = folder.read_clips()
    for part, row in zip(clips["_part"].to_pylist(), clips["_row"].to_pylist(), strict=True):
        folder.read_clip(part, row)
    folder.read_all(REJECTS)
    folder.read_all(SOURCES)
    folder.read_manifest()
    real_root = os.path.realpath(root)
    assert folder.opened and all(os.path.realpath(p).startswith(real_root + os.sep) for p in folder.opened)
    assert not {"/media/a.mp4", "/media/b.mp4"} & set(folder.opened)


def test_reads_through_a_uri(synthetic_out: Path) -> None:
    folder = data.OutputFolder(synthetic_out.as_uri())
    assert folder.read_clips().num_rows == 5
    assert folder.read_manifest()["clips"] == 5


def test_summarize_hours_groups_rejects_by_stage_and_reason(synthetic_out: Path) -> None:
    folder = data.OutputFolder(str(synthetic_out))
    rows = data.summarize_hours(folder.read_clips(), folder.read_all(REJECTS))
    assert rows[0] == {"status": "kept", "stage": "kept", "reason": "clips", "count": 5,
                       "hours": pytest.approx((3.2 + 4.0 + 3.5 + 5.0 + 3.0) / 3600)}
    rejected = {(r["stage"], r["reason"]): r["hours"] * 3600 for r in rows[1:]}
    assert rejected == {("dnsmos", "low_dnsmos_ovrl"): pytest.approx(3.6), ("probe", "no_video"): pytest.approx(7.2),
                        ("segment", "too_short"): pytest.approx(1.8)}
    assert data.summarize_hours(None, None) == []


def test_thresholds_come_from_the_config() -> None:
    from tests.dashboards.conftest import CONFIG

    th = data.collect_thresholds(CONFIG)
    assert th["duration_s"] == [("segment.min_clip_s", 3.0), ("segment.max_clip_s", 30.0)]
    assert th["dnsmos_ovrl"] == [("dnsmos.min_dnsmos_ovrl", 3.0)]
    assert th["fit_rmse"] == [("visual.max_fit_rmse_iod", 0.05)]
    assert th["chars_per_s"] == [("segment.min_chars_per_s", 4.0), ("segment.max_chars_per_s", 25.0)]
    assert th["sync_score"] == [("sync.min_score", 0.52)]
    assert th["av_offset_s"] == [("sync.max_correct_s", 0.2), ("-sync.max_correct_s", -0.2)]
    learned = json.loads(json.dumps(CONFIG))
    learned["asd"].update(scorer="learned", min_learned_score=0.7)
    assert data.collect_thresholds(learned)["asd_score"] == [("asd.min_learned_score", 0.7)]
    learned["dnsmos"]["min_dnsmos_ovrl"] = 0.0  # 0 disables the limit: nothing to draw
    assert "dnsmos_ovrl" not in data.collect_thresholds(learned)
    assert data.collect_thresholds(None) == {}


def test_histogram_range_shows_the_thresholds() -> None:
    counts, edges = data.compute_histogram(np.array([3.5, 4.0, np.nan, 4.5]), bins=10, include=[3.0, 30.0])
    assert counts.sum() == 3
    assert edges[0] == 3.0 and edges[-1] == 30.0
    counts, edges = data.compute_histogram(np.array([2.0, 2.0]), bins=4)
    assert counts.sum() == 2 and edges[0] < 2.0 < edges[-1]
    assert data.compute_histogram(np.array([np.nan]))[0].size == 0


def test_filters_sort_and_present_columns(synthetic_out: Path) -> None:
    clips = data.OutputFolder(str(synthetic_out)).read_clips()
    assert set(data.filter_clips(clips, languages=["zh"])["clip_id"].to_pylist()) == {"clip02", "clip03"}
    assert set(data.filter_clips(clips, sources=["/media/a.mp4"])["clip_id"].to_pylist()) == {"clip00", "clip01"}
    in_range = data.filter_clips(clips, ranges={"dnsmos_ovrl": (3.05, 3.15)})
    assert set(in_range["clip_id"].to_pylist()) == {"clip02"}
    # fit_rmse is null for clip04 (no visual): a range on it drops that clip.
    assert "clip04" not in data.filter_clips(clips, ranges={"fit_rmse": (0.0, 1.0)})["clip_id"].to_pylist()
    assert data.filter_clips(clips, text="NUMBER 3")["clip_id"].to_pylist() == ["clip03"]
    assert data.filter_clips(clips).num_rows == 5
    ordered = data.sort_table(clips, "dnsmos_ovrl", descending=True)["clip_id"].to_pylist()
    assert ordered == ["clip04", "clip03", "clip02", "clip01", "clip00"]
    present = data.present_columns(clips)
    assert "dnsmos_ovrl" in present and "speaker" not in present and "language_prob" not in present


def test_filter_rejects(synthetic_out: Path) -> None:
    rejects = data.OutputFolder(str(synthetic_out)).read_all(REJECTS)
    assert data.filter_rejects(rejects, ["probe"])["reason"].to_pylist() == ["no_video"]
    assert data.filter_rejects(rejects, [], ["too_short"])["stage"].to_pylist() == ["segment"]
    assert data.filter_rejects(rejects, ["probe"], ["too_short"]).num_rows == 0
    assert data.filter_rejects(rejects).num_rows == 3


def test_curves_use_the_93_75_hz_and_30_fps_axes() -> None:
    row = make_clip(1, "en", "/m/a.mp4", 4.0, 4.0)
    visual = data.to_matrix(row["visual"], 61)
    curves = data.visual_curves(visual, 4.0)
    t = curves["pose"]["t_s"]
    assert t[0] == 4.0 and t[1] - t[0] == pytest.approx(1 / 93.75) and len(t) == row["n_frames"]
    np.testing.assert_allclose(curves["pose"]["yaw (deg)"], 10.0, rtol=1e-5)
    np.testing.assert_allclose(curves["blendshapes"]["jawOpen"], np.linspace(0, 1, len(t)), atol=1e-6)
    assert set(curves["eye"]) == {"t_s", "eyeLeftYaw (deg)", "eyeLeftPitch (deg)", "eyeRightYaw (deg)",
                                  "eyeRightPitch (deg)"}
    mp = data.to_matrix(row["mp_blendshapes"], 52)
    mpc = data.mediapipe_curves(mp, 4.0, ["jawOpen"])
    assert mpc["t_s"][1] - mpc["t_s"][0] == pytest.approx(1 / 30)
    np.testing.assert_array_equal(mpc["jawOpen"], mp[:, 25])  # _neutral is MediaPipe's index 0
    long = data.to_long_rows(mpc)
    assert len(long) == mp.shape[0] and long[0]["curve"] == "jawOpen"
    assert data.to_matrix(None, 61) is None and data.to_matrix([[1.0, 2.0]], 61) is None


def test_mel_image_puts_low_frequencies_at_the_bottom() -> None:
    mel = np.zeros((50, 100), np.float32)
    mel[:, 0] = 10.0  # loud lowest bin
    img = data.mel_to_image(mel)
    assert img.shape == (100, 50, 3) and img.dtype == np.uint8
    assert img[-1].mean() > img[0].mean() + 100  # bottom row bright (viridis yellow), top dark


def test_frame_at_and_aspect() -> None:
    assert data.frame_at(4.0, 4.0, 100) == 0
    assert data.frame_at(4.0 + 10 / 93.75, 4.0, 100) == 10
    assert data.frame_at(99.0, 4.0, 100) == 99 and data.frame_at(0.0, 4.0, 100) == 0
    assert data.source_aspect(json.dumps({"visual": {"source_size_px": [640, 480]}})) == pytest.approx(4 / 3)
    assert data.source_aspect(None) == 1.0 and data.source_aspect("{}") == 1.0


def test_project_face_gives_478_points_scaled_by_aspect() -> None:
    codes = np.zeros(61)
    codes[54:56] = 0.5  # face centred in the image
    pts, tris = data.project_face(codes, aspect=1.0)
    wide, _ = data.project_face(codes, aspect=2.0)
    assert pts.shape == (478, 2) and tris is not None and tris.shape[1] == 3
    np.testing.assert_allclose(wide[:, 1], pts[:, 1])  # y in image heights does not depend on the aspect
    np.testing.assert_allclose(wide[:, 0] - 1.0, pts[:, 0] - 0.5, atol=1e-9)  # x: same face, centre at 0.5 width
    codes[24] = 1.0  # jawOpen (EXPRESSION_NAMES index 24) opens the mouth: the chin moves down
    opened, _ = data.project_face(codes)
    assert opened[152, 1] > pts[152, 1]  # landmark 152 = chin; y grows downwards


def test_skipped_stages() -> None:
    rows = data.skipped_stages({"skipped": {"diarize": {"no model": 3}}})
    assert rows == [{"stage": "diarize", "why": "no model", "files": 3}]
    assert data.skipped_stages(None) == []
