"""Vectorized piecewise-affine backward warp: per-pixel triangle index, affine maps, ``cv2.remap``.

For every output pixel we need the source position it comes from. Per frame:

1. Rasterize the destination triangles into a per-pixel triangle-index image
   (``cv2.fillConvexPoly``, sub-pixel vertices, far triangles first so the nearer ones win where
   a turned head folds the mesh). Only the bounding box of the moving triangles is redrawn; the
   rest of the index image is precomputed once (the triangles there never move).
2. Per triangle, the affine map destination -> source (2 x 3) is solved in one batched step
   (equivalent to the barycentric coordinates of the pixel in its destination triangle applied
   to the source vertices).
3. ``map = A[index] @ (x, y, 1)`` for all pixels at once, then ``cv2.remap`` (bilinear).

Pixels outside every triangle keep the identity map. Units: pixels of the output frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SUBPIXEL_BITS = 4  # fixed-point bits of the rasterized vertex positions


def solve_affines(src_tri: np.ndarray, dst_tri: np.ndarray) -> np.ndarray:
    """Affine maps (T, 2, 3) taking each destination triangle (T, 3, 2) onto its source triangle.

    Degenerate (zero-area) destination triangles get a translation-only map.
    """
    d = np.concatenate([dst_tri, np.ones(dst_tri.shape[:2] + (1,))], axis=2)  # (T, 3, 3) rows = vertices
    det = np.linalg.det(d)
    ok = np.abs(det) > 1e-9
    out = np.zeros((src_tri.shape[0], 2, 3))
    out[:, 0, 0] = out[:, 1, 1] = 1.0
    if ok.any():
        # Solve d @ X = src (X: (3, 2)); A = X^T.
        x = np.linalg.solve(d[ok], src_tri[ok])
        out[ok] = x.transpose(0, 2, 1)
    bad = ~ok
    if bad.any():
        out[bad, :, 2] = (src_tri[bad] - dst_tri[bad]).mean(axis=1)
    return out


@dataclass
class PiecewiseAffineWarper:
    """Warps images of one size over a fixed triangulation whose ``static`` triangles never move.

    ``src_points`` (P, 2) are the source vertices in pixels; ``triangles`` (T, 3) the connectivity.
    ``moving`` (P,) marks vertices that may move; triangles with no moving vertex are drawn once.
    """

    src_points: np.ndarray
    triangles: np.ndarray
    moving: np.ndarray
    width: int
    height: int

    def __post_init__(self) -> None:
        self.src_points = np.asarray(self.src_points, dtype=np.float64)
        self.triangles = np.asarray(self.triangles, dtype=np.int64)
        self.n_tri = self.triangles.shape[0]
        self.identity_index = self.n_tri  # the extra "identity" affine
        self.dynamic = self.moving[self.triangles].any(axis=1)
        self.grid_x, self.grid_y = np.meshgrid(np.arange(self.width, dtype=np.float32),
                                               np.arange(self.height, dtype=np.float32))
        # Precomputed index image of the static triangles (identity elsewhere).
        self.static_index = np.full((self.height, self.width), self.identity_index, dtype=np.int32)
        self.draw_triangles(self.static_index, self.src_points, np.flatnonzero(~self.dynamic))
        self.src_tri = self.src_points[self.triangles]
        self.index = self.static_index.copy()

    def draw_triangles(self, index: np.ndarray, points: np.ndarray, order: np.ndarray,
                       offset: tuple[int, int] = (0, 0)) -> None:
        """Paint triangle ids ``order`` (drawn in that order, later wins) into ``index``."""
        scale = float(1 << SUBPIXEL_BITS)
        fixed = np.round((points - np.asarray(offset, dtype=np.float64)) * scale).astype(np.int32)
        tri_pts = fixed[self.triangles[order]]
        fill = cv2.fillConvexPoly
        for t, pts in zip(order.tolist(), tri_pts, strict=True):
            fill(index, pts, int(t), lineType=cv2.LINE_8, shift=SUBPIXEL_BITS)

    def rasterize(self, dst_points: np.ndarray, depth: np.ndarray | None = None) -> np.ndarray:
        """Per-pixel triangle index (H, W) int32 for destination vertices ``dst_points`` (P, 2).

        ``depth`` (P,) per vertex (larger = farther) orders the moving triangles far to near.
        """
        dyn = np.flatnonzero(self.dynamic)
        if depth is not None:
            tri_depth = depth[self.triangles[dyn]].mean(axis=1)
            dyn = dyn[np.argsort(-tri_depth, kind="stable")]
        pts = dst_points[self.triangles[dyn]].reshape(-1, 2)
        x0 = int(max(np.floor(pts[:, 0].min()) - 1, 0))
        y0 = int(max(np.floor(pts[:, 1].min()) - 1, 0))
        x1 = int(min(np.ceil(pts[:, 0].max()) + 2, self.width))
        y1 = int(min(np.ceil(pts[:, 1].max()) + 2, self.height))
        if x1 <= x0 or y1 <= y0:
            return self.static_index
        index = self.index
        index[:] = self.static_index
        roi = index[y0:y1, x0:x1]
        self.draw_triangles(roi, dst_points, dyn, offset=(x0, y0))
        return index

    def compute_maps(self, dst_points: np.ndarray, depth: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``cv2.remap`` maps (H, W) float32 for destination vertices (P, 2)."""
        index = self.rasterize(dst_points, depth)
        aff = solve_affines(self.src_tri, dst_points[self.triangles])
        ident = np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
        table = np.concatenate([aff, ident]).reshape(-1, 6).astype(np.float32)  # (T + 1, 6)
        coef = table[index]  # (H, W, 6)
        gx, gy = self.grid_x, self.grid_y
        map_x = coef[..., 0] * gx + coef[..., 1] * gy + coef[..., 2]
        map_y = coef[..., 3] * gx + coef[..., 4] * gy + coef[..., 5]
        return map_x, map_y

    def warp(self, image: np.ndarray, dst_points: np.ndarray, depth: np.ndarray | None = None) -> np.ndarray:
        """The source ``image`` (H, W, C) warped so that the source vertices land on ``dst_points``."""
        map_x, map_y = self.compute_maps(dst_points, depth)
        return cv2.remap(image, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
