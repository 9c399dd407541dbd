"""Errors are not rejects: a fault is recorded in errors/, never marked done, retried by the next
run with its attempt counted, and makes the job's exit status non-zero."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq

from pipeline.run import main
from pipeline.storage import OutputStore
from shards.reader import ERRORS, SOURCES


def read_all(out, sub):
    table = OutputStore(str(out)).read_table(sub)
    return [] if table is None else table.to_pylist()


def test_an_error_is_retried_until_it_succeeds_and_never_becomes_a_reject(media_dir, tmp_path, capsys, monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(media_dir / "grid_bbaf2n.mpg", src / "grid.mpg")  # 3 s: the cheapest talking video
    out = tmp_path / "out"
    # An injected fault: the scene stage raises on every file (an environment fault, e.g. a disk
    # error mid-decode). Injected because no real input makes working code raise on demand.
    from stages.scene import SceneCutStage

    def broken_stage(self, item):
        raise OSError("injected fault: Input/output error")

    monkeypatch.setattr(SceneCutStage, "process_item", broken_stage)
    cmd = ["--input", str(src), "--output", str(out), "--executor", "serial", "--no-progress"]
    assert main(cmd) == 1
    assert "failed with an error" in capsys.readouterr().err
    assert not read_all(out, SOURCES) and not read_all(out, "rejects")  # not done, not a reject
    (err,) = read_all(out, ERRORS)
    assert err["stage"] == "scene" and err["attempt"] == 1 and "OSError: injected fault" in err["detail"]
    assert err["source_path"].endswith("grid.mpg") and err["config_hash"]

    assert main(cmd) == 1  # the same command retries the file (and fails again: attempt 2)
    assert sorted(e["attempt"] for e in read_all(out, ERRORS)) == [1, 2]
    manifest = OutputStore(str(out)).read_json("manifest.json")
    assert manifest["errors"] == {"attempts": 2, "pending_files": 1, "by_stage": {"scene": 2}}
    assert manifest["runs"][-1]["errors"] == 1

    monkeypatch.undo()
    assert main(cmd) == 0  # fault gone: the third attempt commits the file
    (row,) = read_all(out, SOURCES)
    assert row["attempt"] == 3 and row["status"] in ("kept", "rejected") and row["config_hash"]
    manifest = OutputStore(str(out)).read_json("manifest.json")
    assert manifest["errors"]["pending_files"] == 0 and manifest["inputs"] == 1
    assert main(cmd) == 0 and len(read_all(out, SOURCES)) == 1  # done now: a re-run redoes nothing
    for part in (out / ERRORS).glob("part-*.parquet"):
        assert pq.read_table(part).num_rows == 1


def test_a_changed_config_is_refused_before_any_work_unless_allowed(media_dir, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(media_dir / "grid_bbaf2n.mpg", src / "a.mpg")
    out = tmp_path / "out"
    base = ["--input", str(src), "--output", str(out), "--executor", "serial", "--no-progress"]
    assert main(base) == 0
    assert main(base + ["--set", "run.files_per_shard=3"]) == 0  # scheduling is not a config change
    first = OutputStore(str(out)).read_json("manifest.json")
    shutil.copy(media_dir / "videoretalking_face2.mp4", src / "b.mp4")  # a new input arrives
    changed = base + ["--set", "dnsmos.min_dnsmos_ovrl=1.0"]
    assert main(changed) == 2
    err = capsys.readouterr().err
    assert "dnsmos.min_dnsmos_ovrl: 3.0 -> 1.0" in err and "--allow-config-change" in err and "new output" in err
    assert len(read_all(out, SOURCES)) == 1  # refused before any work: b.mp4 was not touched
    assert OutputStore(str(out)).read_json("manifest.json") == first
    assert main(changed + ["--allow-config-change"]) == 0
    rows = {r["source_path"].rsplit("/", 1)[-1]: r["config_hash"] for r in read_all(out, SOURCES)}
    assert rows["a.mpg"] == first["config_hash"] != rows["b.mp4"]  # which config produced each file
    manifest = OutputStore(str(out)).read_json("manifest.json")
    assert set(manifest["configs"]) == {rows["a.mpg"], rows["b.mp4"]}
    assert [r["config_hash"] for r in manifest["runs"]][-1] == rows["b.mp4"]


def test_the_same_bytes_under_two_names_are_processed_once(media_dir, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(media_dir / "grid_bbaf2n.mpg", src / "a.mpg")
    shutil.copy(media_dir / "grid_bbaf2n.mpg", src / "b_copy.mpg")
    out = tmp_path / "out"
    assert main(["--input", str(src), "--output", str(out), "--executor", "serial", "--no-progress"]) == 0
    rows = {r["source_path"].rsplit("/", 1)[-1]: r for r in read_all(out, SOURCES)}
    assert rows["b_copy.mpg"]["status"] == "duplicate" and rows["a.mpg"]["status"] != "duplicate"
    (dup,) = [r for r in read_all(out, "rejects") if r["reason"] == "duplicate"]
    assert dup["source_path"].endswith("b_copy.mpg") and "a.mpg" in dup["detail"]


def test_a_full_disk_mid_commit_is_a_clear_error_and_the_rerun_completes(media_dir, tmp_path):
    """RLIMIT_FSIZE stands in for a full disk: the small file's parts fit, the talking clip's shard
    does not. The run exits 1 naming the file it could not write, leaves no temporary file and no
    sources row for the failed commit; the same command without the limit finishes the job."""
    import resource
    import subprocess
    import sys

    from pipeline.verify import verify_output
    from tests.conftest import REPO

    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(media_dir / "grid_bbaf2n.mpg", src / "a_small.mpg")  # no clip: small parts
    shutil.copy(media_dir / "videoretalking_face2.mp4", src / "b_talking.mp4")  # a clip: a large shard part
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "pipeline.run", "--input", str(src), "--output", str(out), "--executor", "serial",
           "--no-progress", "--set", "run.files_per_shard=1"]
    limit = 150_000  # bytes per file: a clip's shard part is larger

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    full = subprocess.run(cmd, cwd=REPO, preexec_fn=cap, capture_output=True, text=True, timeout=900)
    assert full.returncode == 1, full.stderr[-2000:]
    assert "cannot write" in full.stderr and "run the same command again" in full.stderr
    assert not [p for p in out.rglob(".*") if p.is_file()]  # no temporary file left behind
    done = {r["source_path"].rsplit("/", 1)[-1] for r in read_all(out, SOURCES)}
    assert "b_talking.mp4" not in done and done <= {"a_small.mpg"}  # only what fully committed counts as done
    assert verify_output(str(out)).ok  # what is there is consistent: no half commit
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    assert sorted(r["source_path"].rsplit("/", 1)[-1] for r in read_all(out, SOURCES)) == ["a_small.mpg",
                                                                                          "b_talking.mp4"]
    assert len(read_all(out, "shards")) >= 1 and verify_output(str(out)).ok
