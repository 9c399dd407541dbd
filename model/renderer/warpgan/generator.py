"""Generator: a U-Net-style decoder over the warped appearance pyramid.

Tensor legend: ``B`` batch, ``S`` output side, level ``i`` features ``(B, C_i, S/2**i, S/2**i)``
(``i = 1..n``, as :class:`model.renderer.warpgan.appearance.AppearanceExtractor` makes them),
``E = 55`` driving expression + eye codes (pose-free), output ``(B, 3, S, S)`` in [0, 1].

The coarsest warped level goes through residual blocks, FiLM-modulated by the driving
expression and eye codes (they tell the decoder what the warp cannot: teeth, tongue, eyelids);
each upsampling step concatenates the warped features of the next finer level (the U-Net skip).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.renderer.warpgan.appearance import ConvBlock, ResBlock

N_EXPRESSION_CODES = 55  # 51 blendshapes + 4 eye rotations


class FiLM(nn.Module):
    """``x * (1 + gamma(e)) + beta(e)`` per channel; starts as the identity."""

    def __init__(self, n_codes: int, channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(n_codes, 2 * channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor, codes: Tensor) -> Tensor:
        gamma, beta = self.proj(codes).chunk(2, dim=-1)
        return x * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]


class UNetDecoder(nn.Module):
    """Warped levels [1..n] (+ driving expression codes) -> image (B, 3, S, S)."""

    def __init__(self, level_channels: list[int], base_channels: int, num_res_blocks: int,
                 code_conditioning: bool) -> None:
        super().__init__()
        c_low = level_channels[-1]
        self.res = nn.ModuleList([ResBlock(c_low) for _ in range(num_res_blocks)])
        self.film = nn.ModuleList([FiLM(N_EXPRESSION_CODES, c_low) for _ in range(num_res_blocks)]) \
            if code_conditioning else None
        ups = []
        c_prev = c_low
        for i in range(len(level_channels) - 1, 0, -1):  # up to level i, concatenating level i's skip
            c_skip = level_channels[i - 1]
            ups.append(nn.Sequential(ConvBlock(c_prev + c_skip, c_skip), ConvBlock(c_skip, c_skip)))
            c_prev = c_skip
        self.ups = nn.ModuleList(ups)
        self.final_up = ConvBlock(c_prev, base_channels)  # level 1 -> full resolution
        self.to_rgb = nn.Conv2d(base_channels, 3, 7, 1, 3)

    def forward(self, warped: list[Tensor], expression_codes: Tensor | None = None) -> Tensor:
        x = warped[-1]
        for k, block in enumerate(self.res):
            x = block(x)
            if self.film is not None and expression_codes is not None:
                x = self.film[k](x, expression_codes)
        for j, up in enumerate(self.ups):
            skip = warped[-2 - j]
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = up(torch.cat([x, skip], dim=1))
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return torch.sigmoid(self.to_rgb(self.final_up(x)))
