from __future__ import annotations

import shutil
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from model.vocab import Vocab
from shards.reader import ShardError
from shards.schema import SchemaVersionError
from tests.training.shard_fixtures import (
    build_table,
    make_clip,
    synthetic_shards,  # noqa: F401  (fixture)
    write_shard,
    write_shard_set,
    write_truncated_shard,
)
from training import data as data_mod
from training.data import (
    DataConfig,
    build_index,
    compute_feature_stats,
    make_loader,
    plan_epoch,
)


def vocab_of(index) -> Vocab:
    return Vocab.build(index.texts())


def epoch_ids(index, cfg: DataConfig, world_size: int, epoch: int = 0) -> list[list[str]]:
    """Per rank, the clip ids in the order the loader yields them."""
    vocab = vocab_of(index)
    return [[cid for b in make_loader(index, vocab, cfg, r, world_size, epoch) for cid in b["clip_ids"]]
            for r in range(world_size)]


def test_index_reads_only_scalar_columns(synthetic_shards, monkeypatch):  # noqa: F811
    seen: list[tuple[str, ...]] = []
    real = pq.ParquetFile.read_row_group

    def spy(self, i, columns=None, **kw):
        assert columns is not None, "the index must name its columns"
        seen.append(tuple(columns))
        return real(self, i, columns=columns, **kw)

    def refuse(*a, **k):
        raise AssertionError("the index must read row groups with named columns only")

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", spy)
    monkeypatch.setattr(pq.ParquetFile, "read", refuse)
    monkeypatch.setattr(pq.ParquetFile, "iter_batches", refuse)
    monkeypatch.setattr(pq, "read_table", refuse)
    index = build_index(str(synthetic_shards.shards_dir), DataConfig())
    assert len(index) == len(synthetic_shards.rows) == 66
    assert len(seen) == 3 * 6  # every row group of every file, once
    for cols in seen:
        assert not {"mel", "visual", "audio_flac", "mp_blendshapes", "words"} & set(cols)
    assert sorted(index.clip_ids) == sorted(synthetic_shards.rows)
    assert list(index.texts()) == [synthetic_shards.rows[c]["text_model"] for c in index.clip_ids]
    # the curation output folder (holding shards/) works as well
    assert len(build_index(str(synthetic_shards.shards_dir.parent), DataConfig())) == 66


def test_filters_and_null_rule(tmp_path):
    rows = [make_clip(0, 200),
            make_clip(1, 200, dnsmos_ovrl=2.0),
            make_clip(2, 200, dnsmos_ovrl=None),  # null: passes no threshold, fails a set one
            make_clip(3, 200, asd_score=0.1),
            make_clip(4, 200, fit_rmse=0.2),
            make_clip(5, 200, fit_rmse=None, visual=None),  # audio-only clip
            make_clip(6, 200, text_model=None),
            make_clip(7, 30, text="x" * 31),  # more characters than frames
            make_clip(8, 200, duration_s=0.5),
            make_clip(9, 200, duration_s=30.0)]
    write_shard(tmp_path / "part-a.parquet", rows, row_group_size=3)
    plain = build_index(str(tmp_path), DataConfig())
    assert sorted(plain.clip_ids) == sorted(r["clip_id"] for r in rows if r["clip_id"][-1] not in "567")
    assert plain.dropped == {"no_visual": 1, "no_text": 1, "text_longer_than_frames": 1}
    assert plain.n_scanned == 10
    cfg = DataConfig(min_dnsmos_ovrl=3.0, min_asd_score=0.5, max_fit_rmse=0.05, min_duration_s=1.0,
                     max_duration_s=20.0)
    strict = build_index(str(tmp_path), cfg)
    assert [c[-1] for c in strict.clip_ids] == ["0"]
    assert strict.dropped == {"no_visual": 1, "no_text": 1, "text_longer_than_frames": 1, "too_short": 1,
                              "too_long": 1, "low_dnsmos_ovrl": 2, "low_asd_score": 1, "high_fit_rmse": 1}
    keep_all = build_index(str(tmp_path), DataConfig(require_visual=False, require_text=False))
    assert len(keep_all) == 9  # only the text longer than its frames goes


def test_batches_respect_frame_budget_and_skip_long_clips(tmp_path, monkeypatch):
    shards = write_shard_set(tmp_path / "shards", n_files=2, clips_per_file=30, min_frames=80, max_frames=900,
                             seed=3)
    write_shard(tmp_path / "shards" / "part-long.parquet", [make_clip(500, 2500)])
    cfg = DataConfig(max_frames_per_batch=2000, max_samples_per_batch=6)
    index = build_index(str(tmp_path / "shards"), cfg)
    loaded: list[str] = []
    real = data_mod.load_clip
    monkeypatch.setattr(data_mod, "load_clip", lambda r, ix, p: loaded.append(ix.clip_ids[p]) or real(r, ix, p))
    with pytest.warns(UserWarning, match="1 clips longer than max_frames_per_batch=2000"):
        loader = make_loader(index, vocab_of(index), cfg)
    batches = list(loader)
    assert len(batches) == len(loader)
    used = real_frames = 0
    for b in batches:
        n_b, n = b["mel"].shape[:2]
        assert n_b * n <= 2000 and n_b <= 6
        assert n == int(b["lengths"].max())
        used += n_b * n
        real_frames += int(b["lengths"].sum())
    ids = [c for b in batches for c in b["clip_ids"]]
    assert sorted(ids) == sorted(shards.rows)  # the long clip is skipped, every other clip kept
    assert "synthetic-000500" not in loaded  # and never read
    assert 1 - real_frames / used < 0.2  # length-sorted windows keep padding small


def test_batch_contents_and_text_padding(synthetic_shards):  # noqa: F811
    index = build_index(str(synthetic_shards.shards_dir), DataConfig())
    vocab = vocab_of(index)
    n_seen = 0
    for b in make_loader(index, vocab, DataConfig(max_frames_per_batch=3000)):
        assert b["mel"].dtype == b["codes"].dtype == torch.float32
        assert b["text"].dtype == b["lengths"].dtype == torch.int64
        n_max = b["mel"].shape[1]
        assert b["codes"].shape == (len(b["clip_ids"]), n_max, 61) and b["text"].shape == b["mel"].shape[:2]
        for i, cid in enumerate(b["clip_ids"]):
            mel, visual = synthetic_shards.features(cid)
            n = len(mel)
            assert int(b["lengths"][i]) == n
            np.testing.assert_array_equal(b["mel"][i, :n].numpy(), mel)
            np.testing.assert_array_equal(b["codes"][i, :n].numpy(), visual)
            assert not b["mel"][i, n:].any() and not b["codes"][i, n:].any()
            ids = vocab.encode(synthetic_shards.rows[cid]["text_model"])
            assert b["text"][i, :len(ids)].tolist() == ids
            assert not b["text"][i, len(ids):].any()  # 0 to the clip's frames, then to N
            assert vocab.decode(b["text"][i].tolist()) == synthetic_shards.rows[cid]["text_model"]
            n_seen += 1
    assert n_seen == 66


def test_every_clip_once_across_ranks_and_workers(synthetic_shards):  # noqa: F811
    index = build_index(str(synthetic_shards.shards_dir), DataConfig())
    cfg = DataConfig(max_frames_per_batch=1500, num_workers=2, even_batches=False, window_row_groups=2)
    per_rank = epoch_ids(index, cfg, world_size=2)
    assert all(per_rank)
    counts = Counter(c for ids in per_rank for c in ids)
    assert set(counts) == set(synthetic_shards.rows) and set(counts.values()) == {1}
    # with even_batches every rank steps equally often and still sees all its clips
    even = DataConfig(max_frames_per_batch=1500, num_workers=2, window_row_groups=2)
    plan = plan_epoch(index, even, world_size=2)
    assert len(plan.ranks[0]) == len(plan.ranks[1])
    vocab = vocab_of(index)
    lens = [len(make_loader(index, vocab, even, r, 2)) for r in range(2)]
    assert lens[0] == lens[1] == len(plan.ranks[0])
    assert set(c for ids in epoch_ids(index, even, 2) for c in ids) == set(synthetic_shards.rows)


def test_order_is_deterministic_per_seed_and_epoch(synthetic_shards):  # noqa: F811
    index = build_index(str(synthetic_shards.shards_dir), DataConfig())
    cfg = DataConfig(max_frames_per_batch=1500, num_workers=2)
    first = epoch_ids(index, cfg, 2, epoch=0)
    assert epoch_ids(index, cfg, 2, epoch=0) == first
    assert epoch_ids(index, cfg, 2, epoch=1) != first
    assert epoch_ids(index, DataConfig(max_frames_per_batch=1500, num_workers=2, seed=1), 2, epoch=0) != first
    in_order = epoch_ids(index, DataConfig(max_frames_per_batch=1500, shuffle=False), 1)
    assert in_order == epoch_ids(index, DataConfig(max_frames_per_batch=1500, shuffle=False), 1, epoch=5)


def test_wrong_schema_version_and_corrupt_files_name_the_file(tmp_path):
    good = write_shard_set(tmp_path / "a", n_files=1, clips_per_file=4)
    v1 = write_shard(good.shards_dir / "part-v1.parquet", [make_clip(90, 100)], schema_version=1)
    with pytest.raises(SchemaVersionError, match=f"{v1}: schema version 1"):
        build_index(str(good.shards_dir), DataConfig())
    bad = write_shard_set(tmp_path / "b", n_files=1, clips_per_file=4)
    cut = write_truncated_shard(bad.shards_dir / "part-cut.parquet", [make_clip(91, 300), make_clip(92, 300)])
    with pytest.raises(ShardError, match=f"{cut}: not a readable Parquet file"):
        build_index(str(bad.shards_dir), DataConfig())
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no part-"):
        build_index(str(tmp_path / "empty"), DataConfig())


def corrupt_mel_pages(path: Path) -> None:
    """Overwrite bytes inside the first row group's mel pages."""
    col = next(c for c in (pq.ParquetFile(path).metadata.row_group(0).column(j) for j in range(40))
               if c.path_in_schema.startswith("mel"))
    data = bytearray(path.read_bytes())
    start = col.data_page_offset + col.total_compressed_size // 3
    data[start:start + 200] = b"\x5a" * 200
    path.write_bytes(bytes(data))


def write_crc_shard_with_bad_mel(d: Path) -> Path:
    crc = d / "part-crc.parquet"
    pq.write_table(build_table([make_clip(i, 300) for i in range(8)]), crc, compression="zstd",
                   row_group_size=4, write_page_checksum=True)
    corrupt_mel_pages(crc)
    return crc


def test_worker_errors_reach_the_trainer_naming_the_file(tmp_path):
    """A corrupt page read in a worker process raises in the main process (no hang).

    torch's DataLoader then takes ~5 s per worker to shut down (its join timeout), hence one worker here.
    """
    (tmp_path / "shards").mkdir()
    crc = write_crc_shard_with_bad_mel(tmp_path / "shards")
    cfg = DataConfig(num_workers=1)
    index = build_index(str(tmp_path), cfg)  # the scalar columns are intact
    with pytest.raises(ShardError, match=f"{crc}: row group 0 unreadable"):
        list(make_loader(index, vocab_of(index), cfg))


def test_bad_rows_raise_naming_the_file(tmp_path):
    d = tmp_path / "shards"
    d.mkdir()
    crc = write_crc_shard_with_bad_mel(d)
    cfg = DataConfig(shuffle=False)
    index = build_index(str(d), cfg)
    with pytest.raises(ShardError, match=f"{crc}: row group 0 unreadable"):
        list(make_loader(index, vocab_of(index), cfg))
    crc.unlink()
    short = write_shard(d / "part-short.parquet", [make_clip(20, 300, n_frames=310)])
    index = build_index(str(d), cfg)
    with pytest.raises(ShardError, match=f"{short}: row group 0 row 0: n_frames 310 but mel has 300"):
        list(make_loader(index, vocab_of(index), cfg))
    nan_mel = np.full((300, 100), np.nan, np.float32)
    write_shard(short, [make_clip(21, 300, mel=nan_mel)])
    index = build_index(str(d), cfg)
    with pytest.raises(ShardError, match="non-finite"):
        list(make_loader(index, vocab_of(index), cfg))
    write_shard(short, [make_clip(22, 300)])  # rewritten after indexing
    with pytest.raises(ShardError, match="the shard changed since the index was built"):
        list(make_loader(index, vocab_of(index), cfg))


def test_feature_stats_match_numpy(synthetic_shards):  # noqa: F811
    index = build_index(str(synthetic_shards.shards_dir), DataConfig())
    stats = compute_feature_stats(index, max_clips=1000)
    mel = np.concatenate([synthetic_shards.features(c)[0] for c in index.clip_ids]).astype(np.float64)
    codes = np.concatenate([synthetic_shards.features(c)[1] for c in index.clip_ids]).astype(np.float64)
    assert stats["n_clips"] == 66 and stats["n_frames"] == len(mel)
    np.testing.assert_allclose(stats["mel_mean"], mel.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats["mel_std"], mel.std(0), rtol=1e-5)
    np.testing.assert_allclose(stats["codes_mean"], codes.mean(0), atol=1e-6)
    np.testing.assert_allclose(stats["codes_std"], np.maximum(codes.std(0), 1e-3), rtol=1e-5)
    assert compute_feature_stats(index, max_clips=5)["n_clips"] == 5


@pytest.mark.slow
def test_loader_on_real_curated_shards(curated_serial, tmp_path):
    """The pipeline's own shards: every clip with codes comes out exactly as stored."""
    index = build_index(str(curated_serial), DataConfig())
    assert len(index) > 0, index.summarize()
    # the pipeline's shards are read in place; a copy keeps this test's view fixed
    shutil.copytree(curated_serial / "shards", tmp_path / "shards")
    index = build_index(str(tmp_path), DataConfig())
    table = pq.read_table(tmp_path / "shards").to_pylist()
    rows = {r["clip_id"]: r for r in table}
    vocab = vocab_of(index)
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a long real clip may exceed the default budget
        loader = make_loader(index, vocab, DataConfig(max_frames_per_batch=20000))
    for b in loader:
        for i, cid in enumerate(b["clip_ids"]):
            row = rows[cid]
            n = row["n_frames"]
            assert int(b["lengths"][i]) == n
            np.testing.assert_array_equal(b["mel"][i, :n].numpy(), np.asarray(row["mel"], np.float32))
            np.testing.assert_array_equal(b["codes"][i, :n].numpy(), np.asarray(row["visual"], np.float32))
            assert vocab.decode(b["text"][i].tolist()) == " ".join(row["text_model"].split())
            seen.append(cid)
    expected = [r["clip_id"] for r in table if r["visual"] is not None and r["text_model"]]
    assert sorted(seen) == sorted(expected)
