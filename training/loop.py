"""The training loop: one function for a single process (CPU / one GPU) and for each Ray Train worker.

Order of a run (:func:`prepare_run`, then :func:`train`):

1. the held-out split (``training/split.py``: ``RUN_DIR/split.json``, reused on resume), then index the
   shards (``training.data.build_index``, load-time filters of ``cfg.data``) without the test clips;
2. vocabulary: ``RUN_DIR/vocab.txt`` when it exists (a resumed run), else built from the
   index's ``text_model`` and saved; ``dit.vocab_size`` is set to its size;
3. feature stats (per-dim mean/std of mel and codes): from the newest checkpoint, else
   ``RUN_DIR/stats.json``, else computed and saved; targets are normalized with them
   (:class:`FeatureNormalizer`) before the loss, and generation un-normalizes;
4. model, AdamW, warmup + decay schedule, EMA; the newest checkpoint is loaded when present;
5. epochs of batches until ``optim.max_steps`` optimizer steps: flow-matching loss, gradient
   clipping, optimizer + scheduler step, EMA update; ``RUN_DIR/metrics.jsonl`` every
   ``log_every_steps`` (losses averaged over those steps); a checkpoint every
   ``ckpt_every_steps`` and at the end.

Determinism: the flow-matching noise comes from a dedicated ``torch.Generator`` (seed + rank)
whose state is checkpointed with the python/numpy/torch RNGs and the data position (epoch,
batches consumed), so on CPU a resumed run reproduces the uninterrupted one step for step.
In multi-worker runs the loader gives every rank the same number of batches
(``data.even_batches``); with it off, each step first agrees (all-reduce MIN) that every rank
still has a batch, so ranks with uneven shards end an epoch together. Only rank 0 writes
metrics and checkpoints; its losses are its own (not averaged over ranks), frames/s are summed
over ranks.
"""

from __future__ import annotations

import json
import logging
import math
import random
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from model.checkpoint import latest_checkpoint, read_state
from model.dit.backbone import OmniTalkerDiT, count_parameters
from model.dit.config import ModelConfig
from model.dit.flow_matching import FlowMatching
from model.normalizer import FeatureNormalizer
from model.vocab import Vocab
from training.checkpoint import (
    decode_tensor_state,
    encode_tensor_state,
    load_checkpoint,
    load_module_checkpoint,
    restore_rng_state,
    save_checkpoint,
    to_jsonable,
    write_vocab_atomic,
)
from training.config import FeatureConfig, OptimConfig, TrainConfig, build_model_config
from training.data import build_index, compute_feature_stats, exclude_clips, make_loader
from training.ema import EMA
from training.split import prepare_split
from training.steps import is_step_due

log = logging.getLogger("omnitalker.train")
STATS_FILE = "stats.json"
METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "train_config.json"
LOSS_PARTS = ("mel", "blendshape", "pose", "eye")


@dataclass
class DistContext:
    """Where this process sits in a (possibly) distributed run; the default is a single process."""

    rank: int = 0
    world_size: int = 1
    device: torch.device | None = None  # None: from TrainConfig.device
    wrap_model: Callable[[nn.Module], nn.Module] | None = None  # e.g. ray.train.torch.prepare_model (DDP)
    even_batches: bool = True  # the loader gives every rank the same batch count (DataConfig.even_batches)


@dataclass
class RunAssets:
    index: Any  # training.data.ClipIndex
    vocab: Vocab
    stats: dict[str, Any]
    model_cfg: ModelConfig


@dataclass
class TrainResult:
    status: str  # "trained" | "nothing_to_do"
    step: int  # optimizer steps done in total (including those before a resume)
    start_step: int  # the step this invocation started from
    checkpoint: str | None  # the newest checkpoint folder
    last_loss: float | None = None
    message: str = ""
    metrics: list[dict[str, Any]] = field(default_factory=list)  # rows this invocation logged (rank 0)


def nothing_to_do(run_dir: str | Path, max_steps: int) -> TrainResult | None:
    """The result to return when RUN_DIR's newest checkpoint is already at ``max_steps`` (else None)."""
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        return None
    step = int(read_state(ckpt)["step"])
    if step < max_steps:
        return None
    return TrainResult("nothing_to_do", step, step, str(ckpt),
                       message=f"nothing to do: {ckpt} is at step {step} and optim.max_steps is {max_steps} "
                               f"(raise --max-steps to continue)")


# --------------------------------------------------------------------------- features


def compute_run_stats(index: Any, feat: FeatureConfig) -> dict[str, Any]:
    """``compute_feature_stats`` plus the ``normalize`` flags the trainer applies."""
    stats = to_jsonable(compute_feature_stats(index, max_clips=feat.stats_max_clips, min_std=feat.min_std))
    stats["normalize"] = {"mel": feat.normalize_mel, "codes": feat.normalize_codes, "min_std": feat.min_std}
    return stats


# --------------------------------------------------------------------------- setup


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but torch.cuda.is_available() is False "
                           f"(install a CUDA build of torch or use device=cpu)")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def prepare_run(cfg: TrainConfig, shards_dir: str | Path, run_dir: str | Path, write: bool = True) -> RunAssets:
    """Index, vocabulary, feature stats and model config of a run (reused from RUN_DIR when present).

    ``write``: save vocab.txt / stats.json / train_config.json into RUN_DIR (rank 0 or the driver).
    """
    run_dir = Path(run_dir)
    if write:
        run_dir.mkdir(parents=True, exist_ok=True)
    split = prepare_split(shards_dir, run_dir, cfg.data.split, write=write)
    index = exclude_clips(build_index(str(shards_dir), cfg.data), set(split.test_clip_ids))
    vocab_path = run_dir / "vocab.txt"
    if vocab_path.is_file():
        vocab = Vocab.load(vocab_path)
    else:
        vocab = Vocab.build(index.texts())
        if write:
            write_vocab_atomic(vocab, vocab_path)
    ckpt = latest_checkpoint(run_dir)
    stats_path = run_dir / STATS_FILE
    if ckpt is not None:
        stats = read_state(ckpt)["stats"]
    elif stats_path.is_file():
        stats = json.loads(stats_path.read_text(encoding="utf-8"))
    else:
        stats = compute_run_stats(index, cfg.features)
        if write:
            stats_path.write_text(json.dumps(stats), encoding="utf-8")
    model_cfg = build_model_config(cfg, len(vocab))
    if write:
        (run_dir / CONFIG_FILE).write_text(json.dumps({"train": cfg.to_dict(), "model": model_cfg.to_dict()},
                                                      indent=2), encoding="utf-8")
    return RunAssets(index=index, vocab=vocab, stats=stats, model_cfg=model_cfg)


def compute_lr_factor(step: int, optim: OptimConfig) -> float:
    """LR multiplier after ``step`` optimizer steps: linear warmup, then cosine / linear / constant decay."""
    if optim.warmup_steps > 0 and step < optim.warmup_steps:
        return (step + 1) / optim.warmup_steps
    if optim.decay == "constant":
        return 1.0
    span = max(1, optim.max_steps - optim.warmup_steps)
    progress = min(1.0, max(0.0, (step - optim.warmup_steps) / span))
    floor = optim.min_lr_ratio
    if optim.decay == "cosine":
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return floor + (1.0 - floor) * (1.0 - progress)


def build_optimizer(model: nn.Module, optim: OptimConfig) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW over the trainable parameters and its LambdaLR warmup/decay schedule."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=optim.lr, betas=(optim.betas[0], optim.betas[1]), eps=optim.eps,
                                  weight_decay=optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: compute_lr_factor(s, optim))
    return optimizer, scheduler


@dataclass
class SingleModelTraining:
    """One model's EMA, optimizer and scheduler, and where a resumed run stands (:func:`start_single_model`)."""

    ema: EMA
    model_w: nn.Module  # the model as the steps call it (DDP-wrapped under Ray Train)
    optim: dict[str, Any]  # {"opt": optimizer, "sched": scheduler}, as the checkpoint stores them
    step: int  # 0, or the resumed checkpoint's step
    extra: dict[str, Any]  # the resumed checkpoint's "extra" facts ({} when starting fresh)


def start_single_model(model: nn.Module, optim_cfg: OptimConfig, ctx: DistContext, ckpt: Path | None,
                       logger: logging.Logger) -> SingleModelTraining:
    """EMA, DDP wrap, optimizer and scheduler for ``model``, resumed from ``ckpt`` (weights, EMA,
    optimizer, RNG) when given: the set-up the single-model trainers (lip sync, StyleTalker) share."""
    ema = EMA(model, optim_cfg.ema_decay, optim_cfg.ema_start_step)
    model_w = ctx.wrap_model(model) if ctx.wrap_model is not None else model
    opt, sched = build_optimizer(model, optim_cfg)
    optim = {"opt": opt, "sched": sched}
    step, extra = 0, {}
    if ckpt is not None:
        state = load_module_checkpoint(ckpt, {"model": model}, ema, optim)
        step, extra = int(state["step"]), state.get("extra", {})
        restore_rng_state(state["rng"])
        logger.info("resuming from %s (step %d)", ckpt, step)
    return SingleModelTraining(ema, model_w, optim, step, extra)


# --------------------------------------------------------------------------- reporting


class Reporter:
    """metrics.jsonl rows, optional TensorBoard and a progress bar (rank 0 only)."""

    def __init__(self, run_dir: Path, cfg: TrainConfig, start_step: int, enabled: bool) -> None:
        self.enabled = enabled
        self.path = run_dir / METRICS_FILE
        self.rows: list[dict[str, Any]] = []
        self.tb = None
        self.progress = None
        if not enabled:
            return
        self.drop_rows_after(start_step)
        if cfg.logging.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:
                log.warning("logging.tensorboard is on but the tensorboard package is not installed; "
                            "writing metrics.jsonl only (pip install tensorboard)")
        if cfg.logging.progress and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
            self.progress = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                                     console=Console(stderr=True), transient=False)
            self.task = self.progress.add_task("train", total=cfg.optim.max_steps, completed=start_step, info="")
            self.progress.start()

    def drop_rows_after(self, step: int) -> None:
        """Forget rows a crashed run logged after the checkpoint this run resumes from."""
        if not self.path.is_file():
            return
        lines = self.path.read_text(encoding="utf-8").splitlines()
        kept = [line for line in lines if line.strip() and json.loads(line).get("step", 0) <= step]
        if len(kept) != len(lines):
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
            tmp.replace(self.path)

    def advance(self, step: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=step)

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.rows.append(row)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.tb.add_scalar(key, value, row["step"])
        if self.progress is not None:
            self.progress.update(self.task, info=f"loss {row['loss']:.4f}  {row['frames_per_s']:.0f} frames/s")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
        if self.tb is not None:
            self.tb.close()


def all_ranks_have_batch(has_batch: bool, ctx: DistContext, device: torch.device) -> bool:
    """True when every rank has a batch for this step (always ``has_batch`` for one process)."""
    if ctx.world_size == 1 or ctx.even_batches or not torch.distributed.is_initialized():
        return has_batch
    flag = torch.tensor([1 if has_batch else 0], device=device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
    return bool(flag.item())


def all_ranks_finite(loss: torch.Tensor, ctx: DistContext) -> bool:
    """True when the loss is finite on every rank. Under DDP every rank must take the same branch:
    a rank that skipped ``backward()`` while the others all-reduce their gradients hangs the job."""
    finite = bool(torch.isfinite(loss).all())
    if ctx.world_size == 1 or not torch.distributed.is_initialized():
        return finite
    flag = torch.tensor([1 if finite else 0], device=loss.device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
    return bool(flag.item())


def sum_over_ranks(value: float, ctx: DistContext, device: torch.device) -> float:
    if ctx.world_size == 1 or not torch.distributed.is_initialized():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return float(t.item())


# --------------------------------------------------------------------------- the loop


def train(cfg: TrainConfig, shards_dir: str | Path, run_dir: str | Path, ctx: DistContext | None = None,
          assets: RunAssets | None = None) -> TrainResult:
    """Train until ``cfg.optim.max_steps`` optimizer steps, resuming from RUN_DIR's newest checkpoint."""
    ctx = ctx or DistContext()
    ctx.even_batches = cfg.data.even_batches
    run_dir = Path(run_dir)
    is_main = ctx.rank == 0
    device = ctx.device or resolve_device(cfg.device)
    max_steps = cfg.optim.max_steps
    done = nothing_to_do(run_dir, max_steps)
    if done is not None:
        return done
    ckpt = latest_checkpoint(run_dir)
    assets = assets or prepare_run(cfg, shards_dir, run_dir, write=is_main)

    seed_everything(cfg.seed)  # same init on every rank (DDP also broadcasts rank 0's weights)
    model = OmniTalkerDiT(assets.model_cfg.dit).to(device)
    ema = EMA(model, cfg.optim.ema_decay, cfg.optim.ema_start_step)
    wrapped = ctx.wrap_model(model) if ctx.wrap_model is not None else model
    flow = FlowMatching(wrapped, assets.model_cfg.flow)
    optimizer, scheduler = build_optimizer(model, cfg.optim)
    normalizer = FeatureNormalizer(assets.stats).to(device)
    gen = torch.Generator(device=device).manual_seed(cfg.seed * 1000 + ctx.rank)
    cfg_dict = {"train": cfg.to_dict(), "model": assets.model_cfg.to_dict()}

    step, epoch, batches_done, pending_rng = 0, 0, 0, None
    if ckpt is not None:
        state = load_checkpoint(ckpt, model, ema, optimizer, scheduler)
        step = int(state["step"])
        extra = state.get("extra", {})
        epoch, batches_done = int(extra.get("epoch", 0)), int(extra.get("batches_done", 0))
        pending_rng = state
        log.info("resuming from %s (step %d, epoch %d)", ckpt, step, epoch)
    start_step = step
    if is_main:
        log.info("model %.2f M parameters on %s, %d clips, vocab %d, world size %d",
                 count_parameters(model) / 1e6, device, len(assets.index), len(assets.vocab), ctx.world_size)

    use_bf16 = cfg.optim.precision == "bf16" and device.type == "cuda"
    reporter = Reporter(run_dir, cfg, step, enabled=is_main)
    acc: dict[str, Tensor] = {}
    acc_steps, acc_frames, acc_samples, nonfinite = 0, 0.0, 0.0, 0
    last_grad_norm = 0.0
    t_log = time.perf_counter()
    t_start = t_log
    last_ckpt: Path | None = ckpt
    last_loss: float | None = None
    flow.train()
    try:
        while step < max_steps:
            loader = make_loader(assets.index, assets.vocab, cfg.data, ctx.rank, ctx.world_size, epoch)
            it = iter(loader)
            seen = 0
            for _ in range(batches_done):  # re-position a resumed epoch
                if next(it, None) is None:
                    break
                seen += 1
            if pending_rng is not None:  # after the data is re-positioned, as in the uninterrupted run
                restore_rng_state(pending_rng["rng"])
                gen_state = pending_rng.get("extra", {}).get("generator")
                if gen_state is not None and ctx.rank == 0:
                    gen.set_state(decode_tensor_state(gen_state).to(gen.get_state().device))
                else:
                    gen.manual_seed(cfg.seed * 1000 + ctx.rank + 7919 * step)
                pending_rng = None
            while step < max_steps:
                batch = next(it, None)
                if not all_ranks_have_batch(batch is not None, ctx, device):
                    break
                seen += 1
                batches_done += 1
                step += 1
                mel = batch["mel"].to(device, non_blocking=True)
                codes = batch["codes"].to(device, non_blocking=True)
                text = batch["text"].to(device, non_blocking=True)
                cpu_lengths = batch["lengths"]
                lengths = cpu_lengths.to(device, non_blocking=True)
                mel, codes = normalizer.normalize(mel, codes)
                autocast = torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else nullcontext()
                with autocast:
                    loss, parts = flow.compute_loss(mel, codes, text, lengths, generator=gen)
                optimizer.zero_grad(set_to_none=True)
                if not all_ranks_finite(loss, ctx):  # skipped on every rank together
                    nonfinite += 1
                    log.warning("step %d: non-finite loss on some rank (here %s), update skipped on all ranks",
                                step, loss.item())
                else:
                    loss.backward()
                    clip = cfg.optim.grad_clip_norm
                    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip if clip else float("inf"))
                    optimizer.step()
                    last_grad_norm = grad_norm
                scheduler.step()
                ema.update(model, step)
                for key, value in {"loss": loss.detach(), **{f"loss_{k}": v for k, v in parts.items()}}.items():
                    acc[key] = acc.get(key, 0.0) + value.float()
                acc_steps += 1
                acc_frames += float(cpu_lengths.sum())  # CPU copy: no device sync
                acc_samples += float(cpu_lengths.numel())
                reporter.advance(step)
                if is_step_due(step, cfg.logging.log_every_steps, max_steps):
                    now = time.perf_counter()
                    frames = sum_over_ranks(acc_frames, ctx, device)
                    samples = sum_over_ranks(acc_samples, ctx, device)
                    row: dict[str, Any] = {"step": step, "epoch": epoch}
                    row.update({k: float(v) / acc_steps for k, v in acc.items()})
                    row.update({"lr": scheduler.get_last_lr()[0], "grad_norm": float(last_grad_norm),
                                "frames_per_s": frames / max(now - t_log, 1e-9),
                                "samples_per_s": samples / max(now - t_log, 1e-9),
                                "nonfinite_steps": nonfinite, "world_size": ctx.world_size,
                                "elapsed_s": now - t_start})
                    last_loss = row["loss"]
                    reporter.write(row)
                    acc, acc_steps, acc_frames, acc_samples, t_log = {}, 0, 0.0, 0.0, now
                if is_main and is_step_due(step, cfg.logging.ckpt_every_steps, max_steps):
                    extra = {"epoch": epoch, "batches_done": batches_done,
                             "generator": encode_tensor_state(gen.get_state())}
                    last_ckpt = save_checkpoint(run_dir, step, model, ema, optimizer, scheduler, cfg_dict,
                                                assets.vocab, assets.stats, cfg.logging.keep_last, extra)
            if step >= max_steps:
                break
            if seen == 0:
                raise RuntimeError(f"epoch {epoch} yielded no batch: every clip was filtered out or is longer "
                                   f"than data.max_frames_per_batch ({cfg.data.max_frames_per_batch} frames)")
            epoch += 1
            batches_done = 0
    finally:
        reporter.close()
    msg = f"trained steps {start_step} -> {step}; last checkpoint {last_ckpt}"
    return TrainResult("trained", step, start_step, str(last_ckpt) if last_ckpt else None, last_loss, msg,
                       reporter.rows)
