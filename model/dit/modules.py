"""Building blocks of the DiT: timestep embedding, RoPE, masked attention, AdaLN-zero, DiT block.

Tensor legend:

* ``B`` batch, ``N`` frames at 93.75 Hz, ``L`` attention sequence length (``N``, or ``2N`` for
  joint audio-visual attention), ``D`` model dim, ``H`` heads, ``Dh = D / H`` head dim;
* ``mask`` is a key padding mask ``(B, N)`` bool, True on valid frames; padded frames are
  never attended to and their outputs are set to zero, so a sample's valid outputs do not
  depend on how much padding the batch adds.
* ``t`` is the flow-matching time in [0, 1] (0 = noise, 1 = data), ``(B,)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def zero_padding(x: Tensor, mask: Tensor | None) -> Tensor:
    """Zero ``x`` (B, N, ...) on padded frames (``mask`` False)."""
    if mask is None:
        return x
    return x * mask.view(*mask.shape, *([1] * (x.dim() - 2))).to(x.dtype)


def embed_sinusoidal(values: Tensor, dim: int, scale: float = 1.0, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal features ``[sin, cos]`` of ``values`` (any shape) -> ``(*values.shape, dim)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=values.device, dtype=torch.float32) / half)
    args = scale * values.float().unsqueeze(-1) * freqs
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


class TimestepEmbedding(nn.Module):
    """Flow time ``t`` (B,) in [0, 1] -> (B, D): sinusoid of ``1000 t`` then a SiLU MLP."""

    def __init__(self, dim: int, freq_dim: int = 256) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(embed_sinusoidal(t, self.freq_dim, scale=1000.0).to(self.mlp[0].weight.dtype))


class RotaryEmbedding(nn.Module):
    """Rotary position embedding on the full head dim; positions are frame indices (B or 1, L)."""

    def __init__(self, head_dim: int, theta: float = 10000.0) -> None:
        super().__init__()
        inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """Frame positions (L,) -> ``cos, sin`` each (L, Dh)."""
        angles = positions.float().unsqueeze(-1) * self.inv_freq.to(positions.device)
        angles = torch.cat([angles, angles], dim=-1)
        return angles.cos(), angles.sin()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x`` (B, H, L, Dh) by the angles of ``cos, sin`` (L, Dh) (rotate-half convention)."""
    first, second = x.chunk(2, dim=-1)
    rotated = torch.cat([-second, first], dim=-1)
    return (x.float() * cos + rotated.float() * sin).to(x.dtype)


def split_heads(x: Tensor, heads: int) -> Tensor:
    """(B, L, D) -> (B, H, L, Dh)."""
    b, n, d = x.shape
    return x.view(b, n, heads, d // heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """(B, H, L, Dh) -> (B, L, D)."""
    b, h, n, dh = x.shape
    return x.transpose(1, 2).reshape(b, n, h * dh)


def attend(q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None, dropout: float = 0.0) -> Tensor:
    """Scaled dot-product attention; ``q`` (B, H, Lq, Dh), ``k, v`` (B, H, Lk, Dh), ``key_mask`` (B, Lk).

    Keys with ``key_mask`` False get zero weight. Every row must have at least one valid key
    (true whenever a sample has one valid frame).
    """
    attn_mask = None if key_mask is None else key_mask[:, None, None, :]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout)


class FeedForward(nn.Module):
    """Position-wise MLP D -> ffn_dim -> D with tanh-GELU (as in DiT / F5-TTS)."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Dropout(dropout),
                                 nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class AdaLNZero(nn.Module):
    """Timestep-conditioned modulation: (B, D) -> ``chunks`` tensors (B, 1, D).

    The projection starts at zero, so every gate is 0 and each residual block begins as the
    identity (DiT's adaLN-zero).
    """

    def __init__(self, dim: int, chunks: int = 6) -> None:
        super().__init__()
        self.chunks = chunks
        self.proj = nn.Linear(dim, chunks * dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, temb: Tensor) -> tuple[Tensor, ...]:
        return tuple(c.unsqueeze(1) for c in self.proj(F.silu(temb)).chunk(self.chunks, dim=-1))


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """AdaLN: ``x * (1 + scale) + shift`` with (B, 1, D) shift / scale."""
    return x * (1 + scale) + shift


class BranchLayer(nn.Module):
    """The per-modality weights of one transformer block: AdaLN-zero, QKV, output projection, FFN.

    A fusion block holds one ``BranchLayer`` per modality so audio and visual never share
    weights; the block decides what the attention sees.
    """

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads = heads
        self.ada = AdaLNZero(dim, 6)
        self.norm_attn = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm_ffn = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ffn = FeedForward(dim, ffn_dim, dropout)
        self.dropout = nn.Dropout(dropout)

    def pre_attention(self, x: Tensor, temb: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Modulated attention input (B, N, D) and the six modulation tensors."""
        mods = self.ada(temb)
        return modulate(self.norm_attn(x), mods[0], mods[1]), mods

    def project_qkv(self, h: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, N, D) -> q, k, v (B, H, N, Dh), RoPE applied to q and k."""
        q, k, v = (split_heads(p, self.heads) for p in self.qkv(h).chunk(3, dim=-1))
        return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), v

    def add_attention(self, x: Tensor, attn: Tensor, mods: tuple[Tensor, ...]) -> Tensor:
        """Gated residual of the merged attention output ``attn`` (B, N, D)."""
        return x + mods[2] * self.dropout(self.out(attn))

    def add_ffn(self, x: Tensor, mods: tuple[Tensor, ...], mask: Tensor | None) -> Tensor:
        """Gated FFN residual; padded frames are zeroed."""
        _, _, _, shift_ffn, scale_ffn, gate_ffn = mods
        x = x + gate_ffn * self.dropout(self.ffn(modulate(self.norm_ffn(x), shift_ffn, scale_ffn)))
        return zero_padding(x, mask)

    def post_attention(self, x: Tensor, attn: Tensor, mods: tuple[Tensor, ...], mask: Tensor | None) -> Tensor:
        """Gated residual of the attention output (B, N, D), then the gated FFN residual."""
        return self.add_ffn(self.add_attention(x, attn, mods), mods, mask)


class DiTBlock(nn.Module):
    """Single-modality DiT block: AdaLN-zero self-attention with RoPE + FFN. (B, N, D) -> (B, N, D)."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.layer = BranchLayer(dim, heads, ffn_dim, dropout)
        self.attn_dropout = dropout

    def forward(self, x: Tensor, temb: Tensor, mask: Tensor | None, rope: tuple[Tensor, Tensor]) -> Tensor:
        h, mods = self.layer.pre_attention(x, temb)
        q, k, v = self.layer.project_qkv(h, *rope)
        attn = attend(q, k, v, mask, self.attn_dropout if self.training else 0.0)
        return self.layer.post_attention(x, merge_heads(attn), mods, mask)


class AdaLNFinal(nn.Module):
    """Final AdaLN (shift, scale from the timestep) + linear head D -> out_dim, zero-initialised."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.ada = AdaLNZero(dim, 2)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.head = nn.Linear(dim, out_dim)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        shift, scale = self.ada(temb)
        return self.head(modulate(self.norm(x), shift, scale))


class ConvPositionEmbedding(nn.Module):
    """Convolutional position embedding: two grouped conv1d (kernel in frames) with Mish, residual.

    (B, N, D) -> (B, N, D). Padded frames are zeroed before each convolution so they act like
    the convolution's own zero padding.
    """

    def __init__(self, dim: int, kernel: int = 31, groups: int = 16) -> None:
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError("conv position kernel must be odd")
        self.conv1 = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=groups)
        self.conv2 = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=groups)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        h = zero_padding(x, mask).transpose(1, 2)
        h = F.mish(self.conv1(h))
        h = zero_padding(h.transpose(1, 2), mask).transpose(1, 2)
        h = F.mish(self.conv2(h)).transpose(1, 2)
        return zero_padding(x + h, mask)
