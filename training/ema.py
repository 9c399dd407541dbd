"""Exponential moving average (EMA) of a model's weights.

After every optimizer step ``ema = decay * ema + (1 - decay) * weights`` for each floating-point
parameter and buffer; before ``start_step`` the EMA just copies the weights (so an early
random init does not linger in it). The EMA is kept as a full copy of the (unwrapped) model,
``EMA.module``, in eval mode with ``requires_grad`` off, so it can be saved and sampled from
directly. Integer buffers are copied, never averaged.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel / DataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else model


class EMA:
    """EMA of ``model``'s weights with ``decay`` per optimizer step, starting at ``start_step``."""

    def __init__(self, model: nn.Module, decay: float = 0.9999, start_step: int = 0) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.start_step = start_step
        self.num_updates = 0  # optimizer steps folded in so far
        self.module = copy.deepcopy(unwrap_model(model)).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Fold the weights after optimizer step ``step`` (1-based) into the average."""
        src = unwrap_model(model)
        copy_only = step < self.start_step
        ema_floats, src_floats = [], []
        for e, s in zip(self.module.state_dict().values(), src.state_dict().values(), strict=True):
            if not torch.is_floating_point(e) or copy_only:
                e.copy_(s)
            else:
                ema_floats.append(e)
                src_floats.append(s.to(e.dtype))
        if ema_floats:
            torch._foreach_lerp_(ema_floats, src_floats, 1.0 - self.decay)
        self.num_updates += 1

    def state_dict(self) -> dict[str, Any]:
        """Bookkeeping only; the weights are saved separately (``ema.safetensors``)."""
        return {"decay": self.decay, "start_step": self.start_step, "num_updates": self.num_updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.num_updates = int(state.get("num_updates", 0))
