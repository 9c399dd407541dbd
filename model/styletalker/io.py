"""Loading a trained StyleTalker motion model: a ``train-styletalker`` run folder (its newest checkpoint) or a
checkpoint folder; the EMA weights (with the training set's code and mel statistics, as buffers) are loaded, and
the run's loss weights (the likelihood that refines a driver's latents)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_model

from core.overlay import overlay_config
from model.checkpoint import CKPT_DIR, read_state, resolve_checkpoint
from model.styletalker.model import StyleTalkerConfig, StyleTalkerLossConfig, StyleTalkerMotion


def load_styletalker(path: str | Path, device: str | torch.device = "cpu") -> tuple[StyleTalkerMotion, str]:
    """``(model in eval mode, model id "<run>/<step_dir>")`` (``"<run>/best"`` for a run's best held-out step); a
    missing run or checkpoint raises FileNotFoundError."""
    p = Path(path).expanduser()
    ckpt = resolve_checkpoint(p)
    state = read_state(ckpt)
    if state.get("kind") != "styletalker":
        raise ValueError(f"{ckpt} is a {state.get('kind')!r} checkpoint, not a styletalker one")
    cfg = overlay_config(StyleTalkerConfig(), state["config"]["model"])
    model = StyleTalkerMotion(cfg)
    model.loss_cfg = overlay_config(StyleTalkerLossConfig(), state["config"].get("loss", {}))  # drive refinement
    load_model(model, str(ckpt / "ema.safetensors"), strict=True, device="cpu")
    ckpt = Path(ckpt)
    run = ckpt.parent.parent if ckpt.parent.name == CKPT_DIR else ckpt.parent  # a step folder, or RUN_DIR/best
    return model.to(device).eval(), f"{run.name}/{ckpt.name}"
