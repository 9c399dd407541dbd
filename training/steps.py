"""What every trainer's loop shares: one optimizer step, and the running means between two metrics rows.

Used by the lip-sync (``training/sync_loop.py``), StyleTalker (``training/styletalker_loop.py``) and warp-GAN
renderer (``training/renderer_loop.py``) loops; each keeps its own batches, losses, validation and checkpoint
contents.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor, nn


def take_optimizer_step(module: nn.Module, loss: Tensor, opt: torch.optim.Optimizer, sched: Any | None,
                        clip_norm: float | None) -> float:
    """Backward ``loss``, clip ``module``'s gradients to ``clip_norm`` (None or 0: no clipping), step the
    optimizer and the scheduler (when given). Returns the gradient norm before clipping."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(module.parameters(), clip_norm or float("inf"))
    opt.step()
    if sched is not None:
        sched.step()
    return float(grad_norm)


def is_step_due(step: int, every: int, max_steps: int) -> bool:
    """Whether a periodic action (a metrics row, a checkpoint, a validation) runs at ``step``: every ``every``
    steps and at the last."""
    return step % every == 0 or step == max_steps


class MetricWindow:
    """Sums of a loop's scalar metrics since the last row; :meth:`row` gives their means and starts anew.

    ``rate_name`` is the throughput column (``"windows_per_s"``, ``"frames_per_s"``): the ``items`` passed
    to :meth:`add` per second of wall time since the last row.
    """

    def __init__(self, rate_name: str) -> None:
        self.rate_name = rate_name
        self.t_start = self.t_last = time.perf_counter()
        self.sums: dict[str, float] = {}
        self.steps = 0
        self.items = 0

    def add(self, values: dict[str, float | Tensor], items: int) -> None:
        """One step's scalars (tensors are detached) and how many windows or frames it trained on."""
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v.detach() if isinstance(v, Tensor) else v)
        self.steps += 1
        self.items += items

    def row(self, step: int, lr: float, grad_norm: float, world_size: int, **extra: Any) -> dict[str, Any]:
        """``{"step", <means>, "lr", "grad_norm", rate_name, "world_size", "elapsed_s", **extra}``; resets."""
        now = time.perf_counter()
        row: dict[str, Any] = {"step": step, **{k: v / max(self.steps, 1) for k, v in self.sums.items()},
                               "lr": lr, "grad_norm": float(grad_norm),
                               self.rate_name: self.items / max(now - self.t_last, 1e-9),
                               "world_size": world_size, "elapsed_s": now - self.t_start, **extra}
        self.sums, self.steps, self.items, self.t_last = {}, 0, 0, now
        return row
