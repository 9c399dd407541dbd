"""``omnitalker verify``: a clean curated output passes; each kind of damage is found and named."""

from __future__ import annotations

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.verify import main, verify_output


@pytest.fixture
def copy(curated_serial, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(curated_serial, out)
    return out


def rewrite_first_shard(out, change) -> None:
    part = sorted((out / "shards").glob("part-*.parquet"))[0]
    table = pq.read_table(part)
    meta = table.schema.metadata
    rows = table.to_pylist()
    change(rows[0])
    new = pa.Table.from_pylist(rows, schema=table.schema).replace_schema_metadata(meta)
    pq.write_table(new, part, write_page_checksum=True)


def test_the_curated_output_verifies_and_the_job_wrote_its_report(curated_serial, capsys):
    report = verify_output(str(curated_serial))
    assert report.ok, report.problems
    manifest = json.loads((curated_serial / "manifest.json").read_text())
    assert report.counts["clips"] == manifest["clips"] >= 3 and report.counts["sources"] == manifest["inputs"]
    assert json.loads((curated_serial / "verify.json").read_text())["ok"] is True  # written by the run itself
    assert manifest["runs"][-1]["verify_ok"] is True
    assert main([str(curated_serial)]) == 0 and "verify: OK" in capsys.readouterr().out


def test_an_input_counted_twice_and_leftovers_are_found(copy, capsys):
    src = sorted((copy / "sources").glob("part-*.parquet"))[0]
    shutil.copy(src, copy / "sources" / "part-00000000000000000000.parquet")  # the same inputs again
    (copy / "shards" / ".part-x.parquet.tmp").write_bytes(b"half a commit")
    shutil.copy(sorted((copy / "shards").glob("part-*.parquet"))[0], copy / "shards" / "part-ffffffffffffffffffff.parquet")
    assert main([str(copy)]) == 1
    out = capsys.readouterr().out
    assert "accounting" in out and "sources rows (an input must be accounted for exactly once)" in out
    problems = json.loads((copy / "verify.json").read_text())["problems"]
    assert problems["leftover_files"]["count"] == 2  # the temporary file and the part with no commit
    assert problems["clip_ids"]["count"] >= 1  # the stray part's clips appear twice


def test_a_wrong_clip_id_and_a_wrong_length_are_found(copy):
    def damage(row):
        row["clip_id"] = row["clip_id"][:-1] + ("0" if row["clip_id"][-1] != "0" else "1")
        row["n_frames"] += 1

    rewrite_first_shard(copy, damage)
    report = verify_output(str(copy))
    assert set(report.n_problems) == {"clip_ids", "lengths"}
    assert report.n_problems["clip_ids"] == 1 and report.n_problems["lengths"] == 1


def test_audio_shorter_than_its_span_is_found(copy):
    import io

    import numpy as np
    import soundfile as sf

    def damage(row):
        buf = io.BytesIO()
        sf.write(buf, np.zeros(1000, np.float32), 24000, format="FLAC", subtype="PCM_16")
        row["audio_flac"] = buf.getvalue()

    rewrite_first_shard(copy, damage)
    assert verify_output(str(copy), decode_audio=False).ok  # the quick check at the end of a run skips audio
    report = verify_output(str(copy))
    assert report.n_problems["lengths"] == 1 and "audio has 1000 samples" in report.problems["lengths"][0]


def test_a_corrupted_page_is_refused_by_its_crc(copy):
    part = sorted((copy / "shards").glob("part-*.parquet"))[0]
    data = bytearray(part.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 64] = bytes(b ^ 0xFF for b in data[mid:mid + 64])
    part.write_bytes(bytes(data))
    report = verify_output(str(copy))
    assert report.n_problems["corrupt_part"] == 1 and part.name in report.problems["corrupt_part"][0]
