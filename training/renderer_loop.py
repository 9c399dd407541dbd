"""The learned warp-GAN renderer's trainer (``omnitalker train-renderer``, ``launchers/train_renderer.py``).

Same shape as the DiT trainer (``training/loop.py``): one local process (CPU, or one GPU with
``--gpu`` / ``device: cuda``), or ``--num-workers N`` Ray Train workers (DDP, one GPU each with
``--gpu``). Running the same command again resumes from RUN_DIR's newest checkpoint; when it is
already at ``--max-steps`` the command says so and does nothing.

Reused from the DiT trainer: ``OptimConfig`` / ``LoggingConfig`` (``training.config``), AdamW +
warmup/decay schedule, device and seeding, metrics.jsonl ``Reporter`` (``training.loop``), the
EMA (``training.ema``), the checkpoint folder naming, RNG capture and lookup helpers
(``model.checkpoint``, ``training.checkpoint``) and ``read_last_loss`` (``training.ray_train``).

Checkpoint ``RUN_DIR/checkpoints/step_<08d>/`` (written to a temp folder, then renamed):
``model.safetensors`` (generator), ``ema.safetensors`` (its EMA: what inference loads),
``disc.safetensors`` (PatchGAN), ``optimizer.pt`` (both optimizers, schedulers, EMA
bookkeeping) and ``state.json`` (step, RNG states, ``config``: the whole RendererTrainConfig).
On resume, weights, optimizers and RNGs are restored; the pair stream is re-seeded from the
resume step (decoding video to skip consumed pairs would cost more than it is worth), so a
resumed run is deterministic but not identical to an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from core.overlay import load_layered_config
from model.checkpoint import (
    latest_checkpoint,
)
from model.renderer.warpgan.keypoints import FaceKeypoints
from model.renderer.warpgan.losses import (
    LossConfig,
    PatchDiscriminator,
    discriminator_hinge_loss,
    generator_hinge_loss,
    l1_loss,
    load_vgg_perceptual,
    mouth_l1_loss,
    ms_ssim_loss,
)
from model.renderer.warpgan.model import WarpGanConfig, WarpGanRenderer, count_parameters
from training.checkpoint import load_module_checkpoint, restore_rng_state, save_module_checkpoint
from training.config import LoggingConfig, OptimConfig
from training.ema import EMA
from training.loop import (
    DistContext,
    Reporter,
    TrainResult,
    build_optimizer,
    nothing_to_do,
    resolve_device,
    seed_everything,
)
from training.renderer_data import RendererDataConfig, build_renderer_index, make_pair_loader
from training.steps import MetricWindow, is_step_due, take_optimizer_step

log = logging.getLogger("omnitalker.renderer")


@dataclass
class RendererTrainConfig:
    """Everything a renderer run needs; ``configs/renderer_tiny.yaml`` / ``renderer_paper.yaml``."""

    model: WarpGanConfig = field(default_factory=WarpGanConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: RendererDataConfig = field(default_factory=RendererDataConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-4, betas=[0.5, 0.999], warmup_steps=1000,
                                                                    decay="constant", max_steps=200000,
                                                                    ema_decay=0.999, weight_decay=0.0))
    disc_lr: float = 2e-4  # the discriminator's AdamW learning rate (same schedule as the generator's)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    seed: int = 0  # model init and python/numpy/torch RNGs
    device: str = "auto"  # auto | cpu | cuda; the Ray path uses each worker's device

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_renderer_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RendererTrainConfig:
    """Defaults, then the YAML file, then ``key.sub=value`` overrides; unknown keys raise."""
    return load_layered_config(RendererTrainConfig(), path, overrides)


# --------------------------------------------------------------------------- checkpoints


# --------------------------------------------------------------------------- the loop


def train_renderer(cfg: RendererTrainConfig, shards_dir: str | Path, run_dir: str | Path,
                   ctx: DistContext | None = None) -> TrainResult:
    """Train until ``cfg.optim.max_steps`` steps (one generator + one discriminator update each), resuming."""
    ctx = ctx or DistContext()
    run_dir = Path(run_dir)
    is_main = ctx.rank == 0
    done = nothing_to_do(run_dir, cfg.optim.max_steps)
    if done is not None:
        return done
    device = ctx.device or resolve_device(cfg.device)
    clips = build_renderer_index(shards_dir)
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "renderer_config.json").write_text(json.dumps(cfg.to_dict(), indent=2), encoding="utf-8")

    seed_everything(cfg.seed)
    gen = WarpGanRenderer(cfg.model).to(device)
    disc = PatchDiscriminator(cfg.loss.disc_channels, cfg.loss.disc_layers).to(device)
    ema = EMA(gen, cfg.optim.ema_decay, cfg.optim.ema_start_step)
    gen_w = ctx.wrap_model(gen) if ctx.wrap_model is not None else gen
    disc_w = ctx.wrap_model(disc) if ctx.wrap_model is not None else disc
    opt_g, sched_g = build_optimizer(gen, cfg.optim)
    opt_d, sched_d = build_optimizer(disc, dataclasses.replace(cfg.optim, lr=cfg.disc_lr))
    optims = {"opt_g": opt_g, "sched_g": sched_g, "opt_d": opt_d, "sched_d": sched_d}
    vgg = load_vgg_perceptual(cfg.loss.vgg_weights_path) if cfg.loss.vgg_weight > 0 else None
    if vgg is not None:
        vgg = vgg.to(device)
    masker = FaceKeypoints(("mouth",), basis_path=cfg.model.basis_path).to(device)

    step = 0
    ckpt = latest_checkpoint(run_dir)
    if ckpt is not None:
        state = load_module_checkpoint(ckpt, {"model": gen, "disc": disc}, ema, optims)
        step = int(state["step"])
        restore_rng_state(state["rng"])
        log.info("resuming from %s (step %d)", ckpt, step)
    start_step = step
    if is_main:
        log.info("warp-GAN renderer %.2f M parameters (discriminator %.2f M) on %s, %d clips, world size %d",
                 count_parameters(gen) / 1e6, count_parameters(disc) / 1e6, device, len(clips), ctx.world_size)
    reporter = Reporter(run_dir, cfg, step, enabled=is_main)  # type: ignore[arg-type]  (reads .logging, .optim)
    loader = make_pair_loader(clips, cfg.data, cfg.model.image_size, ctx.rank, ctx.world_size, start_step)
    it = iter(loader)
    window = MetricWindow("frames_per_s")
    last_ckpt, last_loss = ckpt, None
    gen_w.train()
    disc_w.train()
    clip = cfg.optim.grad_clip_norm
    lw = cfg.loss
    try:
        while step < cfg.optim.max_steps:
            batch = next(it)
            step += 1
            src, drv = batch["source"].to(device), batch["driving"].to(device)
            src_c, drv_c = batch["source_codes"].to(device), batch["driving_codes"].to(device)
            use_gan = lw.gan_weight > 0 and step > lw.gan_start_step
            fake = gen_w(src, src_c, drv_c)
            mask = masker.mouth_mask(drv_c, cfg.model.image_size, lw.mouth_margin_frac)
            parts = {"l1": l1_loss(fake, drv), "ssim": ms_ssim_loss(fake, drv, lw.ssim_scales),
                     "mouth": mouth_l1_loss(fake, drv, mask)}
            if vgg is not None:
                parts["vgg"] = vgg(fake, drv)
            if use_gan:
                parts["gan_g"] = generator_hinge_loss(disc_w(fake))
            weights = {"l1": lw.l1_weight, "ssim": lw.ssim_weight, "mouth": lw.mouth_weight, "vgg": lw.vgg_weight,
                       "gan_g": lw.gan_weight}
            loss = sum(weights[k] * v for k, v in parts.items())
            grad_norm = take_optimizer_step(gen, loss, opt_g, sched_g, clip)
            ema.update(gen, step)
            if use_gan:
                real_logits, fake_logits = disc_w(torch.cat([drv, fake.detach()])).chunk(2)  # one DDP forward
                d_loss = discriminator_hinge_loss(real_logits, fake_logits)
                take_optimizer_step(disc, d_loss, opt_d, None, clip)
                parts["gan_d"] = d_loss
            sched_d.step()
            window.add({"loss": loss, **{f"loss_{k}": v for k, v in parts.items()}}, src.shape[0])
            reporter.advance(step)
            if is_step_due(step, cfg.logging.log_every_steps, cfg.optim.max_steps):
                row = window.row(step, sched_g.get_last_lr()[0], grad_norm, ctx.world_size)
                last_loss = row["loss"]
                reporter.write(row)
            if is_main and is_step_due(step, cfg.logging.ckpt_every_steps, cfg.optim.max_steps):
                last_ckpt = save_module_checkpoint(run_dir, step, {"model": gen, "disc": disc}, ema, optims,
                                                   {"kind": "warpgan", "config": cfg.to_dict()},
                                                   cfg.logging.keep_last)
    finally:
        reporter.close()
    return TrainResult("trained", step, start_step, str(last_ckpt) if last_ckpt else None, last_loss,
                       f"trained steps {start_step} -> {step}; last checkpoint {last_ckpt}", reporter.rows)


# --------------------------------------------------------------------------- Ray Train


def renderer_train_worker(config: dict[str, Any]) -> None:
    """``train_loop_per_worker``: one Ray Train worker of the renderer run described by ``config``."""
    from training.ray_train import run_worker_loop

    run_worker_loop(config, RendererTrainConfig, train_renderer)


def run_ray_renderer_training(cfg: RendererTrainConfig, shards_dir: str, run_dir: str, num_workers: int,
                              use_gpu: bool) -> TrainResult:
    """``num_workers`` TorchTrainer workers (RUN_DIR on storage every node sees); summary from RUN_DIR."""
    from training.ray_train import launch_on_ray

    def prepare(_run_path: Path) -> None:  # fail on the driver (schema, empty set) before starting workers
        build_renderer_index(shards_dir)

    return launch_on_ray(renderer_train_worker, cfg, shards_dir, run_dir, num_workers, use_gpu, "train-renderer",
                         prepare)
