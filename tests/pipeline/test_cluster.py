"""Cluster deployment: ray_cluster.yaml against Ray's own schema and validator, and the curation
job submitted with `ray job submit` to a real local Ray head that keeps token authentication on.

The head runs in its own session (``start_new_session``) with its own --temp-dir and free ports,
so it cannot collide with another Ray on the machine, and it is torn down by killing exactly the
processes of that session (never ``ray stop``, which kills every Ray process of every user).
See docs/cluster.md for the token details this test relies on.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import jsonschema
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MEDIA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "media"
CLUSTER_YAML = REPO / "ray_cluster.yaml"
# The venv running the tests: its `ray` starts the head, so the head's workers and the job
# driver (`python` on the head's PATH) are this venv's python with the project installed.
VENV_BIN = Path(sys.executable).parent
SUBSET = ("f5tts_basic_ref_en.wav", "videoretalking_face2.mp4")


# --------------------------------------------------------------------------- ray_cluster.yaml


@pytest.fixture(scope="module")
def cluster_config() -> dict:
    with open(CLUSTER_YAML, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="module")
def ray_schema() -> dict:
    import ray.autoscaler

    path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    return json.loads(path.read_text(encoding="utf-8"))


def test_cluster_yaml_matches_ray_schema(cluster_config, ray_schema):
    validator = jsonschema.Draft7Validator(ray_schema)
    errors = sorted(f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(cluster_config))
    assert errors == []


def test_cluster_yaml_passes_ray_launcher_validation(cluster_config):
    """What `ray up` runs before touching the cloud: validate, fill in the provider defaults, validate again."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(copy.deepcopy(cluster_config))
    prepared = prepare_config(copy.deepcopy(cluster_config))
    validate_config(prepared)
    assert prepared["provider"]["type"] == "aws"
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_cluster_yaml_declares_cpu_and_gpu_workers(cluster_config):
    types = cluster_config["available_node_types"]
    workers = {name: t for name, t in types.items() if name != cluster_config["head_node_type"]}
    gpu = [t for t in workers.values() if t["resources"].get("GPU", 0) >= 1]
    cpu = [t for t in workers.values() if t["resources"].get("CPU", 0) >= 1 and not t["resources"].get("GPU")]
    assert gpu and cpu
    for t in workers.values():
        assert t["max_workers"] >= t.get("min_workers", 0) >= 0
        assert t["node_config"]["InstanceType"]


def test_cluster_yaml_installs_like_the_makefile(cluster_config):
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    torch_pin = re.search(r'"torch==([^"]+)"', pyproject).group(1)
    setup = cluster_config["setup_commands"]
    assert any("-m venv .venv" in c for c in setup)
    torch_cmds = [i for i, c in enumerate(setup) if f"torch=={torch_pin}" in c.split()]
    project_cmds = [i for i, c in enumerate(setup) if c.rstrip().endswith("-e .")]
    assert torch_cmds and project_cmds and torch_cmds[0] < project_cmds[0]  # torch first, as in `make setup`
    for i in torch_cmds + project_cmds:
        assert "-c requirements/constraints.txt" in setup[i]
    assert (REPO / "requirements" / "constraints.txt").exists()
    # The working tree is synced, but never the local virtualenv.
    assert "." in cluster_config["file_mounts"].values()
    assert ".venv" in cluster_config["rsync_exclude"]


def test_cluster_yaml_keeps_token_auth_on(cluster_config):
    everything = json.dumps(cluster_config)  # every command and env setting (comments excluded)
    assert not re.search(r"RAY_AUTH_MODE\W{0,4}disabled", everything)
    assert cluster_config["file_mounts"].get("~/.ray/auth_token") == "~/.ray/auth_token"
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in cluster_config[key] if "ray start" in c]
        assert starts and all("RAY_AUTH_MODE=token" in c for c in starts), key


def _drop_provider(c):
    del c["provider"]


def _gpu_count_as_text(c):
    next(t for t in c["available_node_types"].values() if "GPU" in t["resources"])["resources"]["GPU"] = "one"


def _typo_top_level_key(c):
    c["setup_command"] = c.pop("setup_commands")


def _unknown_head_type(c):
    c["head_node_type"] = "ray.head.missing"


def _min_workers_above_max(c):
    c["max_workers"] = 0
    next(t for n, t in c["available_node_types"].items() if n != c["head_node_type"])["min_workers"] = 1


@pytest.mark.parametrize("mutate", [_drop_provider, _gpu_count_as_text, _typo_top_level_key,
                                    _unknown_head_type, _min_workers_above_max])
def test_broken_cluster_yaml_is_rejected(cluster_config, ray_schema, mutate):
    from ray.autoscaler._private.util import validate_config

    broken = copy.deepcopy(cluster_config)
    mutate(broken)
    with pytest.raises((jsonschema.ValidationError, ValueError)):
        validate_config(broken)
    if mutate in (_drop_provider, _gpu_count_as_text, _typo_top_level_key):  # schema-level errors
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, ray_schema)


# --------------------------------------------------------------------------- local head + ray job submit


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _session_pids(sid: int) -> list[int]:
    """Live (non-zombie) processes of session ``sid``: the head and everything it spawned."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        pid = int(entry)
        try:
            if os.getsid(pid) != sid:
                continue
            with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in ("Z", "X"):
            pids.append(pid)
    return pids


class LocalHead:
    """A single-node Ray cluster started with `ray start --head`, token auth on, isolated."""

    def __init__(self, root: Path, token_file: Path, num_cpus: int):
        self.root = root
        self.num_cpus = num_cpus
        (self.gcs_port, self.dashboard_port, *self.other_ports) = _free_ports(9)
        self.url = f"http://127.0.0.1:{self.dashboard_port}"
        self.log = root / "ray-start.log"
        self.sid: int | None = None
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.update(
            RAY_AUTH_MODE="token",  # what the head enforces and what the CLI clients send
            RAY_AUTH_TOKEN_PATH=str(token_file),  # the token, instead of the user's ~/.ray/auth_token
            RAY_USAGE_STATS_ENABLED="0",
            PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        )
        self.env = env

    def ray(self, *args: str, timeout: float, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(VENV_BIN / "ray"), *args], env=self.env, cwd=self.root,
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            pytest.fail(f"ray {' '.join(args[:2])} exited {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        return proc

    def start(self) -> None:
        agent_listen, agent_grpc, metrics, runtime_env, client, node_manager, object_manager = self.other_ports
        cmd = [str(VENV_BIN / "ray"), "start", "--head", "--node-ip-address", "127.0.0.1",
               "--port", str(self.gcs_port), "--dashboard-host", "127.0.0.1",
               "--dashboard-port", str(self.dashboard_port), "--include-dashboard", "true",
               "--dashboard-agent-listen-port", str(agent_listen), "--dashboard-agent-grpc-port", str(agent_grpc),
               "--metrics-export-port", str(metrics), "--runtime-env-agent-port", str(runtime_env),
               "--ray-client-server-port", str(client), "--node-manager-port", str(node_manager),
               "--object-manager-port", str(object_manager), "--num-cpus", str(self.num_cpus), "--num-gpus", "0",
               "--object-store-memory", str(1 << 30), "--temp-dir", str(self.root / "ray"),
               "--disable-usage-stats", "--log-style", "record", "--log-color", "false"]
        with open(self.log, "w", encoding="utf-8") as log:
            # Own session: every Ray process started below inherits it, so stop() can find them all.
            proc = subprocess.Popen(cmd, env=self.env, cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.sid = proc.pid
        rc = proc.wait(timeout=120)
        if rc != 0:
            pytest.fail(f"ray start exited {rc}:\n{self.log.read_text(errors='replace')[-4000:]}")

    def http(self, path: str, token: str | None) -> tuple[int, str]:
        req = urllib.request.Request(self.url + path)
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8", "replace")

    def wait_for_dashboard(self, token: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.http("/api/version", token)[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"dashboard not up at {self.url}:\n{self.log.read_text(errors='replace')[-4000:]}")
            time.sleep(0.5)

    def stop(self, grace_s: float = 15.0) -> list[int]:
        """SIGTERM, then SIGKILL, the processes of the head's session. Returns any that survived."""
        if self.sid is None:
            return []
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            for pid in _session_pids(self.sid):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait_s
            while _session_pids(self.sid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if not _session_pids(self.sid):
                break
        return _session_pids(self.sid)


def _head_cpus() -> int:
    """Logical CPUs the job needs on the head: at least every actor pool's minimum."""
    from pipeline.config import load_config
    from pipeline.executors import build_stages, plan_operators, required_local_cpus

    cfg = load_config(REPO / "configs" / "curate.yaml")
    plans = plan_operators(build_stages(cfg), cfg.run.fuse_stages)
    return max(2, math.ceil(required_local_cpus(plans)))


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_ray_job_submit_to_local_head_with_token_auth(tmp_path):
    media = MEDIA.resolve()
    for name in SUBSET:
        assert (media / name).is_file(), f"shared test media missing: {media / name}"
    manifest = tmp_path / "inputs.txt"
    manifest.write_text("".join(f"{media / name}\n" for name in SUBSET), encoding="utf-8")
    out = tmp_path / "out"

    # Short root under /tmp: Ray puts unix sockets below --temp-dir (108-byte path limit).
    root = Path(tempfile.mkdtemp(prefix="ot-ray-", dir="/tmp"))
    token = secrets.token_hex(32)  # what `ray get-auth-token --generate` writes (256 bits, hex)
    token_file = root / "auth_token"
    token_file.touch(mode=0o600)
    token_file.write_text(token, encoding="utf-8")
    head = LocalHead(root, token_file, num_cpus=_head_cpus())
    try:
        head.start()
        head.wait_for_dashboard(token)

        # Security is on: no token is refused, a wrong token is refused.
        assert head.http("/api/jobs/", None)[0] == 401
        assert head.http("/api/jobs/", secrets.token_hex(32))[0] == 403
        # The CLI reads the same token (RAY_AUTH_TOKEN_PATH) that the head enforces.
        assert head.ray("get-auth-token", timeout=60).stdout.strip() == token

        sub_id = f"omnitalker-test-{secrets.token_hex(4)}"
        proc = head.ray("job", "submit", "--address", head.url, "--working-dir", str(REPO),
                        "--submission-id", sub_id, "--log-style", "record", "--log-color", "false",
                        "--", "python", "-m", "pipeline.run", "--input", str(manifest), "--output", str(out),
                        "--no-progress", timeout=300, check=False)
        logs = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"job failed (rc {proc.returncode}):\n{logs[-6000:]}"
        assert f"Job '{sub_id}' succeeded" in logs
        # The driver joined this head (RAY_ADDRESS from the job server), not an embedded local Ray.
        assert f":{head.gcs_port}" in logs
        status, body = head.http(f"/api/jobs/{sub_id}", token)
        assert status == 200 and json.loads(body)["status"] == "SUCCEEDED"

        # Training starts from those shards with one command, on Ray Train, through the same door.
        run_dir = tmp_path / "run"
        proc = head.ray("job", "submit", "--address", head.url, "--working-dir", str(REPO),
                        "--log-style", "record", "--log-color", "false",
                        "--", "python", "-m", "launchers.train", "--shards", str(out / "shards"),
                        "--config", "configs/train_tiny.yaml", "--out", str(run_dir), "--max-steps", "3",
                        "--num-workers", "2", timeout=300, check=False)
        logs = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"training job failed (rc {proc.returncode}):\n{logs[-6000:]}"
        steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        assert steps and steps[-1] == 3
        assert (run_dir / "checkpoints" / "step_00000003" / "ema.safetensors").is_file()

        # The uploaded working_dir is the source tree only: Ray's default excludes and .gitignore
        # keep .venv/ and out/ out of the package.
        pkg_root = root / "ray" / "session_latest" / "runtime_resources" / "working_dir_files"
        unpacked = [p for p in pkg_root.glob("_ray_pkg_*") if p.is_dir()]
        assert unpacked, "no working_dir package found on the head"
        for pkg in unpacked:
            assert (pkg / "pipeline" / "run.py").is_file()
            assert not (pkg / ".venv").exists() and not (pkg / ".git").exists() and not (pkg / "out").exists()
    finally:
        leftovers = head.stop()
        shutil.rmtree(root, ignore_errors=True)
    assert leftovers == [], f"Ray processes left behind: {leftovers}"

    meta = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    parts = sorted((out / "shards").glob("part-*.parquet"))
    assert parts
    shards = pa.concat_tables([pq.read_table(p) for p in parts])
    assert meta["inputs"] == len(SUBSET)
    assert shards.num_rows == meta["clips"] > 0
    assert len(set(shards.column("clip_id").to_pylist())) == shards.num_rows
    assert min(shards.column("n_frames").to_pylist()) > 0
    assert "mel" in shards.column_names
