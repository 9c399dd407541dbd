"""Text embedding: token embedding + sinusoidal positions + ConvNeXt-V2 blocks (F5-TTS style).

Tensor legend:

* ``B`` batch, ``N`` frames at 93.75 Hz, ``Dt`` text embedding dim;
* ``text`` (B, N) int64 token ids, already padded with the filler id 0 to the frame length N
  (the text is not aligned to frames: the ConvNeXt stack and attention learn the alignment);
* ``mask`` (B, N) bool key padding mask, True on valid frames. Filler tokens inside the valid
  length are real inputs (they embed to the filler vector); frames past the valid length are
  zeroed before every convolution and in the output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.dit.modules import embed_sinusoidal, zero_padding


class GlobalResponseNorm(nn.Module):
    """ConvNeXt-V2 GRN over the time axis of (B, N, C): ``x + gamma * x * Nx + beta``.

    ``Nx`` is each channel's L2 norm over frames divided by the channel mean of those norms.
    Padded frames must be zero on entry (they then add nothing to the norm).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, channels))
        self.beta = nn.Parameter(torch.zeros(1, 1, channels))

    def forward(self, x: Tensor) -> Tensor:
        gx = torch.norm(x, p=2, dim=1, keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


class ConvNeXtV2Block(nn.Module):
    """Depthwise conv (kernel in frames) -> LayerNorm -> Linear -> GELU -> GRN -> Linear, residual."""

    def __init__(self, dim: int, hidden: int, kernel: int = 7) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pw1 = nn.Linear(dim, hidden)
        self.grn = GlobalResponseNorm(hidden)
        self.pw2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        h = self.dwconv(zero_padding(x, mask).transpose(1, 2)).transpose(1, 2)
        h = F.gelu(self.pw1(self.norm(h)))
        h = self.pw2(self.grn(zero_padding(h, mask)))
        return zero_padding(x + h, mask)


class TextEmbedding(nn.Module):
    """Token ids (B, N) -> per-frame text features (B, N, Dt)."""

    def __init__(self, vocab_size: int, dim: int, conv_layers: int = 4, kernel: int = 7, ffn_mult: int = 2,
                 max_positions: int = 4096) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.dim = dim
        self.tokens = nn.Embedding(vocab_size, dim)
        self.register_buffer("positions", embed_sinusoidal(torch.arange(max_positions), dim), persistent=False)
        self.blocks = nn.ModuleList(ConvNeXtV2Block(dim, ffn_mult * dim, kernel) for _ in range(conv_layers))

    def sinusoidal_positions(self, n: int, device: torch.device) -> Tensor:
        """(N, Dt) position features; computed on the fly past the precomputed table."""
        if n <= self.positions.shape[0]:
            return self.positions[:n]
        return embed_sinusoidal(torch.arange(n, device=device), self.dim)

    def forward(self, text: Tensor, mask: Tensor | None = None) -> Tensor:
        if text.min() < 0 or text.max() >= self.vocab_size:
            raise ValueError(f"text ids must be in [0, {self.vocab_size}), got [{int(text.min())}, {int(text.max())}]")
        x = self.tokens(text) + self.sinusoidal_positions(text.shape[1], text.device).to(self.tokens.weight.dtype)
        x = zero_padding(x, mask)
        for block in self.blocks:
            x = block(x, mask)
        return x
