"""Implicit motion: 3D keypoints of key face regions, projected from the face model driven by codes.

Tensor legend (every file in ``model/renderer/warpgan``):

* ``B`` batch, ``S`` image side in pixels (square crops), ``K`` keypoints,
* ``C_code = 61`` visual codes (``shards.codes``), ``h, w`` a feature map's size,
* images are ``(B, 3, S, S)`` float in [0, 1]; keypoints ``(B, K, 3)``: x, y in grid_sample
  units ([-1, 1] across the image, y down), z relative depth in the same x units (smaller = closer).

The face model is the one ``blendshape_fit`` fits with (``load_face_model``), so fitting and
rendering share one geometry. :class:`FaceKeypoints` is a torch port of
``FaceModel.project`` restricted to the region landmarks (``REGION_INDICES``), so it runs on
the GPU and batches; ``tests/model/test_warpgan.py`` checks it against ``FaceModel.project``.

Codes are relative to the image they drive: tx, ty are fractions of that image's width and
height. :func:`codes_to_crop` re-expresses codes fitted on a full source frame in the frame of
a square crop of it (what the training data feeds the model).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from blendshape_fit.face_model import FaceModel, load_face_model
from shards.codes import DEPTH_INDEX, EXPRESSION_SLICE, EYE_SLICE, ROTATION_SLICE, TRANSLATION_SLICE

# MediaPipe face-mesh landmark indices per region ("left"/"right" are the subject's).
REGION_INDICES: dict[str, tuple[int, ...]] = {
    # corners, upper and lower lid of each eye, plus the iris centres (468 right, 473 left; moved by gaze)
    "eyes": (33, 133, 159, 145, 468, 263, 362, 386, 374, 473),
    "brows": (70, 105, 107, 300, 334, 336),
    # outer lip corners, mid and side points of both lips, inner lip
    "mouth": (61, 291, 0, 17, 37, 267, 84, 314, 13, 14, 78, 308),
    # forehead top, chin, cheeks and jaw line
    "contour": (10, 152, 234, 454, 93, 323, 132, 361, 58, 288, 172, 397, 148, 377),
    "nose": (1, 168),  # tip and bridge: anchors rigid head motion
}
# Outer lip ring: the mouth mask of the mouth-region loss is its (enlarged) bounding box.
OUTER_LIP_INDICES: tuple[int, ...] = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0,
                                      37, 39, 40, 185)


def select_indices(regions: tuple[str, ...]) -> list[int]:
    """Landmark indices of ``regions`` in order, without repeats."""
    unknown = [r for r in regions if r not in REGION_INDICES]
    if unknown:
        raise ValueError(f"unknown keypoint regions {unknown} (known: {sorted(REGION_INDICES)})")
    out: list[int] = []
    for r in regions:
        out.extend(i for i in REGION_INDICES[r] if i not in out)
    return out


def euler_to_matrix_torch(angles: Tensor) -> Tensor:
    """(..., 3, 3) rotations from (..., 3) [pitch, yaw, roll] radians, R = Rz Ry Rx (as blendshape_fit)."""
    cx, cy, cz = torch.cos(angles[..., 0]), torch.cos(angles[..., 1]), torch.cos(angles[..., 2])
    sx, sy, sz = torch.sin(angles[..., 0]), torch.sin(angles[..., 1]), torch.sin(angles[..., 2])
    rows = [cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx,
            sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx,
            -sy, cy * sx, cy * cx]
    return torch.stack(rows, dim=-1).reshape(angles.shape[:-1] + (3, 3))


class FaceKeypoints(nn.Module):
    """codes (B, 61) -> keypoints (B, K, 3) of the region landmarks, in grid_sample units of the image."""

    def __init__(self, regions: tuple[str, ...], face_model: FaceModel | None = None,
                 basis_path: str | None = None) -> None:
        super().__init__()
        fm = face_model if face_model is not None else load_face_model(basis_path)
        self.indices = select_indices(regions)
        lips = list(OUTER_LIP_INDICES)
        # non-persistent buffers: the geometry comes from the basis asset, not from checkpoints
        self.register_buffer("mean", torch.tensor(fm.mean[self.indices], dtype=torch.float32), persistent=False)
        basis = np.concatenate([fm.exp_basis, fm.eye_basis])[:, self.indices]  # (55, K, 3)
        self.register_buffer("basis", torch.tensor(basis, dtype=torch.float32), persistent=False)
        self.register_buffer("lip_mean", torch.tensor(fm.mean[lips], dtype=torch.float32), persistent=False)
        lip_basis = np.concatenate([fm.exp_basis, fm.eye_basis])[:, lips]
        self.register_buffer("lip_basis", torch.tensor(lip_basis, dtype=torch.float32), persistent=False)

    @property
    def num_keypoints(self) -> int:
        return len(self.indices)

    @staticmethod
    def project_points(codes: Tensor, mean: Tensor, basis: Tensor, aspect: float = 1.0) -> Tensor:
        """``FaceModel.project`` on a subset of points: (B, 61) -> (B, P, 3) normalized image coords (x/W, y/H)."""
        coeffs = torch.cat([codes[:, EXPRESSION_SLICE], codes[:, EYE_SLICE]], dim=-1)  # (B, 55)
        shape = mean + torch.einsum("bc,cpk->bpk", coeffs, basis)  # (B, P, 3) cm
        rot = euler_to_matrix_torch(codes[:, ROTATION_SLICE])
        cam = torch.einsum("bij,bpj->bpi", rot, shape)
        scale = torch.exp(-codes[:, DEPTH_INDEX])[:, None]  # image heights per cm
        t = codes[:, TRANSLATION_SLICE]
        x = t[:, 0:1] + scale * cam[..., 0] / aspect
        y = t[:, 1:2] - scale * cam[..., 1]
        z = -scale * cam[..., 2] / aspect
        return torch.stack([x, y, z], dim=-1)

    def forward(self, codes: Tensor, aspect: float = 1.0) -> Tensor:
        """Keypoints (B, K, 3): x, y in [-1, 1] across the image (y down), z in the same units as x."""
        pts = self.project_points(codes.float(), self.mean, self.basis, aspect)
        return torch.stack([pts[..., 0] * 2 - 1, pts[..., 1] * 2 - 1, pts[..., 2] * 2], dim=-1)

    def mouth_mask(self, codes: Tensor, size: int, margin_frac: float = 0.25, aspect: float = 1.0) -> Tensor:
        """(B, 1, size, size) float mask, 1 inside the outer-lip bounding box grown by ``margin_frac`` per side."""
        pts = self.project_points(codes.float(), self.lip_mean, self.lip_basis, aspect)[..., :2]  # (B, P, 2)
        lo, hi = pts.amin(dim=1), pts.amax(dim=1)  # (B, 2) normalized image units
        pad = (hi - lo) * margin_frac
        lo, hi = lo - pad, hi + pad
        centres = (torch.arange(size, device=codes.device, dtype=torch.float32) + 0.5) / size
        inside_x = (centres[None, :] >= lo[:, 0:1]) & (centres[None, :] <= hi[:, 0:1])  # (B, size)
        inside_y = (centres[None, :] >= lo[:, 1:2]) & (centres[None, :] <= hi[:, 1:2])
        return (inside_y[:, :, None] & inside_x[:, None, :]).float()[:, None]


def codes_to_crop(codes: np.ndarray, box_px: np.ndarray, frame_wh: tuple[int, int]) -> np.ndarray:
    """Codes (..., 61) of a ``W x H`` frame re-expressed in a square crop ``box_px`` (x0, y0, x1, y1 pixels).

    With the crop side ``c`` pixels: ``tx' = (tx W - x0) / c``, ``ty' = (ty H - y0) / c`` and the
    scale (image heights per cm) grows by ``H / c``, i.e. ``tz' = tz - ln(H / c)``; the crop's
    aspect is 1. Projecting the new codes with ``aspect=1`` lands on the same pixels.
    """
    w, h = frame_wh
    x0, y0, x1, _ = (float(v) for v in box_px)
    side = x1 - x0
    if side <= 0:
        raise ValueError(f"crop box {box_px} has no width")
    out = np.array(codes, dtype=np.float32, copy=True)
    out[..., TRANSLATION_SLICE.start] = (out[..., TRANSLATION_SLICE.start] * w - x0) / side
    out[..., TRANSLATION_SLICE.start + 1] = (out[..., TRANSLATION_SLICE.start + 1] * h - y0) / side
    out[..., DEPTH_INDEX] = out[..., DEPTH_INDEX] - math.log(h / side)
    return out
