"""Audio-visual fusion blocks: MM-attention (OmniTalker) and the paper's ablation variants.

Tensor legend:

* ``B`` batch, ``N`` frames at 93.75 Hz, ``D`` model dim, ``H`` heads, ``Dh = D / H``;
* ``a`` audio stream (B, N, D), ``v`` visual stream (B, N, D), ``temb`` timestep embedding (B, D);
* ``mask`` (B, N) bool key padding mask, True on valid frames (the two streams share it);
* ``rope`` = ``cos, sin`` (N, Dh) for frame positions ``0 .. N-1``.

Every block keeps separate per-modality weights (a :class:`BranchLayer` each: AdaLN-zero,
QKV, output projection, FFN, norms) and differs only in how the streams meet:

* ``mm_attention`` -- one joint attention over the 2N tokens ``[a; v]``; the audio and visual
  token of frame i both get RoPE position i, so relative positions are frame offsets across
  modalities too;
* ``add`` -- each stream's self-attention reads the sum of both streams' modulated inputs;
* ``linear`` -- each stream's self-attention reads a linear map of the concatenated modulated
  inputs ``[own; other]`` (2D -> D);
* ``cross_attention`` -- per-stream self-attention, then cross-attention from each stream to
  the other (zero-initialised output), then the FFN.

All blocks map ``(a, v) -> (a, v)`` with the same signature, so the ablation is a config switch.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from model.dit.modules import BranchLayer, apply_rotary, attend, merge_heads, split_heads

Rope = tuple[Tensor, Tensor]


class MMAttentionBlock(nn.Module):
    """Joint (multi-modal) attention over the concatenated audio and visual tokens (length 2N)."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.audio = BranchLayer(dim, heads, ffn_dim, dropout)
        self.visual = BranchLayer(dim, heads, ffn_dim, dropout)
        self.attn_dropout = dropout

    def forward(self, a: Tensor, v: Tensor, temb: Tensor, mask: Tensor | None, rope: Rope) -> tuple[Tensor, Tensor]:
        n = a.shape[1]
        h_a, mods_a = self.audio.pre_attention(a, temb)
        h_v, mods_v = self.visual.pre_attention(v, temb)
        qa, ka, va = self.audio.project_qkv(h_a, *rope)
        qv, kv, vv = self.visual.project_qkv(h_v, *rope)
        joint_mask = None if mask is None else torch.cat([mask, mask], dim=1)
        out = attend(torch.cat([qa, qv], dim=2), torch.cat([ka, kv], dim=2), torch.cat([va, vv], dim=2),
                     joint_mask, self.attn_dropout if self.training else 0.0)
        out = merge_heads(out)
        a = self.audio.post_attention(a, out[:, :n], mods_a, mask)
        v = self.visual.post_attention(v, out[:, n:], mods_v, mask)
        return a, v


class _MixedInputBlock(nn.Module):
    """Per-stream self-attention whose input mixes both streams (base of ``add`` and ``linear``)."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.audio = BranchLayer(dim, heads, ffn_dim, dropout)
        self.visual = BranchLayer(dim, heads, ffn_dim, dropout)
        self.attn_dropout = dropout

    def mix(self, h_a: Tensor, h_v: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def forward(self, a: Tensor, v: Tensor, temb: Tensor, mask: Tensor | None, rope: Rope) -> tuple[Tensor, Tensor]:
        h_a, mods_a = self.audio.pre_attention(a, temb)
        h_v, mods_v = self.visual.pre_attention(v, temb)
        in_a, in_v = self.mix(h_a, h_v)
        p = self.attn_dropout if self.training else 0.0
        out_a = merge_heads(attend(*self.audio.project_qkv(in_a, *rope), mask, p))
        out_v = merge_heads(attend(*self.visual.project_qkv(in_v, *rope), mask, p))
        return (self.audio.post_attention(a, out_a, mods_a, mask),
                self.visual.post_attention(v, out_v, mods_v, mask))


class AddFusionBlock(_MixedInputBlock):
    """Both streams' self-attention read ``h_a + h_v`` (the modulated, normalised inputs)."""

    def mix(self, h_a: Tensor, h_v: Tensor) -> tuple[Tensor, Tensor]:
        fused = h_a + h_v
        return fused, fused


class LinearFusionBlock(_MixedInputBlock):
    """Each stream's self-attention reads ``Linear([own; other])`` (2D -> D, per stream)."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float = 0.0) -> None:
        super().__init__(dim, heads, ffn_dim, dropout)
        self.mix_audio = nn.Linear(2 * dim, dim)
        self.mix_visual = nn.Linear(2 * dim, dim)

    def mix(self, h_a: Tensor, h_v: Tensor) -> tuple[Tensor, Tensor]:
        return self.mix_audio(torch.cat([h_a, h_v], -1)), self.mix_visual(torch.cat([h_v, h_a], -1))


class CrossAttention(nn.Module):
    """Queries from one stream, keys / values from the other, RoPE on both (same frame positions).

    The output projection starts at zero, so the cross term begins switched off.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm_q = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.norm_kv = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, other: Tensor, mask: Tensor | None, rope: Rope, dropout: float) -> Tensor:
        q = apply_rotary(split_heads(self.q(self.norm_q(x)), self.heads), *rope)
        k, v = (split_heads(p, self.heads) for p in self.kv(self.norm_kv(other)).chunk(2, dim=-1))
        return self.out(merge_heads(attend(q, apply_rotary(k, *rope), v, mask, dropout)))


class CrossAttentionBlock(nn.Module):
    """Self-attention per stream, then each stream cross-attends to the other, then the FFNs."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.audio = BranchLayer(dim, heads, ffn_dim, dropout)
        self.visual = BranchLayer(dim, heads, ffn_dim, dropout)
        self.cross_audio = CrossAttention(dim, heads)
        self.cross_visual = CrossAttention(dim, heads)
        self.attn_dropout = dropout

    def forward(self, a: Tensor, v: Tensor, temb: Tensor, mask: Tensor | None, rope: Rope) -> tuple[Tensor, Tensor]:
        p = self.attn_dropout if self.training else 0.0
        h_a, mods_a = self.audio.pre_attention(a, temb)
        h_v, mods_v = self.visual.pre_attention(v, temb)
        a = self.audio.add_attention(a, merge_heads(attend(*self.audio.project_qkv(h_a, *rope), mask, p)), mods_a)
        v = self.visual.add_attention(v, merge_heads(attend(*self.visual.project_qkv(h_v, *rope), mask, p)), mods_v)
        a, v = a + self.cross_audio(a, v, mask, rope, p), v + self.cross_visual(v, a, mask, rope, p)
        return self.audio.add_ffn(a, mods_a, mask), self.visual.add_ffn(v, mods_v, mask)


FUSION_BLOCKS: dict[str, type[nn.Module]] = {
    "mm_attention": MMAttentionBlock,
    "add": AddFusionBlock,
    "linear": LinearFusionBlock,
    "cross_attention": CrossAttentionBlock,
}


def build_fusion_block(kind: str, dim: int, heads: int, ffn_dim: int, dropout: float = 0.0) -> nn.Module:
    """One fusion block of type ``kind`` (see :data:`FUSION_BLOCKS`)."""
    try:
        cls = FUSION_BLOCKS[kind]
    except KeyError:
        raise ValueError(f"unknown fusion {kind!r}; choose one of {sorted(FUSION_BLOCKS)}") from None
    return cls(dim, heads, ffn_dim, dropout)
