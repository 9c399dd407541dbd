"""Multi-worker training on Ray Train's ``TorchTrainer`` (the only module importing ``ray.train``).

The driver prepares the run once (index, vocabulary, feature stats written into RUN_DIR), then
starts ``num_workers`` workers (``ScalingConfig(num_workers, use_gpu)``). Each worker runs the
same :func:`training.loop.train` as a single process, with its rank / world size from
``ray.train.get_context()`` feeding ``make_loader(rank, world_size)``, its device from
``ray.train.torch.get_device()`` and the model wrapped in DDP by ``ray.train.torch.prepare_model``.

Storage: rank 0 writes checkpoints and metrics straight into RUN_DIR and every worker reads
vocab.txt / stats.json / checkpoints from it, so RUN_DIR and the shards must be on storage all
nodes see at the same path (a shared filesystem; on one machine any local folder works). Ray's
own run records go to ``RUN_DIR/ray``. Submittable as
``ray job submit --working-dir . -- python -m launchers.train --num-workers N --gpu ...``; an
existing cluster is found through ``RAY_ADDRESS`` (set by ``ray job submit``), else a local Ray
is started for the run and shut down after it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from model.checkpoint import latest_checkpoint, read_state
from training.config import TrainConfig, train_config_from_dict
from training.loop import METRICS_FILE, DistContext, TrainResult, nothing_to_do, prepare_run, train

log = logging.getLogger("omnitalker.train")


def make_dist_context() -> DistContext:
    """This Ray Train worker's rank, world size, device and DDP wrapper."""
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    return DistContext(rank=ctx.get_world_rank(), world_size=ctx.get_world_size(),
                       device=ray.train.torch.get_device(), wrap_model=ray.train.torch.prepare_model)


def fit_on_ray_train(worker: Callable[[dict[str, Any]], None], loop_config: dict[str, Any], run_path: Path,
                     num_workers: int, use_gpu: bool, name: str, start_step: int) -> TrainResult:
    """Run ``worker`` on ``num_workers`` TorchTrainer workers, then summarize the run from RUN_DIR.

    Joins ``RAY_ADDRESS`` (``ray job submit``) or starts a local Ray, and shuts down only what it started.
    """
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init()
    try:
        TorchTrainer(train_loop_per_worker=worker, train_loop_config=loop_config,
                     scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu),
                     run_config=RunConfig(name=name, storage_path=str(run_path / "ray"))).fit()
    finally:
        if started_ray:
            ray.shutdown()
    latest = latest_checkpoint(run_path)
    step = int(read_state(latest)["step"]) if latest is not None else start_step
    return TrainResult("trained", step, start_step, str(latest) if latest else None,
                       last_loss=read_last_loss(run_path / METRICS_FILE),
                       message=f"trained steps {start_step} -> {step} on {num_workers} Ray workers; "
                               f"last checkpoint {latest}")


def launch_on_ray(worker: Callable[[dict[str, Any]], None], cfg: Any, shards_dir: str, run_dir: str,
                  num_workers: int, use_gpu: bool, name: str,
                  prepare: Callable[[Path], None] | None = None) -> TrainResult:
    """The driver side of every trainer on Ray Train: say when RUN_DIR is already done, run ``prepare(run_path)``
    (driver-side checks or files every worker needs), then ``worker`` on ``num_workers`` workers."""
    run_path = Path(run_dir).resolve()
    done = nothing_to_do(run_path, cfg.optim.max_steps)
    if done is not None:
        return done
    if prepare is not None:
        prepare(run_path)
    ckpt = latest_checkpoint(run_path)
    start_step = int(read_state(ckpt)["step"]) if ckpt is not None else 0
    return fit_on_ray_train(worker, {"cfg": cfg.to_dict(), "shards": str(shards_dir), "run_dir": str(run_path)},
                            run_path, num_workers, use_gpu, name, start_step)


def run_worker_loop(config: dict[str, Any], cfg_type: type, train_fn: Callable[..., TrainResult]) -> None:
    """A ``train_loop_per_worker`` body: rebuild the config, train this rank, log rank 0's summary.

    Trainers bind ``cfg_type`` and ``train_fn`` with ``functools.partial`` (picklable for Ray).
    """
    from core.overlay import overlay_config

    cfg = overlay_config(cfg_type(), config["cfg"])
    dist = make_dist_context()
    result = train_fn(cfg, config["shards"], config["run_dir"], dist)
    if dist.rank == 0:
        log.info("%s", result.message)


def train_worker(config: dict[str, Any]) -> None:
    """``train_loop_per_worker``: one Ray Train worker of the run described by ``config``."""
    cfg = train_config_from_dict(config["cfg"])
    dist = make_dist_context()
    result = train(cfg, config["shards"], config["run_dir"], dist)
    if dist.rank == 0:
        log.info("%s", result.message)


def read_last_loss(metrics: Path) -> float | None:
    """The ``loss`` of the last metrics.jsonl row, or None."""
    if not metrics.is_file():
        return None
    lines = metrics.read_text(encoding="utf-8").strip().splitlines()
    return float(json.loads(lines[-1])["loss"]) if lines else None


def run_ray_training(cfg: TrainConfig, shards_dir: str, run_dir: str, num_workers: int, use_gpu: bool,
                     ) -> TrainResult:
    """Prepare RUN_DIR on the driver, run ``num_workers`` TorchTrainer workers, summarize from RUN_DIR."""
    def prepare(run_path: Path) -> None:  # vocab.txt + stats.json before any worker starts
        prepare_run(cfg, shards_dir, run_path, write=True)

    return launch_on_ray(train_worker, cfg, shards_dir, run_dir, num_workers, use_gpu, "train", prepare)
