"""The held-out split (training/split.py): by source and speaker, deterministic, written by the trainers and
never trained on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.training.shard_fixtures import make_clip, write_shard
from training.config import load_train_config
from training.loop import prepare_run
from training.split import (
    SPLIT_FILE,
    ClipSource,
    SplitConfig,
    compute_split,
    prepare_split,
    read_split,
    scan_clip_sources,
)

REPO = Path(__file__).resolve().parents[2]


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def clips_of(n_sources: int, per_source: int = 3, voices: dict[int, np.ndarray] | None = None) -> list[ClipSource]:
    rng = np.random.default_rng(0)
    out = []
    for s in range(n_sources):
        voice = (voices or {}).get(s, unit(rng.standard_normal(256)))
        for k in range(per_source):
            out.append(ClipSource(f"c{s:02d}-{k}", f"sha{s:02d}", f"src{s}.mp4", "spk0", voice))
    return out


def test_whole_sources_go_to_one_side_and_the_rule_is_deterministic():
    clips = clips_of(20)
    split = compute_split(clips, SplitConfig(test_frac=0.3))
    assert split.test_clip_ids and split.train_clip_ids
    assert set(split.test_clip_ids).isdisjoint(split.train_clip_ids)
    assert set(split.test_clip_ids) | set(split.train_clip_ids) == {c.clip_id for c in clips}
    for c in clips:  # every clip sits on its source's side
        assert (c.clip_id in split.test_clip_ids) == (c.source in split.test_sources)
    assert 2 <= len(split.test_sources) <= 12  # about 30 % of 20 groups
    again = compute_split(list(reversed(clips)), SplitConfig(test_frac=0.3))
    assert again.to_dict() == split.to_dict()
    other_seed = compute_split(clips, SplitConfig(test_frac=0.3, seed=1))
    assert other_seed.test_sources != split.test_sources


def test_adding_a_source_does_not_move_the_others():
    clips = clips_of(12)
    before = compute_split(clips, SplitConfig(test_frac=0.3))
    after = compute_split(clips + clips_of(13)[-3:], SplitConfig(test_frac=0.3))
    assert set(before.test_sources) <= set(after.test_sources)
    assert set(before.train_sources) <= set(after.train_sources)


def test_fraction_zero_one_source_and_guards():
    assert compute_split(clips_of(5), SplitConfig(test_frac=0.0)).test_clip_ids == []
    one = compute_split(clips_of(1), SplitConfig(test_frac=0.5))
    assert one.test_clip_ids == [] and "--split all" in one.note
    tiny = compute_split(clips_of(2), SplitConfig(test_frac=1e-9))  # no group under the threshold: one held out
    assert len(tiny.test_sources) == 1 and len(tiny.train_sources) == 1
    most = compute_split(clips_of(2), SplitConfig(test_frac=0.999999))  # all under it: one still trains
    assert len(most.test_sources) == 1 and len(most.train_sources) == 1
    with pytest.raises(ValueError, match="test_frac"):
        compute_split(clips_of(2), SplitConfig(test_frac=1.0))


def test_one_speaker_in_two_sources_is_one_group():
    rng = np.random.default_rng(1)
    shared = unit(rng.standard_normal(256))
    close = unit(shared + 0.2 * unit(rng.standard_normal(256)))  # cosine ~0.98 with shared
    clips = clips_of(8, voices={2: shared, 5: close})
    split = compute_split(clips, SplitConfig(test_frac=0.5))
    assert ["sha02", "sha05"] in split.groups
    assert ("sha02" in split.test_sources) == ("sha05" in split.test_sources)
    apart = compute_split(clips, SplitConfig(test_frac=0.5, speaker_merge_cos=None))
    assert ["sha02"] in apart.groups and ["sha05"] in apart.groups


def write_sources(shards: Path, n_sources: int, per_source: int = 2, start: int = 0, name: str = "part-0000") -> None:
    rows = []
    for s in range(n_sources):
        for k in range(per_source):
            number = start + s * per_source + k
            rows.append(make_clip(number, 120, source_path=f"/media/src{s}.mp4", source_sha256=f"{s:064d}"))
    write_shard(shards / f"{name}.parquet", rows)


def test_prepare_split_writes_reuses_and_extends(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    write_sources(shards, 6)
    run = tmp_path / "run"
    cfg = SplitConfig(test_frac=0.4)
    first = prepare_split(shards, run, cfg)
    assert (run / SPLIT_FILE).is_file() and read_split(run).to_dict() == first.to_dict()
    assert read_split(run / "checkpoints" / "step_00000010").test_clip_ids == first.test_clip_ids
    assert len(scan_clip_sources(str(shards))) == 12
    # the shards grow: a new clip of a held-out source is held out, a new source trains
    held = first.test_sources[0]
    s_held = int(held)
    extra = [make_clip(100, 120, source_path=f"/media/src{s_held}.mp4", source_sha256=held),
             make_clip(101, 120, source_path="/media/new.mp4", source_sha256="f" * 64)]
    write_shard(shards / "part-0001.parquet", extra)
    again = prepare_split(shards, run, SplitConfig(test_frac=0.9, seed=5))  # the stored split wins
    assert set(first.test_clip_ids) < set(again.test_clip_ids)
    assert extra[0]["clip_id"] in again.test_clip_ids and extra[1]["clip_id"] in again.train_clip_ids
    assert "f" * 64 in again.train_sources


def test_dit_prepare_run_excludes_the_test_clips(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    write_sources(shards, 6)
    cfg = load_train_config(REPO / "configs" / "train_tiny.yaml", ["data.split.test_frac=0.4"])
    assets = prepare_run(cfg, shards, tmp_path / "run")
    split = json.loads((tmp_path / "run" / SPLIT_FILE).read_text())
    assert split["test_clip_ids"] and set(assets.index.clip_ids) == set(split["train_clip_ids"])
    assert assets.index.dropped["held_out_test"] == len(split["test_clip_ids"])
    none = prepare_run(load_train_config(REPO / "configs" / "train_tiny.yaml"), shards, tmp_path / "run0")
    assert len(none.index) == 12 and read_split(tmp_path / "run0").test_clip_ids == []
