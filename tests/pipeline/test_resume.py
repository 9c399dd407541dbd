"""Kill and resume: a SIGKILLed Ray run, re-run, ends with exactly the clean run's clips.

The Ray runs cut the long-enough files into chunks (``run.max_chunk_s=4``) and the clean run does
not: the clip set must be the same either way.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq

from pipeline.storage import OutputStore
from tests.conftest import REPO


def committed(out) -> int:
    d = out / "sources"
    return len(list(d.glob("part-*.parquet"))) if d.exists() else 0


def run_cmd(media_dir, out) -> list[str]:
    return [sys.executable, "-m", "pipeline.run", "--input", str(media_dir), "--output", str(out),
            "--no-progress", "--set", "run.files_per_shard=1", "--set", "run.local_num_cpus=2",
            # the scene-cut clip (10 s, three shots) is cut into chunks that run on different actors
            # and are merged on the driver (stages/chunk.py); the clips must not change
            "--set", "run.max_chunk_s=4"]


def test_sigkill_then_rerun_equals_clean_run(media_dir, curated_serial, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen(run_cmd(media_dir, out), cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while committed(out) < 2 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert proc.poll() is None, "the run finished before it could be killed"
        assert committed(out) >= 2
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the embedded Ray with it
        proc.wait()
    killed_at = committed(out)
    assert killed_at < 15, "nothing left to resume"

    done = subprocess.run(run_cmd(media_dir, out), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    store = OutputStore(str(out))
    clean = sorted(OutputStore(str(curated_serial)).read_table("shards").column("clip_id").to_pylist())
    resumed = store.read_table("shards").column("clip_id").to_pylist()
    assert sorted(resumed) == clean  # same set, nothing duplicated
    assert len(set(resumed)) == len(resumed)
    provs = [json.loads(p) for p in store.read_table("sources").column("provenance").to_pylist()]
    assert any(p.get("chunks", {}).get("count", 0) >= 2 for p in provs), "no file was cut into chunks"
    sources = store.read_table("sources").column("source_sha256").to_pylist()
    assert len(sources) == len(set(sources)) == 15
    leftovers = [p for p in out.rglob("*") if p.name.startswith(".tmp-")]
    assert not leftovers
    for p in out.rglob("part-*.parquet"):
        pq.ParquetFile(p)  # every committed part is a complete Parquet file
