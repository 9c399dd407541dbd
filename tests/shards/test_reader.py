"""shards/reader.py: listing, opening and looking up parts, as training, the dashboard and generation do."""

from __future__ import annotations

import pytest

from shards.reader import ShardError, find_clip, list_shard_parts, open_shard, read_row
from shards.schema import SchemaVersionError
from tests.training.shard_fixtures import (
    clip_features,
    clip_id_of,
    make_clip,
    write_shard,
    write_truncated_shard,
)


@pytest.fixture()
def out_dir(tmp_path):
    shards = tmp_path / "out" / "shards"
    shards.mkdir(parents=True)
    write_shard(shards / "part-b.parquet", [make_clip(n, 90 + n) for n in range(4, 9)], row_group_size=2)
    write_shard(shards / "part-a.parquet", [make_clip(n, 90 + n) for n in range(4)], row_group_size=2)
    (shards / ".tmp-part-c.parquet").write_bytes(b"half written")
    return tmp_path / "out"


def test_lists_parts_of_an_output_folder_or_its_shards_folder(out_dir):
    for where in (out_dir, out_dir / "shards", f"file://{out_dir}"):
        _, parts = list_shard_parts(str(where))
        assert [p.rsplit("/", 1)[-1] for p in parts] == ["part-a.parquet", "part-b.parquet"]


def test_no_parts_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}: no part-"):
        list_shard_parts(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no such shards folder"):
        list_shard_parts(str(tmp_path / "missing"))


def test_find_clip_reads_the_row_and_leaves_out_missing_columns(out_dir):
    path, row = find_clip(str(out_dir), clip_id_of(6), ["clip_id", "n_frames", "visual", "no_such_column"])
    assert path.endswith("part-b.parquet")
    assert row["clip_id"] == clip_id_of(6) and row["n_frames"] == 96
    assert "no_such_column" not in row
    _, visual = clip_features(6, 96)
    assert len(row["visual"]) == 96 and row["visual"][5] == pytest.approx(visual[5].tolist())
    with pytest.raises(KeyError, match="not found in 2 shard part"):
        find_clip(str(out_dir), "nope", ["clip_id"])


def test_read_row_crosses_row_groups(out_dir):
    path = str(out_dir / "shards" / "part-b.parquet")
    pf = open_shard(path)
    assert [read_row(pf, path, r, ["clip_id"])["clip_id"] for r in range(5)] == [clip_id_of(n) for n in range(4, 9)]
    assert read_row(pf, path, 5) is None


def test_open_checks_version_and_names_bad_files(tmp_path):
    old = write_shard(tmp_path / "part-old.parquet", [make_clip(0, 90)], schema_version=2)
    with pytest.raises(SchemaVersionError, match=f"{old}: schema version 2"):
        open_shard(str(old))
    cut = write_truncated_shard(tmp_path / "part-cut.parquet", [make_clip(0, 90)])
    with pytest.raises(ShardError, match=f"{cut}: not a readable Parquet file"):
        open_shard(str(cut))
