"""Baseline renderer (no weights): a reference image warped by the face model's landmarks.

1. Reference: MediaPipe landmarks on the image, a square crop around the face (``crop_scale``
   x the landmark box), landmarks again on the crop, then the crop's own 61-d codes with
   ``blendshape_fit`` (identity offset from :func:`blendshape_fit.neutral.estimate_neutral`).
2. Per target frame the codes are retargeted onto the reference (expressions and eyes
   absolute; rotation relative to the first target frame or absolute; translation and scale
   always relative, converted by the face-size ratio), and both the reference codes and the
   target codes are projected with the face model's ``project`` (same model as the fit, with
   the reference's identity offset). The destination landmarks are the detected reference
   landmarks moved by the difference of the two projections.
3. Piecewise-affine warp over MediaPipe's face-mesh triangles plus the border ring
   (:mod:`model.renderer.mesh`, :mod:`model.renderer.warp`), then the mouth cavity
   (:mod:`model.renderer.mouth`).

Output frames are square ``size`` x ``size`` RGB uint8.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

from blendshape_fit.face_model import FaceModel, load_face_model
from blendshape_fit.fit import BlendshapeFitter
from blendshape_fit.landmarker import FaceLandmarkExtractor, LandmarkTrack
from blendshape_fit.track import fit_track
from model.renderer.mesh import MeshConfig, RenderMesh, build_render_mesh, move_mesh_points
from model.renderer.mouth import MouthConfig, fill_mouth, measure_lip_gap
from model.renderer.warp import PiecewiseAffineWarper
from shards.codes import CODE_DIM, DEPTH_INDEX, EXPRESSION_SLICE, EYE_SLICE, ROTATION_SLICE, TRANSLATION_SLICE

MODEL_ID = "baseline-meshwarp-v1"


class NoFaceError(RuntimeError):
    """MediaPipe found no face in the reference image."""


@dataclass
class BaselineConfig:
    """Settings of the baseline renderer."""

    size: int = 256  # output frame side, pixels (256 or 512)
    crop_scale: float = 2.0  # crop side, x the larger side of the landmark box
    crop_shift_up: float = 0.08  # crop centre moved up by this fraction of the crop side (room for hair)
    rotation_mode: Literal["relative", "absolute"] = "relative"  # head rotation vs. the first target frame
    ring_follow: float = 1.0  # share of the head's rigid 2D motion the inner border ring takes, 0-1
    codes_aspect: float = 1.0  # width / height of the frames the target codes were fitted on
    mesh: MeshConfig = field(default_factory=MeshConfig)
    mouth: MouthConfig = field(default_factory=MouthConfig)


@dataclass
class ReferenceFace:
    """The prepared reference: crop, its landmarks and codes, and the identity-adjusted face model."""

    rgb: np.ndarray  # (size, size, 3) uint8 crop
    landmarks: np.ndarray  # (478, 3) pixels of the crop (z in width units, smaller = closer)
    codes: np.ndarray  # (61,) fitted codes of the crop
    model: FaceModel  # face model with the reference's identity offset in its mean
    crop_box: tuple[float, float, float]  # (x centre, y centre, side) in source pixels
    fit_rmse_iod: float


def detect_landmarks(extractor: FaceLandmarkExtractor, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Landmarks (478, 3) in pixels and MediaPipe scores (52,) of one still image, or None."""
    out = extractor.detect_still(rgb)
    if out is None:
        return None
    lm, scores, _ = out
    h, w = rgb.shape[:2]
    px = np.stack([lm[:, 0] * w, lm[:, 1] * h, lm[:, 2] * w], axis=1).astype(np.float64)
    return px, scores


def compute_crop_box(landmarks_px: np.ndarray, crop_scale: float, shift_up: float) -> tuple[float, float, float]:
    """Square crop (x centre, y centre, side) in pixels around the landmark box."""
    lo, hi = landmarks_px[:, :2].min(axis=0), landmarks_px[:, :2].max(axis=0)
    side = float(crop_scale * max(hi - lo))
    cx, cy = (lo + hi) / 2.0
    return float(cx), float(cy - shift_up * side), side


def crop_square(rgb: np.ndarray, box: tuple[float, float, float], size: int) -> np.ndarray:
    """The ``box`` (x centre, y centre, side) of ``rgb`` resized to ``size`` x ``size`` (edges replicated)."""
    cx, cy, side = box
    k = size / side
    m = np.array([[k, 0.0, size / 2.0 - k * cx], [0.0, k, size / 2.0 - k * cy]])
    if k < 1.0:  # downscale: area-filter first so the affine sampling does not alias
        small = cv2.resize(rgb, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
        m = np.array([[1.0, 0.0, size / 2.0 - k * cx], [0.0, 1.0, size / 2.0 - k * cy]])
        rgb = small
    return cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def fit_still(fitter: BlendshapeFitter, landmarks_px: np.ndarray, scores: np.ndarray, size: int):
    """Fit one still's codes (with the identity offset) through :func:`blendshape_fit.track.fit_track`."""
    track = LandmarkTrack(times_s=np.zeros(1), landmarks=landmarks_px[None].astype(np.float32),
                          blendshapes=scores[None].astype(np.float32), matrices=np.eye(4, dtype=np.float32)[None],
                          face_mask=np.ones(1, dtype=bool), width_px=size, height_px=size, fps=1.0)
    return fit_track(fitter, track, identity=True)


def with_identity(model: FaceModel, neutral: np.ndarray) -> FaceModel:
    """The face model with ``neutral`` (478, 3) cm added to its mean shape."""
    return FaceModel(mean=model.mean + neutral, exp_basis=model.exp_basis, eye_basis=model.eye_basis,
                     eyeball_centres=model.eyeball_centres, version=model.version, triangles=model.triangles,
                     score_rms=model.score_rms, meta=dict(model.meta))


def retarget_codes(codes: np.ndarray, ref_codes: np.ndarray, rotation_mode: str = "relative",
                   codes_aspect: float = 1.0, ref_aspect: float = 1.0) -> np.ndarray:
    """Target codes (T, 61) -> codes of the reference face (T, 61).

    Expressions and eyes are taken as they are. Rotation: ``relative`` adds the change since the
    first target frame to the reference's rotation; ``absolute`` uses the target's. Translation
    and depth are always relative; translation changes are converted by the face-size ratio
    (scale = exp(-z), image heights per cm) and the two aspect ratios.
    """
    codes = np.asarray(codes, dtype=np.float64)
    anchor = codes[0]
    out = codes.copy()
    if rotation_mode == "relative":
        out[:, ROTATION_SLICE] = ref_codes[ROTATION_SLICE] + (codes[:, ROTATION_SLICE] - anchor[ROTATION_SLICE])
    elif rotation_mode != "absolute":
        raise ValueError(f"rotation_mode must be relative or absolute, got {rotation_mode!r}")
    ratio = float(np.exp(anchor[DEPTH_INDEX] - ref_codes[DEPTH_INDEX]))  # reference face size / target's
    dt = codes[:, TRANSLATION_SLICE] - anchor[TRANSLATION_SLICE]
    dt[:, 0] *= ratio * codes_aspect / ref_aspect
    dt[:, 1] *= ratio
    out[:, TRANSLATION_SLICE] = ref_codes[TRANSLATION_SLICE] + dt
    out[:, DEPTH_INDEX] = ref_codes[DEPTH_INDEX] + (codes[:, DEPTH_INDEX] - anchor[DEPTH_INDEX])
    out[:, EXPRESSION_SLICE] = np.clip(codes[:, EXPRESSION_SLICE], 0.0, 1.0)
    out[:, EYE_SLICE] = codes[:, EYE_SLICE]
    return out


class BaselineRenderer:
    """Mesh-warp renderer. ``prepare(image)`` once, then ``render(codes)`` or ``render_frame(code)``."""

    model_id = MODEL_ID

    def __init__(self, cfg: BaselineConfig | None = None, face_model: FaceModel | None = None,
                 extractor: FaceLandmarkExtractor | None = None, task_path: str | None = None) -> None:
        self.cfg = cfg or BaselineConfig()
        self.base_model = face_model or load_face_model()
        self.fitter = BlendshapeFitter(self.base_model)
        self._extractor = extractor
        self.task_path = task_path
        self.ref: ReferenceFace | None = None
        self.mesh: RenderMesh | None = None
        self.warper: PiecewiseAffineWarper | None = None

    @property
    def extractor(self) -> FaceLandmarkExtractor:
        if self._extractor is None:
            self._extractor = FaceLandmarkExtractor(task_path=self.task_path)
        return self._extractor

    @property
    def size(self) -> int:
        return int(self.cfg.size)

    def prepare(self, image_rgb: np.ndarray, crop_box: tuple[float, float, float] | None = None) -> ReferenceFace:
        """Crop, detect and fit the reference ``image_rgb`` (H, W, 3) uint8; build the mesh and warper."""
        if crop_box is None:
            found = detect_landmarks(self.extractor, image_rgb)
            if found is None:
                raise NoFaceError("MediaPipe found no face in the reference image")
            crop_box = compute_crop_box(found[0], self.cfg.crop_scale, self.cfg.crop_shift_up)
        return self.prepare_crop(crop_square(image_rgb, crop_box, self.size), crop_box)

    def prepare_crop(self, crop: np.ndarray, crop_box: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> ReferenceFace:
        """Like :meth:`prepare` for an image that already is the ``size`` x ``size`` crop."""
        if crop.shape[:2] != (self.size, self.size):
            raise ValueError(f"crop must be {self.size}x{self.size}, got {crop.shape[:2]}")
        found = detect_landmarks(self.extractor, crop)
        if found is None:
            raise NoFaceError("MediaPipe found no face in the cropped reference image")
        lm, scores = found
        fit = fit_still(self.fitter, lm, scores, self.size)
        self.ref = ReferenceFace(rgb=np.ascontiguousarray(crop), landmarks=lm, codes=fit.codes[0],
                                 model=with_identity(self.base_model, fit.neutral), crop_box=crop_box,
                                 fit_rmse_iod=float(fit.rmse_iod_median))
        self.mesh = build_render_mesh(lm, self.size, self.size, self.cfg.mesh, self.task_path)
        self.warper = PiecewiseAffineWarper(self.mesh.src_points, self.mesh.triangles, ~self.mesh.fixed,
                                            self.size, self.size)
        self.ref_proj = self.project_px(self.ref.codes[None])[0]
        self.ref_gap_iod = measure_lip_gap(lm)
        return self.ref

    def project_px(self, codes: np.ndarray) -> np.ndarray:
        """Face-model landmarks (T, 478, 3) in output pixels for codes (T, 61) of the reference face."""
        pts, _ = self.require_ref().model.project(codes, aspect=1.0)
        return pts * self.size

    def require_ref(self) -> ReferenceFace:
        if self.ref is None:
            raise RuntimeError("call prepare(reference_image) before rendering")
        return self.ref

    def retarget(self, codes: np.ndarray) -> np.ndarray:
        """Target codes (T, 61) -> the reference face's codes (see :func:`retarget_codes`)."""
        codes = np.asarray(codes, dtype=np.float64)
        if codes.ndim != 2 or codes.shape[1] != CODE_DIM:
            raise ValueError(f"codes must be (T, {CODE_DIM}), got {codes.shape}")
        return retarget_codes(codes, self.require_ref().codes, self.cfg.rotation_mode, self.cfg.codes_aspect)

    def destination_landmarks(self, ref_codes: np.ndarray) -> np.ndarray:
        """Destination landmarks (T, 478, 3) px: detected reference landmarks + projection change."""
        proj = self.project_px(ref_codes)
        return self.require_ref().landmarks[None] + (proj - self.ref_proj[None])

    def render_landmarks(self, dst: np.ndarray) -> np.ndarray:
        """One frame (size, size, 3) uint8 for destination landmarks (478, 3) px."""
        ref = self.require_ref()
        assert self.mesh is not None and self.warper is not None
        points = move_mesh_points(self.mesh, dst, self.cfg.ring_follow)
        depth = np.zeros(points.shape[0])
        depth[:dst.shape[0]] = dst[:, 2]
        frame = self.warper.warp(ref.rgb, points, depth)
        return fill_mouth(frame, dst, self.ref_gap_iod, self.cfg.mouth)

    def render_frame(self, code: np.ndarray) -> np.ndarray:
        """One frame for one already-retargeted code (61,)."""
        return self.render_landmarks(self.destination_landmarks(np.asarray(code)[None])[0])

    def render(self, codes: np.ndarray, retarget: bool = True) -> Iterator[np.ndarray]:
        """Frames (size, size, 3) uint8 for target codes (T, 61), one per row."""
        ref_codes = self.retarget(codes) if retarget else np.asarray(codes, dtype=np.float64)
        dst_all = self.destination_landmarks(ref_codes)
        for dst in dst_all:
            yield self.render_landmarks(dst)
