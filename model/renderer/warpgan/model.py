"""The learned warp-GAN renderer (paper Appendix A.2, LivePortrait-style): source image + codes -> image.

Tensor legend:

* ``B`` batch, ``S`` image side in pixels (``WarpGanConfig.image_size``; square crops),
* ``C_code = 61`` visual codes (``shards.codes``), relative to the image they go with
  (tx, ty: fractions of its width / height; see ``keypoints.codes_to_crop``),
* ``K`` keypoints (``keypoints.REGION_INDICES`` of ``WarpGanConfig.regions``), ``(B, K, 3)``,
* level ``i`` appearance features ``(B, C_i, S/2**i, S/2**i)``, ``i = 1..num_down``,
* images ``(B, 3, S, S)`` float in [0, 1].

``forward(source_img, source_codes, driving_codes)``:

1. appearance pyramid of the source (``appearance.py``);
2. keypoints of both code sets through the shared face model (``keypoints.py``);
3. dense flow + occlusion from the keypoints at the coarsest level (``warping.py``);
4. every level warped, decoded by the U-Net decoder, FiLM-conditioned on the driving
   expression and eye codes (``generator.py``).

Configs: :func:`tiny_config` (64 px, CPU tests) and :func:`paper_config` (512 px).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from model.renderer.warpgan.appearance import AppearanceExtractor, level_channels
from model.renderer.warpgan.generator import UNetDecoder
from model.renderer.warpgan.keypoints import FaceKeypoints
from model.renderer.warpgan.warping import DenseMotion, warp_features
from shards.codes import EXPRESSION_SLICE, EYE_SLICE


@dataclass
class WarpGanConfig:
    """Architecture of :class:`WarpGanRenderer`."""

    image_size: int = 512  # S: output and source side, pixels (square)
    base_channels: int = 64  # stem channels; level i has min(base * 2**i, max_channels)
    max_channels: int = 256  # channel cap of the appearance pyramid
    num_down: int = 3  # appearance levels; the flow is estimated at S / 2**num_down
    num_res_blocks: int = 6  # residual blocks at the coarsest level (extractor and decoder each)
    motion_channels: int = 64  # base channels of the dense-motion U-Net
    motion_max_channels: int = 512  # channel cap of the dense-motion U-Net
    motion_depth: int = 4  # stride-2 levels of the dense-motion U-Net
    kp_sigma: float = 0.1  # std of the keypoint heatmaps, grid units (2 = image width)
    regions: list[str] = field(default_factory=lambda: ["eyes", "brows", "mouth", "contour", "nose"])
    code_conditioning: bool = True  # FiLM the decoder bottleneck with the driving expression + eye codes
    basis_path: str | None = None  # face basis .npz; None = blendshape_fit/assets/basis_v1.npz

    def __post_init__(self) -> None:
        if self.image_size % (2 ** self.num_down):
            raise ValueError(f"image_size {self.image_size} must be divisible by 2**num_down = {2 ** self.num_down}")
        if self.num_down < 1:
            raise ValueError("num_down must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def tiny_config() -> WarpGanConfig:
    """64 px, a few hundred thousand parameters: CPU tests and smoke runs."""
    return WarpGanConfig(image_size=64, base_channels=16, max_channels=64, num_down=2, num_res_blocks=2,
                         motion_channels=16, motion_max_channels=64, motion_depth=2)


def paper_config() -> WarpGanConfig:
    """512 px, flow at 64 x 64 (LivePortrait's resolution)."""
    return WarpGanConfig()


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class WarpGanRenderer(nn.Module):
    """``forward(source_img (B,3,S,S), source_codes (B,61), driving_codes (B,61)) -> (B,3,S,S)``."""

    def __init__(self, cfg: WarpGanConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.keypoints = FaceKeypoints(tuple(cfg.regions), basis_path=cfg.basis_path)
        self.appearance = AppearanceExtractor(cfg.base_channels, cfg.max_channels, cfg.num_down, cfg.num_res_blocks)
        chans = level_channels(cfg.base_channels, cfg.max_channels, cfg.num_down)
        self.motion = DenseMotion(self.keypoints.num_keypoints, cfg.motion_channels, cfg.motion_max_channels,
                                  cfg.motion_depth, cfg.kp_sigma)
        self.decoder = UNetDecoder(chans, cfg.base_channels, cfg.num_res_blocks, cfg.code_conditioning)

    def encode_source(self, source_img: Tensor) -> list[Tensor]:
        """The appearance pyramid of the source (reusable across driving frames)."""
        return self.appearance(source_img)

    def render_from_features(self, source_img: Tensor, feats: list[Tensor], source_codes: Tensor,
                             driving_codes: Tensor, aspect: float = 1.0) -> dict[str, Tensor]:
        """Warp precomputed source features to the driving codes; returns image, flow, occlusion, keypoints."""
        kp_s = self.keypoints(source_codes, aspect)
        kp_d = self.keypoints(driving_codes, aspect)
        size = tuple(feats[-1].shape[-2:])
        flow, occlusion, _ = self.motion(source_img, kp_s, kp_d, size)
        warped = [warp_features(f, flow, occlusion) for f in feats]
        expr = torch.cat([driving_codes[:, EXPRESSION_SLICE], driving_codes[:, EYE_SLICE]], dim=-1).float()
        image = self.decoder(warped, expr)
        return {"image": image, "flow": flow, "occlusion": occlusion, "kp_source": kp_s, "kp_driving": kp_d}

    def forward(self, source_img: Tensor, source_codes: Tensor, driving_codes: Tensor) -> Tensor:
        s = self.cfg.image_size
        if tuple(source_img.shape[-2:]) != (s, s):
            raise ValueError(f"source_img must be (B, 3, {s}, {s}), got {tuple(source_img.shape)}")
        feats = self.encode_source(source_img)
        return self.render_from_features(source_img, feats, source_codes, driving_codes)["image"]
