"""Training the StyleTalker motion model (``omnitalker train-styletalker``, ``launchers/train_styletalker.py``).

Each step: a batch of windows (``training/styletalker_data.py``), the model's loss terms
(``model/styletalker/model.py``: negative ELBO = code reconstruction + KL of the posterior against the
flow prior, plus ``loss.sync_weight`` times the frozen lip-sync model's distance of the generated mouth),
AdamW with warmup and decay. The lip-sync model is ``sync_model_path`` (None: the shipped default,
``model.sync.io.load_sync_model``); it is not trained and not saved with the checkpoints.
The training set's per-column code and mel mean and std are computed once and live in the model as buffers.

The held-out test clips of ``RUN_DIR/split.json`` (``training/split.py``, section ``data.split``) are never
trained on; ``omnitalker eval`` reads them back. The clips of the ``data.holdout`` sources are not trained on
either: every ``val_every_steps`` the EMA model reconstructs them in the motion-controllable mode
(``training/styletalker_val.py``: ``val_pitch_r, val_yaw_r, val_motion_mse, val_lip_mse, val_lip_base_mse`` in
``metrics.jsonl``), and the best measurement's EMA weights are kept in ``RUN_DIR/best`` (a checkpoint folder
that ``generate --ckpt`` and ``omnitalker eval`` load; the ``keep_last`` pruning never deletes it).

Checkpoints, resume, EMA and ``metrics.jsonl`` are those of the other trainers
(``RUN_DIR/checkpoints/step_<08d>/``: model, EMA, optimizer, ``state.json`` with ``kind: styletalker``);
rows hold ``loss, elbo, recon, kl, sync, lip_mse, motion_mse`` (per-frame means over the logged steps).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.overlay import load_layered_config
from model.checkpoint import latest_checkpoint
from model.styletalker.model import (
    StyleTalkerConfig,
    StyleTalkerLossConfig,
    StyleTalkerMotion,
    count_parameters,
    styletalker_loss,
)
from model.sync.io import load_sync_model
from shards.spec import FRAME_RATE_HZ
from training.checkpoint import save_ema_snapshot, save_module_checkpoint
from training.config import LoggingConfig, OptimConfig
from training.loop import (
    DistContext,
    Reporter,
    TrainResult,
    nothing_to_do,
    resolve_device,
    seed_everything,
    start_single_model,
)
from training.split import prepare_split
from training.steps import MetricWindow, is_step_due, take_optimizer_step
from training.styletalker_data import (
    StyleTalkerDataConfig,
    clip_stats,
    load_motion_clips,
    sample_motion_batch,
)
from training.styletalker_val import heldout_score, measure_heldout

log = logging.getLogger("omnitalker.train_styletalker")

PARTS = ("loss", "elbo", "recon", "kl", "sync", "lip_mse", "motion_mse")
BEST_DIR = "best"  # RUN_DIR/best: the EMA of the best held-out measurement


@dataclass
class StyleTalkerTrainConfig:
    """Everything a StyleTalker run needs; ``configs/styletalker_tiny.yaml`` and ``_paper.yaml`` are commented."""

    model: StyleTalkerConfig = field(default_factory=StyleTalkerConfig)
    data: StyleTalkerDataConfig = field(default_factory=StyleTalkerDataConfig)
    loss: StyleTalkerLossConfig = field(default_factory=StyleTalkerLossConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, warmup_steps=100, decay="cosine",
                                                                    max_steps=5000, ema_decay=0.999,
                                                                    weight_decay=0.01))
    logging: LoggingConfig = field(default_factory=lambda: LoggingConfig(log_every_steps=25, ckpt_every_steps=500))
    sync_model_path: str | None = None  # lip-sync model for the sync loss; None = the shipped default (model/sync)
    val_every_steps: int = 250  # steps between held-out measurements (with data.holdout; 0 = never)
    val_max_frames: int = 938  # frames of each held-out clip measured (10 s at 93.75 Hz)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    torch_threads: int = 0  # intra-op threads; 0 = torch's default

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_styletalker_config(path: str | Path | None = None, overrides: list[str] | None = None
                            ) -> StyleTalkerTrainConfig:
    """Defaults, then the YAML file, then ``key.sub=value`` overrides; unknown keys raise."""
    return load_layered_config(StyleTalkerTrainConfig(), path, overrides)


def train_styletalker(cfg: StyleTalkerTrainConfig, shards_dir: str | Path, run_dir: str | Path,
                      ctx: DistContext | None = None) -> TrainResult:
    """Train until ``optim.max_steps``, resuming from RUN_DIR's newest checkpoint."""
    ctx = ctx or DistContext()
    run_dir = Path(run_dir)
    is_main = ctx.rank == 0
    done = nothing_to_do(run_dir, cfg.optim.max_steps)
    if done is not None:
        return done
    ckpt = latest_checkpoint(run_dir)
    if cfg.torch_threads > 0:
        torch.set_num_threads(cfg.torch_threads)
    device = ctx.device or resolve_device(cfg.device)
    clips, held = load_motion_clips(str(shards_dir), cfg.data)
    split = prepare_split(shards_dir, run_dir, cfg.data.split, write=is_main)
    clips = [c for c in clips if not split.is_test(c.clip_id)]
    if not clips:
        raise ValueError(f"{shards_dir}: no clip of at least {max(cfg.data.window_frames, cfg.data.ref_frames)} "
                         "frames with mel and visual codes to train StyleTalker on")
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "styletalker_config.json").write_text(json.dumps(cfg.to_dict(), indent=2), encoding="utf-8")
    seed_everything(cfg.seed)
    model = StyleTalkerMotion(cfg.model)
    model.loss_cfg = cfg.loss  # the likelihood that drive mode's refinement uses (held-out measurement)
    model.set_stats(**clip_stats(clips, cfg.data.mirror_prob))
    model = model.to(device)
    sync = None
    if cfg.loss.sync_weight > 0:
        sync, sync_id = load_sync_model(cfg.sync_model_path, device)
        sync.requires_grad_(False)
        if cfg.loss.sync_window_frames != sync.cfg.window_frames:
            raise ValueError(f"loss.sync_window_frames={cfg.loss.sync_window_frames} but the lip-sync model "
                             f"{sync_id} takes {sync.cfg.window_frames}-frame windows")
    run = start_single_model(model, cfg.optim, ctx, ckpt, log)
    ema, model_w, optim, step = run.ema, run.model_w, run.optim, run.step
    opt, sched = optim["opt"], optim["sched"]
    best = run.extra.get("best", {"score": -1.0, "step": 0})
    start_step = step
    sources = sorted({c.source for c in clips})
    held_sources = sorted({c.source for c in held})
    facts = {"train_sources": sources, "holdout_sources": held_sources}
    if is_main:
        log.info("StyleTalker %.3f M parameters; %d training clips from %d sources (%.1f min); %d held-out clips "
                 "from %s", count_parameters(model) / 1e6, len(clips), len(sources),
                 sum(len(c.mel) for c in clips) / FRAME_RATE_HZ / 60, len(held), held_sources or "none")
    reporter = Reporter(run_dir, cfg, step, enabled=is_main)  # type: ignore[arg-type]  (reads .logging, .optim)
    rng = np.random.default_rng([cfg.seed, ctx.rank, step])
    gen = torch.Generator(device=device).manual_seed(cfg.seed * 1000 + ctx.rank + step)  # posterior samples
    window = MetricWindow("windows_per_s")
    last_ckpt, last_loss = ckpt, None
    try:
        while step < cfg.optim.max_steps:
            model_w.train()
            batch = sample_motion_batch(clips, cfg.data, rng)
            batch = {k: batch[k].to(device) for k in ("mel", "codes", "ref")}  # the rest is bookkeeping
            out = model_w(batch["mel"], batch["codes"], batch["ref"], gen)
            loss, parts = styletalker_loss(out, cfg.loss, batch["mel"], sync, step)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"step {step + 1}: the StyleTalker loss is not finite ({parts})")
            grad_norm = take_optimizer_step(model, loss, opt, sched, cfg.optim.grad_clip_norm)
            step += 1
            ema.update(model, step)
            window.add({k: parts[k] for k in PARTS}, cfg.data.batch_size)
            reporter.advance(step)
            row: dict[str, Any] = {}
            if is_main and held and cfg.val_every_steps > 0 and is_step_due(step, cfg.val_every_steps, cfg.optim.max_steps):
                row = measure_heldout(ema.module, held, cfg.data.ref_frames, cfg.val_max_frames)
                score = heldout_score(row)
                if score == score and score > best["score"]:
                    best = {"score": score, "step": step, **row}
                    save_ema_snapshot(run_dir / BEST_DIR, step, ema,
                                      {"kind": "styletalker", "config": cfg.to_dict(), "extra": {**facts, "best": best}})
            if is_step_due(step, cfg.logging.log_every_steps, cfg.optim.max_steps) or row:
                row = window.row(step, sched.get_last_lr()[0], grad_norm, ctx.world_size, **row)
                last_loss = row["loss"]
                reporter.write(row)
            if is_main and is_step_due(step, cfg.logging.ckpt_every_steps, cfg.optim.max_steps):
                last_ckpt = save_module_checkpoint(run_dir, step, {"model": model}, ema, optim,
                                                   {"kind": "styletalker", "config": cfg.to_dict(),
                                                    "extra": {**facts, "best": best}}, cfg.logging.keep_last)
    finally:
        reporter.close()
    best_note = f"; best held-out step {best['step']} ({run_dir / BEST_DIR})" if best["step"] else ""
    return TrainResult("trained", step, start_step, str(last_ckpt) if last_ckpt else None, last_loss,
                       f"trained steps {start_step} -> {step}; checkpoint {last_ckpt}{best_note}", reporter.rows)


# --------------------------------------------------------------------------- Ray Train


def styletalker_train_worker(config: dict[str, Any]) -> None:
    """``train_loop_per_worker``: one Ray Train worker of the StyleTalker run described by ``config``."""
    from training.ray_train import run_worker_loop

    run_worker_loop(config, StyleTalkerTrainConfig, train_styletalker)


def run_ray_styletalker_training(cfg: StyleTalkerTrainConfig, shards_dir: str, run_dir: str, num_workers: int,
                                 use_gpu: bool) -> TrainResult:
    """``num_workers`` TorchTrainer workers (RUN_DIR on storage every node sees); summary from RUN_DIR."""
    from training.ray_train import launch_on_ray

    return launch_on_ray(styletalker_train_worker, cfg, shards_dir, run_dir, num_workers, use_gpu, "train-styletalker")
