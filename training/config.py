"""Trainer configuration: one dataclass per concern, grouped in :class:`TrainConfig`.

``configs/train_tiny.yaml`` and ``configs/train_paper.yaml`` are the commented defaults.
:func:`load_train_config` overlays a YAML file and ``key.sub=value`` overrides (``--set``) on the
dataclass defaults; unknown keys are an error (the same rule as ``model/dit/config.py``).

The model is referenced, not inlined: ``model.config`` is a path to a model YAML (relative paths
are resolved against the training YAML's folder first, then the working directory) and
``model.overrides`` are ``key=value`` strings applied on top. ``dit.vocab_size`` is always set
from the vocabulary built (or reloaded) at the start of a run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.overlay import load_layered_config, overlay_config
from model.dit.config import ModelConfig, load_model_config
from training.data import DataConfig

DECAY_KINDS = ("cosine", "linear", "constant")
DEVICE_KINDS = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16")


@dataclass
class ModelSection:
    """Which model to train: a model YAML plus ``key=value`` overrides (``dit.vocab_size`` is set at start)."""

    config: str = "model_paper.yaml"  # path to a model YAML (model/dit/config.py); relative to this YAML's folder
    overrides: list[str] = field(default_factory=list)  # e.g. ["dit.fusion=add", "flow.drop_text_prob=0.3"]


@dataclass
class FeatureConfig:
    """Per-dimension normalization of the training targets with stats from ``compute_feature_stats``."""

    normalize_codes: bool = True  # (codes - mean) / std before the loss; generation un-normalizes
    normalize_mel: bool = False  # the same for the log-mel (off: log-mel is already well scaled)
    stats_max_clips: int = 256  # clips read to estimate the stats
    min_std: float = 1e-3  # floor of the std (in feature units) so constant dims do not blow up


@dataclass
class OptimConfig:
    """AdamW with linear warmup then decay, gradient clipping and an EMA of the weights."""

    lr: float = 7.5e-5  # peak learning rate (after warmup)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # AdamW (beta1, beta2)
    eps: float = 1e-8  # AdamW epsilon
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    warmup_steps: int = 20000  # optimizer steps of linear warmup from 0 to lr
    decay: str = "linear"  # after warmup: cosine | linear | constant, down to lr * min_lr_ratio at max_steps
    min_lr_ratio: float = 0.0  # final lr as a fraction of lr
    max_steps: int = 500000  # optimizer steps of the whole run (the --max-steps flag overrides)
    grad_clip_norm: float | None = 1.0  # max global L2 norm of the gradients; null = no clipping
    ema_decay: float = 0.9999  # EMA of the weights: ema = decay * ema + (1 - decay) * weights, per step
    ema_start_step: int = 0  # before this step the EMA just copies the weights
    precision: str = "fp32"  # fp32 | bf16 (bf16 autocast, CUDA only; CPU always runs fp32)

    def __post_init__(self) -> None:
        if self.decay not in DECAY_KINDS:
            raise ValueError(f"optim.decay must be one of {DECAY_KINDS}, got {self.decay!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"optim.precision must be one of {PRECISIONS}, got {self.precision!r}")
        if len(self.betas) != 2:
            raise ValueError(f"optim.betas must be two numbers, got {self.betas!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError("optim.ema_decay must be in [0, 1)")
        if self.max_steps < 0 or self.warmup_steps < 0:
            raise ValueError("optim.max_steps and optim.warmup_steps must be >= 0")


@dataclass
class LoggingConfig:
    """Where and how often the run reports."""

    log_every_steps: int = 50  # steps between metrics.jsonl rows (losses are averaged over them)
    ckpt_every_steps: int = 5000  # steps between checkpoints (one is always written at the end)
    keep_last: int = 3  # checkpoints kept in RUN_DIR/checkpoints (older ones are deleted)
    tensorboard: bool = False  # also write RUN_DIR/tensorboard (only if the tensorboard package is installed)
    progress: bool = True  # progress bar on stderr (always off when stderr is not a terminal)

    def __post_init__(self) -> None:
        if self.log_every_steps < 1 or self.ckpt_every_steps < 1 or self.keep_last < 1:
            raise ValueError("logging.log_every_steps, ckpt_every_steps and keep_last must be >= 1")


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    seed: int = 0  # seeds model init, the flow-matching noise and python/numpy/torch RNGs
    device: str = "auto"  # auto (cuda if available) | cpu | cuda; the Ray path uses each worker's device
    base_dir: str = ""  # folder model.config is resolved against (set by load_train_config)

    def __post_init__(self) -> None:
        if self.device.split(":")[0] not in DEVICE_KINDS:
            raise ValueError(f"device must be one of {DEVICE_KINDS} (or cuda:N), got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def train_config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """Rebuild a :class:`TrainConfig` from :meth:`TrainConfig.to_dict` output (unknown keys raise)."""
    return overlay_config(TrainConfig(), values)


def load_train_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Defaults, then the YAML file, then ``key=value`` overrides (values parsed as YAML)."""
    cfg = load_layered_config(TrainConfig(), path, overrides)
    if path is not None:
        cfg = dataclasses.replace(cfg, base_dir=str(Path(path).resolve().parent))
    return cfg


def resolve_model_yaml(cfg: TrainConfig) -> Path:
    """The model YAML named by ``cfg.model.config`` (training YAML's folder first, then the working dir)."""
    raw = Path(cfg.model.config).expanduser()
    candidates = [raw] if raw.is_absolute() else [Path(cfg.base_dir or ".") / raw, Path.cwd() / raw]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise FileNotFoundError(f"model.config {cfg.model.config!r} not found (looked at "
                            f"{', '.join(str(c) for c in candidates)})")


def build_model_config(cfg: TrainConfig, vocab_size: int) -> ModelConfig:
    """The model YAML + ``model.overrides``, with ``dit.vocab_size`` set to the vocabulary's size."""
    model_cfg = load_model_config(resolve_model_yaml(cfg), list(cfg.model.overrides))
    return overlay_config(model_cfg, {"dit": {"vocab_size": int(vocab_size)}})
