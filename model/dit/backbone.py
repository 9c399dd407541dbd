"""OmniTalker dual-branch DiT: predicts the flow velocity of the mel and the visual codes jointly.

Tensor legend:

* ``B`` batch, ``N`` frames at 93.75 Hz, ``D`` model dim, ``Dt`` text dim,
  ``C_mel = 100`` log-mel bins, ``C_code = 61`` visual codes;
* ``x_mel`` (B, N, C_mel), ``x_code`` (B, N, C_code): noisy samples x_t on the flow path;
* ``cond_mel`` (B, N, C_mel), ``cond_code`` (B, N, C_code): the reference, i.e. the clean
  frames outside the span to generate and zeros inside it;
* ``text`` (B, N) int64 ids padded with the filler id 0 to N; ``t`` (B,) flow time in [0, 1];
* ``mask`` (B, N) bool key padding mask, True on valid frames (None = all valid);
* ``drop_text`` / ``drop_audio`` / ``drop_visual`` (B,) bool: zero that condition for the
  sample (classifier-free guidance); None = keep it.

Input embedding (F5-TTS style, one per stream, decided here): the text features are joined
to *both* streams per frame, ``audio_in = Linear([x_mel; cond_mel; text]) -> D`` and
``visual_in = Linear([x_code; cond_code; text]) -> D``, each followed by its own convolutional
position embedding (grouped conv1d, kernel 31 frames, Mish, residual). The two streams then
pass ``fusion_depth`` fusion blocks (type ``dit.fusion``), ``audio_depth`` audio-only and
``visual_depth`` visual-only DiT blocks, and an AdaLN + linear head each (D -> C_mel, D -> C_code).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from model.dit.config import DiTConfig
from model.dit.fusion import build_fusion_block
from model.dit.modules import (
    AdaLNFinal,
    ConvPositionEmbedding,
    DiTBlock,
    RotaryEmbedding,
    TimestepEmbedding,
    zero_padding,
)
from model.dit.text_embedding import TextEmbedding


def drop_condition(x: Tensor, drop: Tensor | None) -> Tensor:
    """Zero ``x`` (B, ...) for the samples where ``drop`` (B,) bool is True."""
    if drop is None:
        return x
    keep = (~drop.bool()).to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
    return x * keep


class StreamInputEmbedding(nn.Module):
    """``Linear([x; cond; text]) -> D`` then the convolutional position embedding. (B, N, ·) -> (B, N, D)."""

    def __init__(self, feat_dim: int, text_dim: int, dim: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.proj = nn.Linear(2 * feat_dim + text_dim, dim)
        self.conv_pos = ConvPositionEmbedding(dim, kernel, groups)

    def forward(self, x: Tensor, cond: Tensor, text_emb: Tensor, mask: Tensor | None) -> Tensor:
        return self.conv_pos(self.proj(torch.cat([x, cond, text_emb], dim=-1)), mask)


class OmniTalkerDiT(nn.Module):
    """Velocity network ``v(x_t, cond, text, t) -> (v_mel, v_code)``; outputs are zero on padding."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.time_embed = TimestepEmbedding(d, cfg.time_freq_dim)
        self.text_embed = TextEmbedding(cfg.vocab_size, cfg.text_dim, cfg.text_conv_layers, cfg.text_conv_kernel,
                                        cfg.text_ffn_mult)
        self.audio_in = StreamInputEmbedding(cfg.mel_dim, cfg.text_dim, d, cfg.conv_pos_kernel, cfg.conv_pos_groups)
        self.visual_in = StreamInputEmbedding(cfg.code_dim, cfg.text_dim, d, cfg.conv_pos_kernel, cfg.conv_pos_groups)
        self.rotary = RotaryEmbedding(d // cfg.heads, cfg.rope_theta)
        self.fusion_blocks = nn.ModuleList(
            build_fusion_block(cfg.fusion, d, cfg.heads, cfg.ffn_dim, cfg.dropout) for _ in range(cfg.fusion_depth))
        self.audio_blocks = nn.ModuleList(
            DiTBlock(d, cfg.heads, cfg.ffn_dim, cfg.dropout) for _ in range(cfg.audio_depth))
        self.visual_blocks = nn.ModuleList(
            DiTBlock(d, cfg.heads, cfg.ffn_dim, cfg.dropout) for _ in range(cfg.visual_depth))
        self.audio_out = AdaLNFinal(d, cfg.mel_dim)
        self.visual_out = AdaLNFinal(d, cfg.code_dim)

    def forward(self, x_mel: Tensor, x_code: Tensor, cond_mel: Tensor, cond_code: Tensor, text: Tensor, t: Tensor,
                mask: Tensor | None = None, drop_text: Tensor | None = None, drop_audio: Tensor | None = None,
                drop_visual: Tensor | None = None) -> tuple[Tensor, Tensor]:
        b, n, _ = x_mel.shape
        if x_code.shape[:2] != (b, n) or text.shape != (b, n):
            raise ValueError(f"x_code {tuple(x_code.shape)} and text {tuple(text.shape)} must match x_mel's (B, N) = {(b, n)}")
        if t.dim() == 0:
            t = t.expand(b)
        if mask is not None:
            text = text * mask.long()
        temb = self.time_embed(t)
        text_emb = drop_condition(self.text_embed(text, mask), drop_text)
        cond_mel = drop_condition(cond_mel, drop_audio)
        cond_code = drop_condition(cond_code, drop_visual)
        a = self.audio_in(zero_padding(x_mel, mask), zero_padding(cond_mel, mask), text_emb, mask)
        v = self.visual_in(zero_padding(x_code, mask), zero_padding(cond_code, mask), text_emb, mask)
        rope = self.rotary(torch.arange(n, device=x_mel.device))
        for block in self.fusion_blocks:
            a, v = block(a, v, temb, mask, rope)
        for block in self.audio_blocks:
            a = block(a, temb, mask, rope)
        for block in self.visual_blocks:
            v = block(v, temb, mask, rope)
        return zero_padding(self.audio_out(a, temb), mask), zero_padding(self.visual_out(v, temb), mask)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (works on the meta device: only shapes are read)."""
    return sum(p.numel() for p in module.parameters())


def build_on_meta(cfg: DiTConfig) -> OmniTalkerDiT:
    """Build the model on ``torch.device("meta")``: shapes only, no parameter memory."""
    with torch.device("meta"):
        return OmniTalkerDiT(cfg)
