"""Appearance feature extractor: the source image -> a pyramid of feature maps to be warped.

Tensor legend: ``B`` batch, ``S`` image side (pixels), ``C_i`` channels of pyramid level ``i``;
level ``i`` (1-based) has side ``S / 2**i``. Input images are ``(B, 3, S, S)`` in [0, 1].
"""

from __future__ import annotations

from torch import Tensor, nn


def make_norm(channels: int) -> nn.Module:
    """GroupNorm with up to 8 groups (batch-size independent: pairs come in small batches)."""
    groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


class ConvBlock(nn.Module):
    """conv3x3 -> GroupNorm -> SiLU, with an optional stride."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1), make_norm(c_out), nn.SiLU())

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ResBlock(nn.Module):
    """Two conv blocks with a residual connection (same channels and size)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(ConvBlock(channels, channels), nn.Conv2d(channels, channels, 3, 1, 1),
                                  make_norm(channels))
        self.act = nn.SiLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(x + self.body(x))


def level_channels(base: int, max_channels: int, num_down: int) -> list[int]:
    """Channels of levels 1..num_down: ``min(base * 2**i, max_channels)``."""
    return [min(base * 2 ** i, max_channels) for i in range(1, num_down + 1)]


class AppearanceExtractor(nn.Module):
    """(B, 3, S, S) -> [level 1 (B, C_1, S/2, S/2), ..., level n (B, C_n, S/2**n, S/2**n)]."""

    def __init__(self, base_channels: int, max_channels: int, num_down: int, num_res_blocks: int) -> None:
        super().__init__()
        self.stem = ConvBlock(3, base_channels)
        chans = level_channels(base_channels, max_channels, num_down)
        self.channels = chans
        downs = []
        c_prev = base_channels
        for c in chans:
            downs.append(nn.Sequential(ConvBlock(c_prev, c, stride=2), ConvBlock(c, c)))
            c_prev = c
        self.downs = nn.ModuleList(downs)
        self.res = nn.Sequential(*[ResBlock(chans[-1]) for _ in range(num_res_blocks)])

    def forward(self, image: Tensor) -> list[Tensor]:
        x = self.stem(image * 2 - 1)
        feats = []
        for down in self.downs:
            x = down(x)
            feats.append(x)
        feats[-1] = self.res(feats[-1])
        return feats
