"""Writing training checkpoints atomically and restoring a run from them (resume).

The format itself (folder layout, ``state.json``, reading for inference) is ``model/checkpoint.py``.
Layout of one checkpoint, ``RUN_DIR/checkpoints/step_<08d>/``:

* ``model.safetensors`` -- the trained weights (unwrapped from DDP);
* ``ema.safetensors`` -- the EMA weights (what inference uses);
* ``optimizer.pt`` -- ``torch.save`` of the optimizer, LR scheduler and EMA bookkeeping state;
* ``state.json`` -- ``step``, RNG states (python, numpy, torch CPU, torch CUDA; base64 where
  binary), ``config`` (``{"train": TrainConfig dict, "model": ModelConfig dict}``), feature
  ``stats`` and any ``extra`` the trainer adds (epoch position, loss-noise generator state);
* ``vocab.txt`` -- the vocabulary (also kept as ``RUN_DIR/vocab.txt``).

A checkpoint is written into ``checkpoints/.tmp-step_<08d>-<pid>`` and renamed into place, so a
crash never leaves a half-written ``step_*`` folder; only the newest ``keep_last`` are kept.
In multi-worker runs only rank 0 calls :func:`save_checkpoint`, and ``RUN_DIR`` must be storage
every worker can read (a shared filesystem) for resuming.
"""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model
from torch import nn

from model.checkpoint import CKPT_DIR, STATE_FILE, VOCAB_FILE, checkpoint_name, list_checkpoints, read_state
from model.vocab import Vocab
from training.ema import EMA, unwrap_model


def encode_tensor_state(state: torch.Tensor) -> str:
    """A uint8 RNG state tensor as base64 text."""
    return base64.b64encode(state.cpu().numpy().tobytes()).decode("ascii")


def decode_tensor_state(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8).clone()


def capture_rng_state() -> dict[str, Any]:
    """python, numpy and torch (CPU + every CUDA device) RNG states, JSON-serializable."""
    py_version, py_state, py_gauss = random.getstate()
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": encode_tensor_state(torch.get_rng_state()),
        "cuda": [],
    }
    if torch.cuda.is_available():
        state["cuda"] = [encode_tensor_state(s) for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state` (CUDA states are restored only if the device count matches)."""
    py_version, py_state, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(decode_tensor_state(state["torch"]))
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
        torch.cuda.set_rng_state_all([decode_tensor_state(s) for s in cuda])


def to_jsonable(value: Any) -> Any:
    """Tensors / arrays / numpy scalars in nested dicts and lists -> plain Python for json."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value


def write_vocab_atomic(vocab: Vocab, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    vocab.save(tmp)
    os.replace(tmp, path)


def install_folder(tmp: Path, final: Path) -> None:
    """Move the finished folder ``tmp`` to ``final`` by renames. An existing ``final`` (the same step saved
    again, e.g. a resumed run ending where it started) is renamed aside first and deleted after, so ``final``
    is never half-written and is missing only between two renames."""
    if final.exists():
        old = final.with_name(f".tmp-old-{final.name}-{os.getpid()}")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def save_checkpoint(run_dir: str | Path, step: int, model: nn.Module, ema: EMA, optimizer: torch.optim.Optimizer,
                    scheduler: Any, cfg_dict: dict[str, Any], vocab: Vocab, stats: dict[str, Any],
                    keep_last: int, extra: dict[str, Any] | None = None) -> Path:
    """Write ``RUN_DIR/checkpoints/step_<08d>`` atomically and prune to the newest ``keep_last``.

    ``cfg_dict`` is ``{"train": ..., "model": ModelConfig.to_dict()}``; ``extra`` is stored
    verbatim in state.json (must be JSON-serializable after :func:`to_jsonable`).
    Returns the checkpoint folder.
    """
    run_dir = Path(run_dir)
    root = run_dir / CKPT_DIR
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    final = root / checkpoint_name(step)
    tmp = root / f".tmp-{checkpoint_name(step)}-{os.getpid()}"
    tmp.mkdir()
    save_model(unwrap_model(model), str(tmp / "model.safetensors"), metadata={"step": str(step)},
               force_contiguous=True)
    save_model(ema.module, str(tmp / "ema.safetensors"), metadata={"step": str(step)}, force_contiguous=True)
    torch.save({"optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "ema": ema.state_dict()}, tmp / "optimizer.pt")
    state = {"step": int(step), "rng": capture_rng_state(), "config": to_jsonable(cfg_dict),
             "stats": to_jsonable(stats), "extra": to_jsonable(extra or {})}
    (tmp / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")
    vocab.save(tmp / VOCAB_FILE)
    install_folder(tmp, final)
    write_vocab_atomic(vocab, run_dir / VOCAB_FILE)
    for old_ckpt in list_checkpoints(run_dir)[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old_ckpt, ignore_errors=True)
    return final


def load_checkpoint(ckpt_dir: str | Path, model: nn.Module, ema: EMA | None = None,
                    optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None,
                    restore_rng: bool = False) -> dict[str, Any]:
    """Load weights (and, when given, EMA, optimizer, scheduler) from ``ckpt_dir``; return its state.json.

    RNG states are restored only with ``restore_rng`` (the trainer restores them itself, after
    re-positioning the data loader). Weights go to the device the model already lives on.
    """
    ckpt_dir = Path(ckpt_dir)
    target = unwrap_model(model)
    device = next(target.parameters()).device
    load_model(target, str(ckpt_dir / "model.safetensors"), strict=True, device=str(device))
    if ema is not None:
        load_model(ema.module, str(ckpt_dir / "ema.safetensors"), strict=True,
                   device=str(next(ema.module.parameters()).device))
    if optimizer is not None or scheduler is not None or ema is not None:
        blob = torch.load(ckpt_dir / "optimizer.pt", map_location=device, weights_only=False)
        if optimizer is not None:
            optimizer.load_state_dict(blob["optimizer"])
        if scheduler is not None and blob.get("scheduler") is not None:
            scheduler.load_state_dict(blob["scheduler"])
        if ema is not None:
            ema.load_state_dict(blob.get("ema") or {})
    state = read_state(ckpt_dir)
    if restore_rng:
        restore_rng_state(state["rng"])
    return state


def save_module_checkpoint(run_dir: str | Path, step: int, modules: dict[str, nn.Module], ema: EMA,
                           optims: dict[str, Any], state: dict[str, Any], keep_last: int) -> Path:
    """Write ``RUN_DIR/checkpoints/step_<08d>`` atomically for trainers of several modules; prune to ``keep_last``.

    ``modules`` name the weight files (``{"model": m, "disc": d}`` -> ``model.safetensors``,
    ``disc.safetensors``); the EMA goes to ``ema.safetensors``; ``optims`` (optimizers and
    schedulers) and the EMA bookkeeping to ``optimizer.pt``; ``state`` (config, kind, extra facts)
    to ``state.json`` with the step and the RNG states.
    """
    root = Path(run_dir) / CKPT_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    tmp = root / f".tmp-{checkpoint_name(step)}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    meta = {"step": str(step), "kind": str(state.get("kind", ""))}
    for name, module in modules.items():
        save_model(unwrap_model(module), str(tmp / f"{name}.safetensors"), metadata=meta)
    save_model(ema.module, str(tmp / "ema.safetensors"), metadata=meta)
    torch.save({k: v.state_dict() for k, v in optims.items()} | {"ema": ema.state_dict()}, tmp / "optimizer.pt")
    full = {"step": int(step), "rng": capture_rng_state(), **to_jsonable(state)}
    (tmp / STATE_FILE).write_text(json.dumps(full), encoding="utf-8")
    install_folder(tmp, final)
    for old in list_checkpoints(run_dir)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def save_ema_snapshot(folder: str | Path, step: int, ema: EMA, state: dict[str, Any]) -> Path:
    """Write the EMA weights and ``state.json`` (``step`` plus ``state``) to ``folder``, atomically, replacing it.

    An inference-only checkpoint folder (no training weights, optimizer or RNG state: it cannot be
    resumed from), e.g. a run's best held-out step, which the ``keep_last`` pruning would delete.
    """
    final = Path(folder)
    tmp = final.with_name(f".tmp-{final.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(ema.module, str(tmp / "ema.safetensors"), metadata={"step": str(step), "kind": str(state.get("kind", ""))})
    (tmp / STATE_FILE).write_text(json.dumps({"step": int(step), **to_jsonable(state)}), encoding="utf-8")
    install_folder(tmp, final)
    return final


def load_module_checkpoint(ckpt: str | Path, modules: dict[str, nn.Module], ema: EMA, optims: dict[str, Any]
                           ) -> dict[str, Any]:
    """Inverse of :func:`save_module_checkpoint` (weights to the device they live on); returns state.json."""
    ckpt = Path(ckpt)
    device = str(next(unwrap_model(next(iter(modules.values()))).parameters()).device)
    for name, module in modules.items():
        load_model(unwrap_model(module), str(ckpt / f"{name}.safetensors"), strict=True, device=device)
    load_model(ema.module, str(ckpt / "ema.safetensors"), strict=True, device=device)
    blob = torch.load(ckpt / "optimizer.pt", map_location=device, weights_only=False)
    for k, v in optims.items():
        v.load_state_dict(blob[k])
    ema.load_state_dict(blob.get("ema") or {})
    return read_state(ckpt)
