"""A conditional normalizing flow over one frame's motion latent: affine coupling layers on a standard normal base.

Tensor legend:

* ``B`` batch (any leading shape ``...`` works), ``D`` latent size (``latent_dim``), ``H`` conditioning size;
* ``m (..., D)``: a motion latent (data side), ``z (..., D)``: the base side, ``h (..., H)``: the condition
  (the prior GRU's state of that frame);
* ``logdet (...)``: ``log |det dz/dm|`` of :meth:`ConditionalFlow.forward`.

Each coupling layer splits ``x`` into ``xa`` (the first ``D // 2`` entries) and ``xb``; an MLP of
``[xa, h]`` gives ``s, t`` and ``yb = xb * exp(s) + t`` (``s = s_max * tanh(.)``, bounded for stability),
then the halves are reversed so the next layer moves the other half. ``log p(m | h) =
log N(z; 0, I) + logdet``; sampling draws ``z`` (times a temperature) and runs :meth:`inverse`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

LOG_2PI = math.log(2.0 * math.pi)


class AffineCoupling(nn.Module):
    """One coupling layer ``(x, h) -> (y, logdet)`` and its exact inverse."""

    def __init__(self, dim: int, cond_dim: int, hidden: int, s_max: float) -> None:
        super().__init__()
        self.na = dim // 2
        self.nb = dim - self.na
        self.s_max = s_max
        self.net = nn.Sequential(nn.Linear(self.na + cond_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, 2 * self.nb))
        nn.init.zeros_(self.net[-1].weight)  # starts as the identity map
        nn.init.zeros_(self.net[-1].bias)

    def params(self, xa: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        s, t = self.net(torch.cat([xa, h], dim=-1)).chunk(2, dim=-1)
        return self.s_max * torch.tanh(s / self.s_max), t

    def forward(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        xa, xb = x[..., :self.na], x[..., self.na:]
        s, t = self.params(xa, h)
        y = torch.cat([xa, xb * torch.exp(s) + t], dim=-1)
        return y.flip(-1), s.sum(dim=-1)

    def inverse(self, y: Tensor, h: Tensor) -> Tensor:
        y = y.flip(-1)
        ya, yb = y[..., :self.na], y[..., self.na:]
        s, t = self.params(ya, h)
        return torch.cat([ya, (yb - t) * torch.exp(-s)], dim=-1)


class ConditionalFlow(nn.Module):
    """``layers`` affine couplings: :meth:`forward` ``m -> z``, :meth:`inverse` ``z -> m``, :meth:`log_prob`."""

    def __init__(self, dim: int, cond_dim: int, hidden: int, layers: int, s_max: float = 2.0) -> None:
        super().__init__()
        if dim < 2:
            raise ValueError("the flow needs a latent of at least 2 dimensions")
        self.dim = dim
        self.layers = nn.ModuleList(AffineCoupling(dim, cond_dim, hidden, s_max) for _ in range(layers))

    def forward(self, m: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """``(z (..., D), logdet (...))``: ``z = f(m; h)`` and ``log |det dz/dm|``."""
        logdet = torch.zeros(m.shape[:-1], dtype=m.dtype, device=m.device)
        x = m
        for layer in self.layers:
            x, ld = layer(x, h)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, z: Tensor, h: Tensor) -> Tensor:
        """``m = f^{-1}(z; h)`` (``z = 0``: the flow's deterministic path)."""
        x = z
        for layer in reversed(self.layers):
            x = layer.inverse(x, h)
        return x

    def log_prob(self, m: Tensor, h: Tensor) -> Tensor:
        """``(...)`` ``log p(m | h)`` in nats: standard normal base plus the log-determinant."""
        z, logdet = self(m, h)
        return -0.5 * (z.pow(2) + LOG_2PI).sum(dim=-1) + logdet
