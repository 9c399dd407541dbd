"""The checkpoint format that training writes and inference reads (no training code here).

Layout of one checkpoint, ``RUN_DIR/checkpoints/step_<08d>/``:

* ``model.safetensors`` -- the trained weights (unwrapped from DDP);
* ``ema.safetensors`` -- the EMA weights (what inference uses);
* ``optimizer.pt`` -- ``torch.save`` of the optimizer, LR scheduler and EMA bookkeeping state;
* ``state.json`` -- ``step``, RNG states (python, numpy, torch CPU, torch CUDA; base64 where
  binary), ``config`` (``{"train": ..., "model": ModelConfig dict}``), feature ``stats`` and any
  ``extra`` the trainer adds (epoch position, loss-noise generator state);
* ``vocab.txt`` -- the vocabulary (also kept as ``RUN_DIR/vocab.txt``; DiT runs only).

``training/checkpoint.py`` writes it atomically and restores training state from it; the
renderer trainer uses the same folder layout with its own weight files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model

from model.dit.backbone import OmniTalkerDiT
from model.dit.config import ModelConfig, model_config_from_dict
from model.vocab import Vocab

CKPT_DIR = "checkpoints"
STEP_RE = re.compile(r"^step_(\d{8})$")
STATE_FILE = "state.json"
VOCAB_FILE = "vocab.txt"


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints (those with a state.json) under ``run_dir``, oldest first."""
    root = Path(run_dir) / CKPT_DIR
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if STEP_RE.match(p.name) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(STEP_RE.match(p.name).group(1)))  # type: ignore[union-attr]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder, or None."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def read_state(ckpt_dir: str | Path) -> dict[str, Any]:
    """state.json of a checkpoint folder."""
    return json.loads((Path(ckpt_dir) / STATE_FILE).read_text(encoding="utf-8"))


def resolve_checkpoint(run_dir_or_ckpt: str | Path) -> Path:
    """A checkpoint folder itself, or the newest checkpoint of a run folder."""
    path = Path(run_dir_or_ckpt)
    if (path / STATE_FILE).is_file():
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise FileNotFoundError(f"{path}: no checkpoint (expected {path}/{CKPT_DIR}/step_<08d>/{STATE_FILE} "
                                f"or a checkpoint folder)")
    return latest


def load_for_inference(run_dir_or_ckpt: str | Path, device: str | torch.device = "cpu"
                       ) -> tuple[OmniTalkerDiT, ModelConfig, Vocab, dict[str, Any]]:
    """``(model with the EMA weights in eval mode, ModelConfig, Vocab, feature stats)``.

    ``run_dir_or_ckpt`` is a run folder (its newest checkpoint is used) or one checkpoint folder.
    The stats are those the trainer normalized with (see ``model.normalizer.FeatureNormalizer``).
    """
    ckpt = resolve_checkpoint(run_dir_or_ckpt)
    state = read_state(ckpt)
    model_cfg = model_config_from_dict(state["config"]["model"])
    vocab = Vocab.load(ckpt / VOCAB_FILE)
    if len(vocab) != model_cfg.dit.vocab_size:
        raise ValueError(f"{ckpt}: vocab.txt has {len(vocab)} tokens but the model expects "
                         f"{model_cfg.dit.vocab_size}")
    model = OmniTalkerDiT(model_cfg.dit)
    load_model(model, str(ckpt / "ema.safetensors"), strict=True, device="cpu")
    model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, model_cfg, vocab, state["stats"]
