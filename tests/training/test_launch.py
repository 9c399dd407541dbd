"""launchers/train.py end to end on synthetic shards: train, resume, errors, Ray Train with 2 workers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from launchers.train import main
from model.checkpoint import list_checkpoints, load_for_inference
from tests.training.shard_fixtures import make_clip, write_shard, write_shard_set

REPO = Path(__file__).resolve().parents[2]
TINY = str(REPO / "configs" / "train_tiny.yaml")
FIELDS = {"step", "epoch", "loss", "loss_mel", "loss_blendshape", "loss_pose", "loss_eye", "lr", "grad_norm",
          "frames_per_s", "samples_per_s", "world_size"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 shards x 8 short clips (40-120 frames), 4 clips per row group."""
    return write_shard_set(tmp_path_factory.mktemp("train") / "shards", n_files=2, clips_per_file=8,
                           min_frames=40, max_frames=120).shards_dir


def argv(shards: Path, run: Path, *extra: str) -> list[str]:
    return ["--shards", str(shards), "--config", TINY, "--out", str(run), "--set", "data.max_frames_per_batch=480",
            "--set", "logging.progress=false", *extra]


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_tiny_run_logs_decreasing_loss_and_checkpoints(shards: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(argv(shards, run, "--max-steps", "30")) == 0
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == list(range(1, 31))
    assert FIELDS <= rows[0].keys()
    first, last = sum(r["loss"] for r in rows[:5]) / 5, sum(r["loss"] for r in rows[-5:]) / 5
    assert last < 0.85 * first, (first, last)
    assert rows[-1]["lr"] < rows[5]["lr"]  # cosine decay after the 5 warmup steps
    assert [p.name for p in list_checkpoints(run)] == ["step_00000020", "step_00000030"]  # keep_last 2
    assert (run / "vocab.txt").is_file() and (run / "stats.json").is_file()
    model, cfg, vocab, stats = load_for_inference(run)
    assert cfg.dit.vocab_size == len(vocab) and stats["normalize"]["codes"] is True
    assert len(stats["codes_mean"]) == 61

    capsys.readouterr()
    assert main(argv(shards, run, "--max-steps", "30")) == 0  # same command again: nothing left to do
    assert "nothing to do" in capsys.readouterr().out
    assert len(read_metrics(run)) == 30


def test_resume_reproduces_the_uninterrupted_run(shards: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    flags = argv(shards, run, "--max-steps", "8", "--set", "logging.ckpt_every_steps=4",
                 "--set", "logging.keep_last=3")
    assert main(flags) == 0
    straight = read_metrics(run)
    # Simulate a crash after step 8 was logged but before its checkpoint: resume from step 4.
    shutil.rmtree(run / "checkpoints" / "step_00000008")
    assert main(flags) == 0
    resumed = read_metrics(run)
    assert [r["step"] for r in resumed] == list(range(1, 9))  # the crashed run's rows 5-8 were replaced
    for a, b in zip(straight[4:], resumed[4:], strict=True):
        assert a["epoch"] == b["epoch"]
        for key in ("loss", "loss_mel", "loss_pose", "lr", "grad_norm"):
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-7), (a["step"], key)


def test_wrong_schema_shard_is_named_by_the_launcher(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shards = tmp_path / "shards"
    shards.mkdir()
    bad = write_shard(shards / "part-0000.parquet", [make_clip(0, 50), make_clip(1, 60)], schema_version=1)
    assert main(argv(shards, tmp_path / "run", "--max-steps", "2")) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "schema version 1" in err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_ray_train_two_cpu_workers_write_a_checkpoint(shards: Path, tmp_path: Path) -> None:
    """Costly (~1.5 GB, tens of seconds): the only test that starts Ray."""
    ray = pytest.importorskip("ray")
    run = tmp_path / "run"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert main(argv(shards, run, "--max-steps", "3", "--num-workers", "2",
                         "--set", "logging.ckpt_every_steps=3")) == 0
    finally:
        ray.shutdown()
    assert [p.name for p in list_checkpoints(run)] == ["step_00000003"]
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == [1, 2, 3] and all(r["world_size"] == 2 for r in rows)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_bf16_run_writes_a_checkpoint(shards: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(argv(shards, run, "--max-steps", "3", "--gpu", "--set", "optim.precision=bf16")) == 0
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == [1, 2, 3] and all(r["loss"] == r["loss"] for r in rows)  # not NaN
    assert [p.name for p in list_checkpoints(run)] == ["step_00000003"]
