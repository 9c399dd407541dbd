"""The linear face model of paper Eq. 1 and its projection.

``shape = mean + B_exp . beta + B_eye . e`` (canonical centimetres, 478 landmarks), posed by
``s . R`` and translated by ``t`` under orthographic projection. The basis lives in a small
versioned ``.npz`` asset (``assets/basis_v1.npz``) built by :mod:`blendshape_fit.build_basis`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shards.codes import (
    CODE_DIM,
    DEPTH_INDEX,
    EXPRESSION_NAMES,
    EXPRESSION_SLICE,
    EYE_NAMES,
    EYE_SLICE,
    ROTATION_SLICE,
    TRANSLATION_SLICE,
)

ASSET_DIR = Path(__file__).resolve().parent / "assets"
DEFAULT_BASIS_PATH = ASSET_DIR / "basis_v1.npz"
N_POINTS = 478
# Outer eye corners (subject's right, left): the inter-ocular distance used for RMSE.
IOD_PAIR = (33, 263)


def euler_to_matrix(angles: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) from (..., 3) [pitch, yaw, roll] radians, R = Rz Ry Rx."""
    a = np.asarray(angles, dtype=np.float64)
    cx, cy, cz = np.cos(a[..., 0]), np.cos(a[..., 1]), np.cos(a[..., 2])
    sx, sy, sz = np.sin(a[..., 0]), np.sin(a[..., 1]), np.sin(a[..., 2])
    r = np.empty(a.shape[:-1] + (3, 3))
    r[..., 0, 0] = cz * cy
    r[..., 0, 1] = cz * sy * sx - sz * cx
    r[..., 0, 2] = cz * sy * cx + sz * sx
    r[..., 1, 0] = sz * cy
    r[..., 1, 1] = sz * sy * sx + cz * cx
    r[..., 1, 2] = sz * sy * cx - cz * sx
    r[..., 2, 0] = -sy
    r[..., 2, 1] = cy * sx
    r[..., 2, 2] = cy * cx
    return r


def matrix_to_euler(r: np.ndarray) -> np.ndarray:
    """[pitch, yaw, roll] radians (..., 3) of rotation matrices (..., 3, 3), R = Rz Ry Rx."""
    pitch = np.arctan2(r[..., 2, 1], r[..., 2, 2])
    yaw = np.arctan2(-r[..., 2, 0], np.hypot(r[..., 2, 1], r[..., 2, 2]))
    roll = np.arctan2(r[..., 1, 0], r[..., 0, 0])
    return np.stack([pitch, yaw, roll], axis=-1)


@dataclass
class FaceModel:
    """Mean shape and bases; all geometry in canonical centimetres (x subject-left, y up, z out)."""

    mean: np.ndarray  # (478, 3)
    exp_basis: np.ndarray  # (51, 478, 3) displacement per unit blendshape weight
    eye_basis: np.ndarray  # (4, 478, 3) displacement per radian of eye rotation
    eyeball_centres: np.ndarray  # (2, 3) [left, right]
    version: str = "v1"
    triangles: np.ndarray | None = None  # (n, 3) canonical mesh triangles, for renderers
    # (51,) root-mean-square of MediaPipe's scores per blendshape on the training frames:
    # the spread of each coefficient the fit's Gaussian prior expects (None = no prior).
    score_rms: np.ndarray | None = None
    meta: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, dtype=np.float64)
        self.exp_basis = np.asarray(self.exp_basis, dtype=np.float64)
        self.eye_basis = np.asarray(self.eye_basis, dtype=np.float64)
        if self.mean.shape != (N_POINTS, 3):
            raise ValueError(f"mean must be (478, 3), got {self.mean.shape}")
        if self.exp_basis.shape != (len(EXPRESSION_NAMES), N_POINTS, 3):
            raise ValueError(f"exp_basis must be (51, 478, 3), got {self.exp_basis.shape}")
        if self.eye_basis.shape != (len(EYE_NAMES), N_POINTS, 3):
            raise ValueError(f"eye_basis must be (4, 478, 3), got {self.eye_basis.shape}")
        # (55, 1434): expression rows then eye rows, flattened xyz per point.
        self.basis_flat = np.concatenate([self.exp_basis, self.eye_basis]).reshape(-1, N_POINTS * 3)

    @property
    def inter_ocular_cm(self) -> float:
        """Outer-eye-corner distance of the mean shape, cm."""
        return float(np.linalg.norm(self.mean[IOD_PAIR[0]] - self.mean[IOD_PAIR[1]]))

    def deform(self, codes: np.ndarray) -> np.ndarray:
        """Model-space shapes (..., 478, 3) cm for codes (..., 61): mean + B_exp.beta + B_eye.e."""
        codes = np.asarray(codes, dtype=np.float64)
        coeffs = np.concatenate([codes[..., EXPRESSION_SLICE], codes[..., EYE_SLICE]], axis=-1)
        flat = coeffs @ self.basis_flat
        return self.mean + flat.reshape(codes.shape[:-1] + (N_POINTS, 3))

    def project(self, codes: np.ndarray, aspect: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Pose and project codes (..., 61).

        Returns ``(points3d, landmarks2d)``: ``points3d`` (..., 478, 3) in MediaPipe's
        normalized image convention (x / width, y / height, y down; z relative depth in
        image-width units, smaller = closer) and ``landmarks2d = points3d[..., :2]``.
        ``aspect`` is the image width / height.
        """
        codes = np.asarray(codes, dtype=np.float64)
        if codes.shape[-1] != CODE_DIM:
            raise ValueError(f"codes must end in {CODE_DIM}, got {codes.shape}")
        shape = self.deform(codes)
        rot = euler_to_matrix(codes[..., ROTATION_SLICE])
        cam = np.einsum("...ij,...pj->...pi", rot, shape)
        scale = np.exp(-codes[..., DEPTH_INDEX])[..., None]  # image heights per cm
        t = codes[..., TRANSLATION_SLICE]
        pts = np.empty(cam.shape)
        pts[..., 0] = t[..., 0, None] + scale * cam[..., 0] / aspect
        pts[..., 1] = t[..., 1, None] - scale * cam[..., 1]
        pts[..., 2] = -scale * cam[..., 2] / aspect
        return pts, pts[..., :2]

    def save(self, path: str | Path) -> None:
        """Write the model as a compressed float32 ``.npz``."""
        extra = {} if self.triangles is None else {"triangles": self.triangles.astype(np.int16)}
        if self.score_rms is not None:
            extra["score_rms"] = np.asarray(self.score_rms, dtype=np.float32)
        np.savez_compressed(
            path, mean=self.mean.astype(np.float32), exp_basis=self.exp_basis.astype(np.float32),
            eye_basis=self.eye_basis.astype(np.float32), eyeball_centres=self.eyeball_centres.astype(np.float32),
            version=np.array(self.version), expression_names=np.array(EXPRESSION_NAMES),
            eye_names=np.array(EYE_NAMES), meta_keys=np.array(list(self.meta.keys())),
            meta_values=np.array(list(self.meta.values())), **extra,
        )


def load_face_model(path: str | Path | None = None) -> FaceModel:
    """Load a basis ``.npz`` (default: the shipped ``assets/basis_v1.npz``)."""
    path = Path(path) if path is not None else DEFAULT_BASIS_PATH
    if not path.is_file():
        raise FileNotFoundError(
            f"face basis {path} not found; rebuild it with "
            f"`python -m blendshape_fit.build_basis --media DIR --out {path}`"
        )
    with np.load(path, allow_pickle=False) as z:
        names = tuple(str(n) for n in z["expression_names"])
        if names != EXPRESSION_NAMES:
            raise ValueError(f"{path}: blendshape names/order differ from codes.EXPRESSION_NAMES")
        meta = dict(zip((str(k) for k in z["meta_keys"]), (str(v) for v in z["meta_values"]), strict=True))
        return FaceModel(mean=z["mean"], exp_basis=z["exp_basis"], eye_basis=z["eye_basis"],
                         eyeball_centres=z["eyeball_centres"], version=str(z["version"]),
                         triangles=z["triangles"].astype(np.int32) if "triangles" in z else None,
                         score_rms=z["score_rms"].astype(np.float64) if "score_rms" in z else None, meta=meta)
