"""Cluster faults on a real Ray (this machine, loopback only): a killed stage actor, a lost node.

Each run curates the talking videos of the quick corpus and must end with exactly the clips of a
clean serial run (``curated_serial``), nothing duplicated, and a folder that verifies. Marked slow:
each starts Ray and runs the whole job (about 1-2 minutes on 2 cores).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipeline.storage import OutputStore
from pipeline.verify import verify_output
from tests.conftest import REPO

pytestmark = pytest.mark.slow

FILES = ("videoretalking_face1.mp4", "videoretalking_face2.mp4", "videoretalking_face4.mp4",
         "sadtalker_WDA_KatieHill_000.mp4", "grid_bbaf2n.mpg")


def clip_ids(out: Path) -> list[str]:
    table = OutputStore(str(out)).read_table("shards", ["clip_id"])
    return sorted(table.column("clip_id").to_pylist()) if table is not None else []


@pytest.fixture
def inputs(media_dir, tmp_path) -> Path:
    src = tmp_path / "in"
    src.mkdir()
    for name in FILES:
        os.symlink(media_dir / name, src / name)
    return src


@pytest.fixture
def clean_ids(curated_serial) -> list[str]:
    """The clean run's clips of these files (the serial run over the whole corpus, same config)."""
    table = OutputStore(str(curated_serial)).read_table("shards", ["clip_id", "source_path"])
    return sorted(c for c, p in zip(table.column("clip_id").to_pylist(), table.column("source_path").to_pylist(),
                                    strict=True) if p.rsplit("/", 1)[-1] in FILES)


def stage_actor_pids() -> list[int]:
    """PIDs of Ray worker processes running a stage actor's batch right now (process titles)."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [int(line.split(None, 1)[0]) for line in out.splitlines()
            if "MapWorker(MapBatches(_StageActor)).submit" in line]  # Ray 2.60's title while in a batch


def test_a_stage_actor_killed_mid_file_is_retried_and_the_clips_equal_a_clean_run(inputs, clean_ids, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "pipeline.run", "--input", str(inputs), "--output", str(out), "--no-progress",
           "--set", "run.files_per_shard=1", "--set", "run.local_num_cpus=2"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    killed = None
    try:
        deadline = time.time() + 600
        while killed is None and proc.poll() is None and time.time() < deadline:
            pids = stage_actor_pids()
            if pids:  # an actor is inside a file's batch: kill its process outright
                killed = pids[0]
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.2)
        output, _ = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert killed is not None, "no stage actor was ever seen mid-batch"
    assert proc.returncode == 0, output[-3000:]
    assert clip_ids(out) == clean_ids and clean_ids  # the killed file was retried: the same clips
    report = verify_output(str(out))
    assert report.ok, report.problems
    assert OutputStore(str(out)).read_table("errors") is None  # retried within the run, not given up


def test_a_worker_node_removed_mid_run_the_job_completes_with_the_same_clips(inputs, clean_ids, tmp_path):
    """A head and a worker node as separate raylets (ray.cluster_utils.Cluster), so blocks cross
    nodes; the worker node is removed while the job runs."""
    import ray
    from ray.cluster_utils import Cluster

    from pipeline.config import load_config
    from pipeline.run import curate

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    worker = cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    out = tmp_path / "out"
    cfg = load_config(REPO / "configs" / "curate.yaml", ["run.files_per_shard=1"])
    cfg.run.ray_address = cluster.address
    result: dict = {}

    def run() -> None:
        try:
            result["manifest"] = curate(str(inputs), str(out), cfg, executor="ray", show_progress=False)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            result["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    try:
        deadline = time.time() + 300
        while not list((out / "sources").glob("part-*.parquet")) and time.time() < deadline and t.is_alive():
            time.sleep(0.5)  # the first commit landed: the job is in full flight
        assert t.is_alive(), f"the job ended before the node could be removed: {result}"
        cluster.remove_node(worker)
        t.join(timeout=900)
        assert not t.is_alive(), "the job did not finish on the remaining node"
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert "error" not in result, result.get("error")
    assert result["manifest"]["runs"][-1]["errors"] == 0
    assert clip_ids(out) == clean_ids and clean_ids
    assert verify_output(str(out)).ok


def test_a_file_that_kills_its_worker_every_time_is_given_up_and_recorded(media_dir, tmp_path, monkeypatch):
    """Fault injection (no real input segfaults a decoder on demand): the scene stage kills its own
    process on one file. After run.max_task_retries retries the file is an errors/ row, the other
    file is committed, and the job exits 1 instead of restarting the actor for ever."""
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(media_dir / "grid_bbaf2n.mpg", src / "ok.mpg")
    shutil.copy(media_dir / "grid_bbaf2n.mpg", src / "poison.mpg")
    with open(src / "poison.mpg", "ab") as fh:
        fh.write(b"different bytes, same video")  # its own sha256
    out = tmp_path / "out"
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "sitecustomize.py").write_text(
        "import os\n"
        "from stages.scene import SceneCutStage\n"
        "_orig = SceneCutStage.process_item\n"
        "def _crash(self, item):\n"
        "    if item.source_path.endswith('poison.mpg'):\n"
        "        os._exit(137)\n"
        "    return _orig(self, item)\n"
        "SceneCutStage.process_item = _crash\n")
    env = {**os.environ, "PYTHONPATH": f"{plugin}{os.pathsep}{REPO}"}
    cmd = [sys.executable, "-m", "pipeline.run", "--input", str(src), "--output", str(out), "--no-progress",
           "--set", "run.files_per_shard=1", "--set", "run.local_num_cpus=2", "--set", "run.max_task_retries=1"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    store = OutputStore(str(out))
    assert [r["source_path"].rsplit("/", 1)[-1] for r in store.read_table("sources").to_pylist()] == ["ok.mpg"]
    (err,) = store.read_table("errors").to_pylist()
    assert err["source_path"].endswith("poison.mpg") and err["stage"] == "worker" and "died 2 times" in err["detail"]
