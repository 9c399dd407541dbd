"""Long files cut into chunks (stages/chunk.py, issue #15): the cut plan, split and merge, and the end
to end promise that chunking changes where the work runs, never what lands in the output.

The end-to-end test builds a 49 s talking video from the shared clips (one round of
``bench/long_input.py``; every clip boundary is a shot cut) and curates it twice with the serial
executor, whole and cut into chunks of about 15 s: the shards, the ledger and the provenance must be
the same. The Ray path (chunks on different actors, merged on the driver) is exercised by
tests/pipeline/test_resume.py, which runs with ``run.max_chunk_s=4`` so the scene-cut clip is cut.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from bench.long_input import build_long_video
from pipeline.config import load_config
from pipeline.run import curate
from pipeline.storage import OutputStore
from shards.spec import AUDIO_SR
from stages.chunk import ORIGIN_QUANTUM, ChunkPlan, choose_cuts, find_cut_points, merge_chunks, split_item
from stages.item import FaceTrack, FileItem, Segment, cut_window
from tests.conftest import REPO


def seg(a_s: float, b_s: float, shot: int = 0) -> Segment:
    return Segment(start_sample=int(a_s * AUDIO_SR), end_sample=int(b_s * AUDIO_SR), shot_index=shot)


def long_item(duration_s: float, spans: list[tuple[float, float, int]]) -> FileItem:
    rng = np.random.default_rng(0)
    a24 = rng.standard_normal(int(duration_s * AUDIO_SR)).astype(np.float32)
    item = FileItem(source_path="/x/long.mp4", source_sha256="ab" * 32, audio_24k=a24,
                    audio_16k=a24[::3].repeat(2)[: len(a24) * 2 // 3].copy())
    item.segments = [seg(a, b, k) for a, b, k in spans]
    item.provenance["audio"] = {"gain_db": 1.5}
    item.timings = {"audio": 2.0}
    return item


def test_cut_points_are_shot_changes_and_long_pauses_only():
    item = long_item(30, [(0, 4, 0), (4.5, 8, 0), (8.2, 12, 1), (15, 20, 1), (20.5, 25, 1)])
    # 4 -> 4.5: a short pause in one shot (no); 8 -> 8.2: a shot change (yes); 12 -> 15: a 3 s pause (yes)
    assert find_cut_points(item, min_gap_s=2.0) == pytest.approx([8.1, 13.5], abs=1e-3)
    assert find_cut_points(item, min_gap_s=3.5) == pytest.approx([8.1], abs=1e-3)


def test_choose_cuts_keeps_chunks_near_the_limit():
    points = [10.0, 25.0, 40.0, 55.0, 70.0, 95.0]
    assert choose_cuts(points, 100.0, 30.0) == [25.0, 55.0, 70.0]
    assert choose_cuts(points, 100.0, 200.0) == []  # short enough: no cut
    assert choose_cuts([99.0], 100.0, 30.0) == []  # only a sliver would be left after it
    assert choose_cuts([], 100.0, 30.0) == []  # nowhere to cut: one chunk, however long


def test_split_then_merge_restores_the_file():
    item = long_item(60, [(1, 8, 0), (8.3, 15, 1), (18, 30, 1), (33, 45, 2), (46, 58, 2)])
    chunks = split_item(item, ChunkPlan(max_chunk_s=20, min_gap_s=2.0, pad_s=1.0))
    assert len(chunks) >= 3
    assert sum(len(c.segments) for c in chunks) == len(item.segments)
    for c in chunks:
        assert c.audio_origin % ORIGIN_QUANTUM == 0
        assert len(c.audio_24k) < len(item.audio_24k)  # a window, not the whole file
        for s in c.segments:  # each chunk reads its segments' audio exactly as the whole file would
            np.testing.assert_array_equal(c.slice_audio_24k(s.start_sample, s.end_sample),
                                          item.audio_24k[s.start_sample:s.end_sample])
            a16, b16 = s.start_sample * 2 // 3, s.end_sample * 2 // 3
            np.testing.assert_array_equal(c.slice_audio_16k(a16, b16), item.audio_16k[a16:b16])
    with pytest.raises(ValueError, match="outside this chunk's audio window"):
        chunks[1].slice_audio_24k(0, 10)  # a bug in a plan must fail loudly, not read silence
    # What the model stages would add per chunk: tracks numbered from 0, stats, timings, a skip.
    for k, c in enumerate(chunks):
        c.face_tracks = [FaceTrack(track_id=i, shot_index=0, times_s=np.array([0.0]), boxes=np.zeros((1, 4)),
                                   scores=np.ones(1), mouth_open=np.zeros(1), yaw_deg=np.zeros(1))
                         for i in range(2)]
        c.face_tracks[1].split_from = 0
        c.next_track_id = 3  # one id went to a track too short to keep
        c.segments[0].track_id = 1
        c.provenance["faces"] = {"tracks": 2, "ranges": [[k, 0.0, 1.0]], "model": "m"}
        c.provenance["models"]["faces"] = "mediapipe"
        c.timings["faces"] = 1.0
        if k == 1:
            c.provenance["skipped"]["visual"] = "no segments left"
    merged = merge_chunks(list(reversed(chunks)))
    n = len(chunks)
    assert merged.chunk is None and not merged.rejected
    assert len(merged.audio_24k) == len(item.audio_24k)
    for s in item.segments:  # every clip's audio is back in place (pauses between chunks are not carried)
        np.testing.assert_array_equal(merged.audio_24k[s.start_sample:s.end_sample],
                                      item.audio_24k[s.start_sample:s.end_sample])
    assert [s.start_sample for s in merged.segments] == [s.start_sample for s in item.segments]
    assert [t.track_id for t in merged.face_tracks] == [i for k in range(n) for i in (3 * k, 3 * k + 1)]
    assert [t.split_from for t in merged.face_tracks][1::2] == [3 * k for k in range(n)]
    assert merged.next_track_id == 3 * n
    assert merged.provenance["audio"] == {"gain_db": 1.5}  # written before the cut: once
    assert merged.provenance["faces"]["tracks"] == 2 * n and len(merged.provenance["faces"]["ranges"]) == n
    assert merged.timings == {"audio": 2.0, "faces": 1.0 * n}
    assert merged.provenance["skipped"] == {"visual": "no segments left"}
    assert merged.provenance["chunks"]["count"] == n
    with pytest.raises(ValueError, match="incomplete"):
        merge_chunks(chunks[:-1])


def test_a_chunk_error_fails_the_whole_file():
    item = long_item(60, [(1, 8, 0), (8.3, 15, 1), (18, 30, 1), (33, 45, 2), (46, 58, 2)])
    chunks = split_item(item, ChunkPlan(max_chunk_s=20, min_gap_s=2.0, pad_s=1.0))
    from stages.item import Reject

    chunks[-1].reject_file(Reject(stage="asr", reason="error", detail="boom"))
    merged = merge_chunks(chunks)
    assert merged.rejected and merged.segments == [] and merged.audio_24k is None
    assert [r.reason for r in merged.rejects] == ["error"]


def test_short_files_and_sidecars_are_not_cut(tmp_path):
    item = long_item(60, [(1, 8, 0), (8.3, 15, 1), (18, 30, 1)])
    assert split_item(item, ChunkPlan(max_chunk_s=100)) == [item]
    assert split_item(item, ChunkPlan(max_chunk_s=0)) == [item]
    video = tmp_path / "talk.mp4"
    video.write_bytes(b"")
    (tmp_path / "talk.txt").write_text("hello world", encoding="utf-8")
    item.source_path = str(video)
    assert split_item(item, ChunkPlan(max_chunk_s=20)) == [item]  # its text is aligned to the whole file


def test_the_cut_gap_covers_every_join_of_the_stages():
    cfg = load_config(REPO / "configs" / "curate.yaml", ["asr.join_gap_s=3.0"])
    assert cfg.chunk_plan().min_gap_s > 3.0
    cfg = load_config(REPO / "configs" / "curate.yaml", ["faces.margin_s=1.0"])
    assert cfg.chunk_plan().min_gap_s > cfg.faces.merge_gap_s + 2 * 1.0
    cfg = load_config(REPO / "configs" / "curate.yaml", ["asd.context_s=3.0"])
    assert cfg.chunk_plan().pad_s > 3.0


def test_cut_window_is_a_slice_of_the_whole():
    whole = np.arange(100)
    for a, b in [(20, 30), (20, 200), (95, 100), (50, 40)]:
        np.testing.assert_array_equal(cut_window(whole[20:], 20, 100, a, b), whole[a:b])


def table_rows(t: pa.Table) -> list[str]:
    """Rows as canonical JSON (NaN-safe), sorted, without the run-dependent columns."""
    drop = {"provenance", "at", "stage_seconds"}
    cols = [c for c in t.column_names if c not in drop]
    rows = t.select(cols).to_pylist()
    return sorted(json.dumps(r, sort_keys=True, default=repr) for r in rows)


@pytest.mark.slow
def test_chunked_curation_equals_whole_file_curation(tmp_path):
    video = tmp_path / "long.mp4"
    duration = build_long_video(video, repeat=1, size=(640, 360))
    assert duration > 40
    outs = {}
    for name, max_chunk_s in (("whole", 0), ("chunked", 15)):
        cfg = load_config(REPO / "configs" / "curate.yaml", [f"run.max_chunk_s={max_chunk_s}"])
        outs[name] = OutputStore(str(tmp_path / name))
        manifest = curate(str(video), str(tmp_path / name), cfg, executor="serial", show_progress=False)
        assert manifest["runs"][-1]["verify_ok"] and manifest["runs"][-1]["errors"] == 0
    whole, chunked = outs["whole"], outs["chunked"]
    prov = json.loads(chunked.read_table("sources").column("provenance")[0].as_py())
    assert prov["chunks"]["count"] >= 3, prov.get("chunks")
    shards_w, shards_c = whole.read_table("shards"), chunked.read_table("shards")
    assert shards_w is not None and shards_w.num_rows >= 2, "the long video must give kept clips to compare"
    assert table_rows(shards_c) == table_rows(shards_w)
    assert table_rows(chunked.read_table("rejects")) == table_rows(whole.read_table("rejects"))
    prov_w = json.loads(whole.read_table("sources").column("provenance")[0].as_py())
    prov.pop("chunks")
    for key in ("faces",):  # per-range diagnostics: same values, ranges listed chunk by chunk
        prov_w.pop(key, None), prov.pop(key, None)
    assert prov == prov_w
    clip_prov_w = [json.loads(p) for p in shards_w.sort_by("clip_id").column("provenance").to_pylist()]
    clip_prov_c = [json.loads(p) for p in shards_c.sort_by("clip_id").column("provenance").to_pylist()]
    assert clip_prov_c == clip_prov_w


def test_a_long_file_job_gets_a_split_and_a_chunk_pool_on_every_core():
    from pipeline.executors import build_stages, plan_operators, required_local_cpus

    cfg = load_config(REPO / "configs" / "curate.yaml")
    stages = build_stages(cfg)
    (fused,) = plan_operators(stages, fuse=True)  # no long file: one pool from decode to codes
    assert fused.split is None
    head, tail = plan_operators(stages, fuse=True, split=cfg.chunk_plan(), chunk_actors=4)
    assert [s.name for s in head.stages] == ["audio", "scene", "vad", "diarize"] and head.split is not None
    assert tail.stages[0].name == "asr" and tail.split is None
    assert tail.fixed_actors == 4 and tail.resources.min_actors == 4  # one actor per core for the chunks
    assert required_local_cpus([head, tail]) == 5  # the whole-file pool's actor on top
    gpu = load_config(REPO / "configs" / "curate_gpu.yaml")
    plans = plan_operators(build_stages(gpu), fuse=True, split=gpu.chunk_plan(), chunk_actors=2)
    assert [p.stages[0].name for p in plans] == ["audio", "asr", "segment"]
    assert plans[1].fixed_actors is None  # the GPU pool is sized by its GPUs, not the cores
