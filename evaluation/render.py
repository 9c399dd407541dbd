"""``--render``: comparison strips (PNG) and ID-SIM.

For each of a few clips, ``strips/<clip_id>.png`` holds one row per system and ``N_TIMES`` columns at evenly
spaced times of the target span: the reference image (the first frame of the reference span in its source
video), the real frames (ground truth, cropped around the face), and every system's codes rendered onto the
reference image by the baseline mesh-warp renderer (``inference.render.make_renderer``; ``model/renderer``).
The ``reconstruction`` row is the clip's own codes through the renderer: the renderer's ceiling.

ID-SIM: MediaPipe's face detector (``stages.face_detectors.MediaPipeFaceDetector``) finds the face in the
reference image and in each shown frame, dlib's face-recognition ResNet
(``stages.face_identity.DlibFaceEmbedder``) embeds it, and the cosine of the 128-d descriptors against the
reference's is averaged over the frames and clips of a system (frames without a face are left out).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from shards.spec import FRAME_RATE_HZ

log = logging.getLogger(__name__)

N_TIMES = 4  # frames per strip row
CELL = 256  # pixels: side of a strip cell
LABEL_W = 170  # pixels: width of the row labels
FACE_CROP_SCALE = 1.8  # the real frames are cropped to this many face-box sides around the face


def crop_face(rgb: np.ndarray, box: np.ndarray | None, size: int = CELL) -> np.ndarray:
    """A square ``size`` crop around ``box`` (x0 y0 x1 y1, pixels), or around the centre when None."""
    h, w = rgb.shape[:2]
    if box is None:
        cx, cy, side = w / 2, h / 2, min(w, h)
    else:
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        side = min(max(box[2] - box[0], box[3] - box[1]) * FACE_CROP_SCALE, max(w, h))
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    pad = int(side)
    padded = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_CONSTANT)
    crop = padded[y0 + pad:y0 + pad + int(side), x0 + pad:x0 + pad + int(side)]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


class IdentityMeter:
    """Face box and dlib descriptor of an image (None when no face is found)."""

    def __init__(self) -> None:
        from stages.face_detectors import MediaPipeFaceDetector
        from stages.face_identity import DlibFaceEmbedder

        self.detector = MediaPipeFaceDetector(tile_grid=1, max_faces=1)
        self.embedder = DlibFaceEmbedder()
        self.model_id = f"{self.embedder.model_id} on {self.detector.model_id}"

    def face(self, rgb: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """``(box, descriptor)`` of the most confident face."""
        dets = self.detector.detect(np.ascontiguousarray(rgb))
        if not dets:
            return None, None
        det = max(dets, key=lambda d: d.score)
        return det.box, self.embedder.embed(rgb, det)


def descriptor_cosine(a: np.ndarray | None, b: np.ndarray | None) -> float:
    if a is None or b is None:
        return math.nan
    return float(np.dot(a, b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))


def label_row(label: str, cells: list[np.ndarray]) -> np.ndarray:
    """One strip row: a label panel then the cells (blank where missing)."""
    panel = np.full((CELL, LABEL_W, 3), 255, np.uint8)
    cv2.putText(panel, label, (6, CELL // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cells = cells + [np.full((CELL, CELL, 3), 240, np.uint8)] * (N_TIMES - len(cells))
    return np.concatenate([panel, *cells], axis=1)


def strip_for_clip(entry: dict[str, Any], renderer: Any, meter: IdentityMeter
                   ) -> tuple[np.ndarray, dict[str, list[float]]]:
    """The strip image of one clip and the ID-SIM values of its frames per system."""
    from inference.video_io import read_frame_at

    item, ref_clip = entry["item"], entry["ref_clip"]
    ref_rgb = read_frame_at(ref_clip.source_path, ref_clip.start_s)
    ref_box, ref_desc = meter.face(ref_rgb)
    n = len(item.target_codes)
    picks = np.linspace(0, n - 1, N_TIMES).round().astype(int)
    rows = [label_row("reference", [crop_face(ref_rgb, ref_box)])]
    sims: dict[str, list[float]] = {}
    real = [read_frame_at(item.clip.source_path, item.clip.start_s + (item.target_start + int(k)) / FRAME_RATE_HZ)
            for k in picks]
    cells = []
    for rgb in real:
        box, desc = meter.face(rgb)
        sims.setdefault("ground_truth", []).append(descriptor_cosine(ref_desc, desc))
        cells.append(crop_face(rgb, box))
    rows.append(label_row("ground_truth", cells))
    renderer.prepare(ref_rgb)
    for system, codes in entry["outputs"].items():
        if system in ("ground_truth", "audio_swapped"):
            continue
        sel = np.asarray(codes)[np.minimum(np.linspace(0, len(codes) - 1, N_TIMES).round().astype(int), len(codes) - 1)]
        frames = [np.asarray(f) for f in renderer.render(sel)]
        for f in frames:
            sims.setdefault(system, []).append(descriptor_cosine(ref_desc, meter.face(f)[1]))
        rows.append(label_row(system, [cv2.resize(f, (CELL, CELL)) for f in frames]))
    return np.concatenate(rows, axis=0), sims


def write_strips(strip_dir: Path, strips: list[dict[str, Any]], cfg: Any) -> tuple[dict[str, float], list[Path]]:
    """Write ``strip_dir/<clip_id>.png`` per entry; return the mean ID-SIM per system and the paths."""
    from inference.render import make_renderer

    strip_dir.mkdir(parents=True, exist_ok=True)
    renderer = make_renderer("baseline", CELL)
    meter = IdentityMeter()
    all_sims: dict[str, list[float]] = {}
    paths = []
    for entry in strips:
        try:
            image, sims = strip_for_clip(entry, renderer, meter)
        except Exception as e:  # a face the renderer cannot use must not lose the whole evaluation
            log.warning("eval: no strip for %s: %s: %s", entry["item"].clip.clip_id, type(e).__name__, e)
            continue
        path = strip_dir / f"{entry['item'].clip.clip_id}.png"
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        paths.append(path)
        for k, v in sims.items():
            all_sims.setdefault(k, []).extend(v)
    id_sim = {k: float(np.nanmean(v)) if np.isfinite(v).any() else math.nan for k, v in all_sims.items()}
    return id_sim, paths
