"""Training the lip-sync model (``omnitalker train-sync``, ``launchers/train_sync.py``).

InfoNCE over cosine similarities at temperature ``loss.temperature``: each anchor lip window must
pick its own audio window among its clip's shifted windows and the other anchors' audio. Inputs
get Gaussian noise (``loss.input_noise`` times each window channel's std) and the encoders
dropout, since overfitting is the main risk at this data size. Every ``val_every_steps`` the EMA
model is measured on the held-out sources (windowed AUC of true against swapped and shifted
audio) and, when it improves, exported to ``RUN_DIR/sync.safetensors``: the run's best model,
what ``sync.model_path`` can point to.

Checkpoints, resume, EMA and ``metrics.jsonl`` are those of the other trainers
(``RUN_DIR/checkpoints/step_<08d>/``: model, EMA, optimizer, ``state.json``).
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
from torch import nn

from core.overlay import load_layered_config
from model.checkpoint import (
    latest_checkpoint,
)
from model.sync.io import export_sync_weights
from model.sync.model import SyncModel, SyncModelConfig, count_parameters
from shards.spec import FRAME_RATE_HZ
from training.checkpoint import save_module_checkpoint
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
from training.steps import MetricWindow, is_step_due, take_optimizer_step
from training.sync_data import SyncClip, SyncDataConfig, load_sync_clips, sample_batch

log = logging.getLogger("omnitalker.train_sync")

EXPORT_FILE = "sync.safetensors"  # the best model of the run, by held-out AUC


@dataclass
class SyncLossConfig:
    temperature: float = 0.07  # InfoNCE temperature on cosine similarity
    input_noise: float = 0.2  # Gaussian input noise, times each window channel's std


@dataclass
class SyncTrainConfig:
    """Everything a lip-sync run needs; ``configs/sync.yaml`` is the commented default."""

    model: SyncModelConfig = field(default_factory=SyncModelConfig)
    data: SyncDataConfig = field(default_factory=SyncDataConfig)
    loss: SyncLossConfig = field(default_factory=SyncLossConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, warmup_steps=50, decay="cosine",
                                                                    max_steps=600, ema_decay=0.99,
                                                                    weight_decay=0.05))
    logging: LoggingConfig = field(default_factory=lambda: LoggingConfig(log_every_steps=25, ckpt_every_steps=200))
    val_every_steps: int = 50  # steps between held-out measurements (and exports when they improve)
    val_windows: int = 400  # held-out lip windows per measurement
    val_shift_frames: int = 30  # frames (0.32 s): the shifted-audio negative of the measurement
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    torch_threads: int = 0  # intra-op threads; 0 = torch's default

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_sync_config(path: str | Path | None = None, overrides: list[str] | None = None) -> SyncTrainConfig:
    """Defaults, then the YAML file, then ``key.sub=value`` overrides; unknown keys raise."""
    return load_layered_config(SyncTrainConfig(), path, overrides)


# --------------------------------------------------------------------------- loss and validation


def add_noise(x: torch.Tensor, scale: float, gen: torch.Generator) -> torch.Tensor:
    """``x (..., W, C)`` plus Gaussian noise of ``scale`` times each window channel's std."""
    if scale <= 0:
        return x
    std = x.std(dim=-2, keepdim=True)
    return x + scale * std * torch.randn(x.shape, generator=gen)


def info_nce(model: nn.Module, batch: dict[str, torch.Tensor], cfg: SyncTrainConfig, gen: torch.Generator
             ) -> tuple[torch.Tensor, float]:
    """``(loss, accuracy)``: anchors against [own audio, own clip shifted..., other anchors' audio]."""
    lips = add_noise(batch["lips"], cfg.loss.input_noise, gen)
    audio = add_noise(batch["audio"], cfg.loss.input_noise, gen)
    b, k1, w, c = audio.shape
    e_lip, e_aud = model(lips, audio.reshape(b * k1, w, c))  # (B, E), (B * (1+K), E)
    e_aud = e_aud.reshape(b, k1, -1)
    own = torch.einsum("be,bke->bk", e_lip, e_aud)  # (B, 1+K)
    others = e_lip @ e_aud[:, 0].T  # (B, B): anchor i against anchor j's positive
    same = (batch["clip"][:, None] == batch["clip"][None, :]) & (
        (batch["pos"][:, None] - batch["pos"][None, :]).abs() < cfg.data.min_shift_frames)
    others = others.masked_fill(same, float("-inf"))  # the diagonal too: it is already in `own`
    logits = torch.cat([own, others], dim=1) / cfg.loss.temperature
    target = torch.zeros(b, dtype=torch.long)
    loss = nn.functional.cross_entropy(logits, target)
    acc = float((logits.argmax(dim=1) == 0).float().mean())
    return loss, acc


def roc_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a positive scores above a negative), ties half: the area under the ROC curve."""
    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    if not len(pos) or not len(neg):
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    values = np.concatenate([pos, neg])[order]
    i = 0
    while i < len(values):  # average ranks over ties
        j = i
        while j + 1 < len(values) and values[j + 1] == values[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


@torch.no_grad()
def measure_heldout(model: SyncModel, clips: list[SyncClip], cfg: SyncTrainConfig, seed: int = 1234
                    ) -> dict[str, float]:
    """Windowed AUCs on held-out clips: true audio against another source's audio and against shifted audio."""
    if len({c.source for c in clips}) < 2:
        return {}
    rng = np.random.default_rng(seed)
    w, s = cfg.model.window_frames, cfg.val_shift_frames
    usable = [c for c in clips if len(c.mel) >= w + s + 1]
    if not usable:
        return {}
    lips, true, swapped, shifted = [], [], [], []
    for _ in range(cfg.val_windows):
        c = usable[int(rng.integers(len(usable)))]
        p = int(rng.integers(0, len(c.mel) - w - s + 1))
        other = [o for o in clips if o.source != c.source]
        o = other[int(rng.integers(len(other)))]
        q = int(rng.integers(0, len(o.mel) - w + 1))
        lips.append(c.lips[p:p + w])
        true.append(c.mel[p:p + w])
        shifted.append(c.mel[p + s:p + s + w])
        swapped.append(o.mel[q:q + w])
    model.eval()
    e_lip = model.embed_lips(torch.from_numpy(np.stack(lips)))

    def sim(a: list[np.ndarray]) -> np.ndarray:
        return (e_lip * model.embed_audio(torch.from_numpy(np.stack(a)))).sum(-1).numpy()

    s_true, s_swap, s_shift = sim(true), sim(swapped), sim(shifted)
    return {"val_auc_swapped": roc_auc(s_true, s_swap), "val_auc_shifted": roc_auc(s_true, s_shift)}


# --------------------------------------------------------------------------- the loop


def train_sync(cfg: SyncTrainConfig, shards_dir: str | Path, run_dir: str | Path, ctx: DistContext | None = None
               ) -> TrainResult:
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
    train_clips, held = load_sync_clips(str(shards_dir), cfg.model.window_frames, cfg.data)
    if not train_clips:
        raise ValueError(f"{shards_dir}: no clip long enough to train the lip-sync model on "
                         f"(need {cfg.model.window_frames + 2 * cfg.data.min_shift_frames} frames)")
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "sync_config.json").write_text(json.dumps(cfg.to_dict(), indent=2), encoding="utf-8")
    seed_everything(cfg.seed)
    model = SyncModel(cfg.model).to(device)
    run = start_single_model(model, cfg.optim, ctx, ckpt, log)
    ema, model_w, optim, step = run.ema, run.model_w, run.optim, run.step
    opt, sched = optim["opt"], optim["sched"]
    best = run.extra.get("best", {"val_auc": -1.0, "step": 0})
    start_step = step
    sources = sorted({c.source for c in train_clips})
    held_sources = sorted({c.source for c in held})
    if is_main:
        log.info("lip-sync model %.3f M parameters; %d training clips from %d sources (%.1f min), %d held-out "
                 "clips from %s", count_parameters(model) / 1e6, len(train_clips), len(sources),
                 sum(len(c.mel) for c in train_clips) / FRAME_RATE_HZ / 60, len(held), held_sources or "none")
    reporter = Reporter(run_dir, cfg, step, enabled=is_main)  # type: ignore[arg-type]  (reads .logging, .optim)
    rng = np.random.default_rng([cfg.seed, ctx.rank, step])
    aug_rng = np.random.default_rng([cfg.seed, ctx.rank, step, 1])  # frequency masks (data.freq_mask_prob)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + ctx.rank + step)  # input noise (CPU tensors)
    window = MetricWindow("windows_per_s")
    last_ckpt, last_loss = ckpt, None
    facts = {"train_sources": sources, "holdout_sources": held_sources}
    try:
        while step < cfg.optim.max_steps:
            model_w.train()
            batch = {k: v.to(device) for k, v in sample_batch(train_clips, cfg.model.window_frames, cfg.data,
                                                               rng, aug_rng).items()}
            loss, acc = info_nce(model_w, batch, cfg, gen)
            grad_norm = take_optimizer_step(model, loss, opt, sched, cfg.optim.grad_clip_norm)
            step += 1
            ema.update(model, step)
            window.add({"loss": loss, "acc": acc}, cfg.data.batch_size)
            reporter.advance(step)
            row: dict[str, Any] = {}
            if is_main and held and is_step_due(step, cfg.val_every_steps, cfg.optim.max_steps):
                row.update(measure_heldout(ema.module, held, cfg))
                score = row.get("val_auc_swapped", float("nan")) + row.get("val_auc_shifted", float("nan"))
                if score == score and score > best["val_auc"]:
                    best = {"val_auc": score, "step": step, **row}
                    export_sync_weights(ema.module, run_dir / EXPORT_FILE, {**facts, "step": step, **row})
            if is_step_due(step, cfg.logging.log_every_steps, cfg.optim.max_steps) or row:
                row = window.row(step, sched.get_last_lr()[0], grad_norm, ctx.world_size, **row)
                last_loss = row["loss"]
                reporter.write(row)
            if is_main and is_step_due(step, cfg.logging.ckpt_every_steps, cfg.optim.max_steps):
                last_ckpt = save_module_checkpoint(run_dir, step, {"model": model}, ema, optim,
                                                   {"kind": "sync", "config": cfg.to_dict(),
                                                    "extra": {"best": best, **facts}}, cfg.logging.keep_last)
        if is_main and best["step"] == 0:  # nothing held out to select on: the final EMA is the run's model
            export_sync_weights(ema.module, run_dir / EXPORT_FILE, {**facts, "step": step})
    finally:
        reporter.close()
    return TrainResult("trained", step, start_step, str(last_ckpt) if last_ckpt else None, last_loss,
                       f"trained steps {start_step} -> {step}; best held-out step {best.get('step')}; "
                       f"model {run_dir / EXPORT_FILE}", reporter.rows)


# --------------------------------------------------------------------------- Ray Train


def sync_train_worker(config: dict[str, Any]) -> None:
    """``train_loop_per_worker``: one Ray Train worker of the lip-sync run described by ``config``."""
    from training.ray_train import run_worker_loop

    run_worker_loop(config, SyncTrainConfig, train_sync)


def run_ray_sync_training(cfg: SyncTrainConfig, shards_dir: str, run_dir: str, num_workers: int, use_gpu: bool
                          ) -> TrainResult:
    """``num_workers`` TorchTrainer workers (RUN_DIR on storage every node sees); summary from RUN_DIR."""
    from training.ray_train import launch_on_ray

    return launch_on_ray(sync_train_worker, cfg, shards_dir, run_dir, num_workers, use_gpu, "train-sync")
