"""Warping-field estimation from source and driving keypoints (FOMM / LivePortrait style).

Tensor legend: ``B`` batch, ``K`` keypoints, ``h, w`` the motion resolution (the coarsest
appearance level), ``M = K + 1`` motions (one per keypoint plus the identity "background").

1. Sparse motions: near driving keypoint ``k`` the source location of a driving pixel ``p`` is
   ``p - kp_d[k] + kp_s[k]`` (a translation per keypoint, x and y); motion 0 is the identity.
2. Hints: a Gaussian heatmap difference ``G(kp_d[k]) - G(kp_s[k])`` per keypoint (depth ``z``
   scales the Gaussian's height: closer points weigh more) and the source image warped by every
   sparse motion.
3. A small U-Net (:class:`Hourglass`) predicts, from the hints, softmax masks over the ``M``
   motions and an occlusion map; the dense flow is ``sum_m mask_m * motion_m``.
4. :func:`warp_features` grid-samples appearance features with the flow (any level: the flow
   is resized) and multiplies by the occlusion map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.renderer.warpgan.appearance import ConvBlock


def make_grid(h: int, w: int, device: torch.device, dtype: torch.dtype = torch.float32) -> Tensor:
    """(h, w, 2) pixel-centre coordinates x, y in grid_sample units [-1, 1] (align_corners=False)."""
    ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) / w * 2 - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1)


def keypoint_heatmaps(kp: Tensor, h: int, w: int, sigma: float) -> Tensor:
    """(B, K, h, w) Gaussians of std ``sigma`` (grid units) at kp[..., :2], height ``exp(-z)`` (closer: taller)."""
    grid = make_grid(h, w, kp.device, kp.dtype)  # (h, w, 2)
    d2 = ((grid[None, None] - kp[:, :, None, None, :2]) ** 2).sum(-1)  # (B, K, h, w)
    height = torch.exp(-kp[..., 2].clamp(-2.0, 2.0))[:, :, None, None]
    return height * torch.exp(-d2 / (2 * sigma * sigma))


def sparse_motions(kp_source: Tensor, kp_driving: Tensor, h: int, w: int) -> Tensor:
    """(B, M, h, w, 2) sampling grids: identity, then ``grid - kp_d[k] + kp_s[k]`` per keypoint."""
    grid = make_grid(h, w, kp_source.device, kp_source.dtype)[None, None]  # (1, 1, h, w, 2)
    shift = (kp_source[..., :2] - kp_driving[..., :2])[:, :, None, None, :]  # (B, K, 1, 1, 2)
    per_kp = grid + shift
    identity = grid.expand(kp_source.shape[0], 1, h, w, 2)
    return torch.cat([identity, per_kp], dim=1)


class Hourglass(nn.Module):
    """A small U-Net: ``depth`` stride-2 encoder blocks, mirrored decoder with skip concatenation."""

    def __init__(self, c_in: int, base: int, max_channels: int, depth: int) -> None:
        super().__init__()
        self.inp = ConvBlock(c_in, base)
        enc, chans = [], [base]
        for i in range(depth):
            c = min(base * 2 ** (i + 1), max_channels)
            enc.append(ConvBlock(chans[-1], c, stride=2))
            chans.append(c)
        self.enc = nn.ModuleList(enc)
        dec = []
        for i in range(depth, 0, -1):
            dec.append(ConvBlock(chans[i] + chans[i - 1], chans[i - 1]))
        self.dec = nn.ModuleList(dec)
        self.out_channels = base

    def forward(self, x: Tensor) -> Tensor:
        x = self.inp(x)
        skips = [x]
        for block in self.enc:
            x = block(x)
            skips.append(x)
        skips.pop()
        for block in self.dec:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return x


class DenseMotion(nn.Module):
    """Source image + keypoints -> dense flow (B, h, w, 2) and occlusion (B, 1, h, w) at motion size h x w."""

    def __init__(self, num_keypoints: int, base_channels: int, max_channels: int, depth: int,
                 kp_sigma: float) -> None:
        super().__init__()
        m = num_keypoints + 1
        self.kp_sigma = kp_sigma
        self.hourglass = Hourglass(m * (1 + 3), base_channels, max_channels, depth)
        self.mask = nn.Conv2d(base_channels, m, 7, 1, 3)
        self.occlusion = nn.Conv2d(base_channels, 1, 7, 1, 3)
        nn.init.zeros_(self.mask.weight)  # start from an even blend of motions
        nn.init.zeros_(self.mask.bias)

    def forward(self, source_image: Tensor, kp_source: Tensor, kp_driving: Tensor, size: tuple[int, int]
                ) -> tuple[Tensor, Tensor, Tensor]:
        """``(flow (B, h, w, 2), occlusion (B, 1, h, w), masks (B, M, h, w))``."""
        b = source_image.shape[0]
        h, w = size
        heat = keypoint_heatmaps(kp_driving, h, w, self.kp_sigma) - keypoint_heatmaps(kp_source, h, w, self.kp_sigma)
        heat = torch.cat([heat.new_zeros(b, 1, h, w), heat], dim=1)  # (B, M, h, w)
        motions = sparse_motions(kp_source, kp_driving, h, w)  # (B, M, h, w, 2)
        m = motions.shape[1]
        small = F.interpolate(source_image, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        small = small[:, None].expand(b, m, 3, h, w).reshape(b * m, 3, h, w)
        deformed = F.grid_sample(small, motions.reshape(b * m, h, w, 2), mode="bilinear",
                                 padding_mode="border", align_corners=False).reshape(b, m * 3, h, w)
        feat = self.hourglass(torch.cat([heat, deformed], dim=1))
        masks = torch.softmax(self.mask(feat), dim=1)  # (B, M, h, w)
        flow = (masks[..., None] * motions).sum(dim=1)  # (B, h, w, 2)
        occlusion = torch.sigmoid(self.occlusion(feat))
        return flow, occlusion, masks


def warp_features(features: Tensor, flow: Tensor, occlusion: Tensor | None = None) -> Tensor:
    """Grid-sample ``features`` (B, C, H, W) at ``flow`` (B, h, w, 2), resized to H x W; times occlusion."""
    size = features.shape[-2:]
    if tuple(flow.shape[1:3]) != tuple(size):
        flow = F.interpolate(flow.permute(0, 3, 1, 2), size=size, mode="bilinear",
                             align_corners=False).permute(0, 2, 3, 1)
    out = F.grid_sample(features, flow, mode="bilinear", padding_mode="border", align_corners=False)
    if occlusion is not None:
        if tuple(occlusion.shape[-2:]) != tuple(size):
            occlusion = F.interpolate(occlusion, size=size, mode="bilinear", align_corners=False)
        out = out * occlusion
    return out
