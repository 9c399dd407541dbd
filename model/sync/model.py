"""StyleTalker's contrastive lip-sync discriminator, in the project's own feature space.

Tensor legend:

* ``B`` windows, ``W`` frames per window (``window_frames``, at 93.75 Hz), ``E`` embedding size;
* audio window ``(B, 100, W)``: log-mel bins of the clip (``shards.spec``);
* lip window ``(B, 2 * L, W)``: the ``L = 27`` mouth and jaw blendshapes of the 61-d codes
  (``shards.codes``) and their frame-to-frame differences.

Both encoders are small 1-D conv stacks that average over time and project to a unit vector;
a window pair's distance is ``1 - cos`` (0 = in sync, 2 = opposite). Every window is
standardized per channel before encoding (mean 0, unit std over the window), so the model sees
the shape of the motion and of the spectrum, not a speaker's baseline mouth or timbre.
Training (``training/sync_loop.py``): InfoNCE with the same clip's audio shifted in time and
other clips' audio as negatives.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from shards.codes import EXPRESSION_NAMES, EXPRESSION_SLICE
from shards.spec import N_MELS

LIP_NAMES: tuple[str, ...] = tuple(n for n in EXPRESSION_NAMES if n.startswith(("mouth", "jaw")))
LIP_INDEX: tuple[int, ...] = tuple(EXPRESSION_SLICE.start + EXPRESSION_NAMES.index(n) for n in LIP_NAMES)
STD_FLOOR = 1e-3  # per-window std floor of the standardization


@dataclass
class SyncModelConfig:
    """Architecture of the lip-sync model (``configs/sync.yaml``, section ``model``)."""

    window_frames: int = 40  # frames per window at 93.75 Hz (0.43 s)
    channels: int = 96  # conv width of both encoders
    embed_dim: int = 64  # E: size of the unit embeddings
    kernel: int = 5  # frames: kernel of the first two convs
    dropout: float = 0.3  # dropout after each conv (training only)
    n_mels: int = N_MELS  # audio input channels
    lip_channels: int = 2 * len(LIP_INDEX)  # lip input channels: blendshapes and their deltas

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def standardize_windows(x: Tensor) -> Tensor:
    """``(B, C, W)`` -> per window and channel: mean 0, std 1 (std floored at ``STD_FLOOR``)."""
    mean = x.mean(dim=-1, keepdim=True)
    std = x.std(dim=-1, keepdim=True, unbiased=False).clamp(min=STD_FLOOR)
    return (x - mean) / std


def lip_features(codes: Tensor) -> Tensor:
    """``(..., T, 61)`` codes -> ``(..., T, 2 * L)``: mouth and jaw blendshapes and their deltas (first delta 0)."""
    lips = codes[..., list(LIP_INDEX)]
    delta = torch.diff(lips, dim=-2, prepend=lips[..., :1, :])
    return torch.cat([lips, delta], dim=-1)


class WindowEncoder(nn.Module):
    """``(B, C_in, W)`` -> ``(B, E)`` unit vectors: three convs (the last two strided), then a linear map of
    the whole ``(C, W / 4)`` feature map, so the embedding keeps the order of events inside the window."""

    def __init__(self, in_channels: int, cfg: SyncModelConfig) -> None:
        super().__init__()
        c, k = cfg.channels, cfg.kernel
        self.net = nn.Sequential(
            nn.Conv1d(in_channels, c, k, padding=k // 2), nn.GELU(), nn.Dropout(cfg.dropout),
            nn.Conv1d(c, c, k, stride=2, padding=k // 2), nn.GELU(), nn.Dropout(cfg.dropout),
            nn.Conv1d(c, c, 3, stride=2, padding=1), nn.GELU(), nn.Dropout(cfg.dropout),
        )
        steps = (cfg.window_frames + 1) // 2
        steps = (steps + 1) // 2
        self.proj = nn.Linear(c * steps, cfg.embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        h = self.net(standardize_windows(x)).flatten(1)
        return nn.functional.normalize(self.proj(h), dim=-1)


class SyncModel(nn.Module):
    """Audio and lip encoders; :meth:`distance` of paired windows."""

    def __init__(self, cfg: SyncModelConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or SyncModelConfig()
        self.audio = WindowEncoder(self.cfg.n_mels, self.cfg)
        self.lips = WindowEncoder(self.cfg.lip_channels, self.cfg)

    def embed_audio(self, mel_windows: Tensor) -> Tensor:
        """``(B, W, 100)`` log-mel windows -> ``(B, E)``."""
        return self.audio(mel_windows.transpose(1, 2))

    def embed_lips(self, lip_windows: Tensor) -> Tensor:
        """``(B, W, 2 * L)`` lip-feature windows (:func:`lip_features`) -> ``(B, E)``."""
        return self.lips(lip_windows.transpose(1, 2))

    def forward(self, lip_windows: Tensor, mel_windows: Tensor) -> tuple[Tensor, Tensor]:
        """``((B, E) lip embeddings, (B2, E) audio embeddings)``: one call, so DDP sees every parameter used."""
        return self.embed_lips(lip_windows), self.embed_audio(mel_windows)

    def distance(self, mel_windows: Tensor, lip_windows: Tensor) -> Tensor:
        """``(B,)`` ``1 - cos`` of each audio window against its lip window."""
        return 1.0 - (self.embed_audio(mel_windows) * self.embed_lips(lip_windows)).sum(dim=-1)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
