"""Saving and loading lip-sync model weights: one safetensors file with its config in the metadata.

``load_sync_model(None)`` loads the trained default that ships with the repository
(``model/sync/assets/sync_v1.safetensors``, sha256-pinned, trained by ``make sync-model``,
see docs/sync.md). A path may be such a file, a ``train-sync`` checkpoint folder, or a run folder
(its newest checkpoint): checkpoints load their EMA weights.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_model, save_model

from core.overlay import overlay_config
from model.checkpoint import read_state, resolve_checkpoint
from model.sync.model import SyncModel, SyncModelConfig

FORMAT = "omnitalker-sync-v1"  # metadata "format" of an exported weight file
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "assets" / "sync_v1.safetensors"
DEFAULT_SHA256 = "2ac45e7e1bf1daaa91f0fde8e97dbbf5a8049dab5f4d43aed5eaef5bfd90fc4b"  # pinned by launchers/export_sync.py (make sync-model)


class SyncModelError(RuntimeError):
    """Lip-sync weights that cannot be found, verified or loaded; the message names what to do."""


def export_sync_weights(model: SyncModel, path: str | Path, extra: dict | None = None) -> Path:
    """Write ``model``'s weights and config (and ``extra`` facts: training files, held-out speakers) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    meta = {"format": FORMAT, "config": json.dumps(model.cfg.to_dict()), "extra": json.dumps(extra or {})}
    save_model(model, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_weights_metadata(path: str | Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as fh:
        return dict(fh.metadata() or {})


def load_sync_model(path: str | Path | None = None, device: str | torch.device = "cpu") -> tuple[SyncModel, str]:
    """``(model in eval mode, model id)`` from ``path`` (None: the shipped default, sha256-checked)."""
    if path is None:
        if not DEFAULT_WEIGHTS.is_file():
            raise SyncModelError(f"the default lip-sync weights {DEFAULT_WEIGHTS} are missing: reinstall the package, "
                                 "run `make sync-model`, or set sync.model_path")
        digest = sha256_of(DEFAULT_WEIGHTS)
        if digest != DEFAULT_SHA256:
            raise SyncModelError(f"{DEFAULT_WEIGHTS} has sha256 {digest}, expected {DEFAULT_SHA256}: "
                                 "restore it from git, or set sync.model_path")
        file, model_id = DEFAULT_WEIGHTS, f"sync_v1@{digest[:12]}"
    else:
        p = Path(path).expanduser()
        if not p.exists():
            raise SyncModelError(f"sync.model_path={str(path)!r} does not exist")
        if p.is_file():
            file, model_id = p, f"{p.stem}@{sha256_of(p)[:12]}"
        else:
            try:
                ckpt = resolve_checkpoint(p)
            except FileNotFoundError as e:
                raise SyncModelError(f"sync.model_path={str(path)!r}: {e}") from e
            cfg = overlay_config(SyncModelConfig(), read_state(ckpt)["config"]["model"])
            model = SyncModel(cfg)
            load_model(model, str(ckpt / "ema.safetensors"), strict=True, device="cpu")
            return model.to(device).eval(), f"{p.name}/{ckpt.name}"
    meta = read_weights_metadata(file)
    if meta.get("format") != FORMAT:
        raise SyncModelError(f"{file}: not a lip-sync weight file (metadata format {meta.get('format')!r})")
    model = SyncModel(overlay_config(SyncModelConfig(), json.loads(meta["config"])))
    load_model(model, str(file), strict=True, device="cpu")
    return model.to(device).eval(), model_id
