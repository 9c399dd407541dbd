"""The learned warp-GAN renderer (paper Appendix A.2) and its inference entry point.

Modules, one component each: ``appearance`` (feature extractor), ``keypoints`` (implicit
motion from the face model), ``warping`` (dense flow from keypoints), ``generator`` (U-Net
decoder), ``model`` (:class:`WarpGanRenderer`, configs), ``losses`` (training losses and
the PatchGAN). Training: ``training/renderer_data.py`` and ``training/renderer_loop.py``.

Inference: ``load_learned_renderer(ckpt_dir)`` -> :class:`LearnedRenderer`, whose
``render(ref_image, codes_seq)`` yields one ``(S, S, 3)`` uint8 frame per code row. The
reference is cropped and fitted exactly like the baseline renderer's (MediaPipe landmarks,
``crop_scale`` x the landmark box, codes with ``blendshape_fit``), with the crop rule the
renderer was trained with; target codes are retargeted onto the reference with
``model.renderer.baseline.retarget_codes`` (expressions and eyes absolute, pose relative).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model

from core.overlay import overlay_config
from model.renderer.warpgan.model import WarpGanConfig, WarpGanRenderer, paper_config, tiny_config

MODEL_ID_PREFIX = "warpgan"
__all__ = ["LearnedRenderer", "WarpGanConfig", "WarpGanRenderer", "load_learned_renderer", "paper_config",
           "tiny_config"]


class LearnedRenderer:
    """A trained :class:`WarpGanRenderer` (EMA weights, eval mode) with the reference handling around it."""

    def __init__(self, model: WarpGanRenderer, data_cfg: dict[str, Any], device: str | torch.device = "cpu",
                 model_id: str = MODEL_ID_PREFIX, batch_size: int = 16) -> None:
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.size = model.cfg.image_size
        self.crop_scale = float(data_cfg.get("crop_scale", 2.0))
        self.crop_shift_up = float(data_cfg.get("crop_shift_up", 0.08))
        self.model_id = model_id
        self.batch_size = batch_size
        self._baseline: Any = None
        self.ref_crop: np.ndarray | None = None
        self.ref_codes: np.ndarray | None = None

    def prepare(self, ref_image: np.ndarray, ref_codes: np.ndarray | None = None) -> np.ndarray:
        """Crop and fit the reference ``(H, W, 3)`` uint8 image; returns its codes (61,) in the crop.

        With ``ref_codes`` the image is taken as the crop already (resized to S x S) and its codes
        are used as given (e.g. a training crop and its shard codes).
        """
        if ref_codes is not None:
            import cv2

            self.ref_crop = cv2.resize(ref_image, (self.size, self.size), interpolation=cv2.INTER_AREA)
            self.ref_codes = np.asarray(ref_codes, dtype=np.float64)
            return self.ref_codes
        from model.renderer.baseline import BaselineConfig, BaselineRenderer

        if self._baseline is None:
            self._baseline = BaselineRenderer(BaselineConfig(size=self.size, crop_scale=self.crop_scale,
                                                             crop_shift_up=self.crop_shift_up))
        ref = self._baseline.prepare(ref_image)
        self.ref_crop, self.ref_codes = ref.rgb, np.asarray(ref.codes, dtype=np.float64)
        return self.ref_codes

    @torch.no_grad()
    def render(self, ref_image: np.ndarray | None, codes_seq: np.ndarray, retarget: bool = True,
               ref_codes: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """Frames ``(S, S, 3)`` uint8, one per row of ``codes_seq`` (T, 61).

        ``ref_image`` None reuses the last prepared reference. ``retarget`` maps the target
        codes onto the reference (``retarget_codes``); off, they are used as codes of the crop.
        """
        from model.renderer.baseline import retarget_codes

        if ref_image is not None:
            self.prepare(ref_image, ref_codes)
        if self.ref_crop is None or self.ref_codes is None:
            raise RuntimeError("no reference: pass ref_image (or call prepare) first")
        codes = np.asarray(codes_seq, dtype=np.float64)
        if codes.ndim != 2 or codes.shape[1] != 61:
            raise ValueError(f"codes_seq must be (T, 61), got {codes.shape}")
        if retarget:
            codes = retarget_codes(codes, self.ref_codes)
        src = torch.from_numpy(np.ascontiguousarray(self.ref_crop)).permute(2, 0, 1)[None].float().div(255)
        src = src.to(self.device)
        feats = self.model.encode_source(src)
        src_codes = torch.as_tensor(self.ref_codes, dtype=torch.float32, device=self.device)[None]
        for start in range(0, len(codes), self.batch_size):
            drv = torch.as_tensor(codes[start:start + self.batch_size], dtype=torch.float32, device=self.device)
            b = drv.shape[0]
            out = self.model.render_from_features(src.expand(b, -1, -1, -1), [f.expand(b, -1, -1, -1) for f in feats],
                                                  src_codes.expand(b, -1), drv)["image"]
            frames = (out.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
            yield from frames


def load_learned_renderer(ckpt_dir: str | Path, device: str | torch.device = "cpu") -> LearnedRenderer:
    """The renderer of a ``train-renderer`` run folder (newest checkpoint) or one checkpoint folder.

    Loads ``ema.safetensors`` with the architecture recorded in the checkpoint's ``state.json``.
    """
    from model.checkpoint import read_state, resolve_checkpoint

    ckpt = resolve_checkpoint(ckpt_dir)
    state = read_state(ckpt)
    if state.get("kind") != "warpgan":
        raise ValueError(f"{ckpt}: not a warp-GAN renderer checkpoint (state.json kind={state.get('kind')!r}); "
                         "train one with `omnitalker train-renderer`")
    cfg = overlay_config(WarpGanConfig(), state["config"]["model"])
    model = WarpGanRenderer(cfg)
    load_model(model, str(ckpt / "ema.safetensors"), strict=True, device="cpu")
    for p in model.parameters():
        p.requires_grad_(False)
    model_id = f"{MODEL_ID_PREFIX}-{cfg.image_size}px@{ckpt.name}"
    return LearnedRenderer(model, state["config"].get("data", {}), device, model_id)
