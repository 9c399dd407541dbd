"""Face detectors (MediaPipe offline default, insightface when configured) and crop landmarks.

Every detector maps an RGB uint8 frame to :class:`stages.face_tracking.Detection`
boxes in that frame's pixels (x0 y0 x1 y1) with a confidence in 0-1.

- :class:`MediaPipeFaceDetector`: BlazeFace short-range (``face_detector.tflite``)
  read from the sha256-pinned ``face_landmarker.task`` bundle (a zip), loaded with
  ``FaceDetector`` from a model buffer. The model sees a 128x128 letterboxed
  image, so faces smaller than about a tenth of the frame are missed: a second
  pass over an overlapping tile grid (``tile_grid`` tiles on the long side)
  finds them; tile boxes touching an inner tile edge are dropped and the rest
  merged with the whole-frame boxes. Between tile passes the caller may give
  the boxes of tracked faces instead: each small one is re-detected in a crop
  around it (one pass per face instead of the grid).
- :class:`InsightFaceDetector`: SCRFD detection + ArcFace recognition from a
  local insightface model directory (``root/models/<name>/*.onnx``, the
  buffalo_l layout). Never downloads. Gives 5 keypoints and 512-d embeddings
  (without it, identity comes from dlib: ``stages.face_identity``).
- :class:`CropLandmarker`: MediaPipe FaceLandmarker (IMAGE mode) on a square
  crop around a box: 478 landmarks (frame pixels) and the facial
  transformation matrix, for mouth opening and yaw.
"""

from __future__ import annotations

import atexit
import math
import weakref
import zipfile
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from blendshape_fit.landmarker import N_MP_BLENDSHAPES, resolve_task_file
from core.media_io import sha256_of_local
from stages.face_tracking import CropMeasure, Detection, compute_iou

DETECTOR_MEMBER = "face_detector.tflite"  # inside face_landmarker.task
LANDMARK_CROP_PX = 256  # px: crops are resized to this square side (the landmark model's input)
TILE_OVERLAP = 1.5  # a tile's side is this many times the long side / tile_grid
EDGE_PX = 2.0  # px: a tile box this close to an inner tile edge is cut off by the tile
ROI_SCALE = 3.0  # a tracked face's re-detection crop is this many times its box's longer side
SMALL_FACE_FRAC = 0.2  # boxes longer than this fraction of the frame's long side need no crop


class InsightFaceMissing(RuntimeError):
    """The configured insightface model directory is missing or incomplete."""


class FaceDetector(Protocol):
    """What the faces stage needs from a detector."""

    model_id: str
    has_identity: bool  # True when ``embed`` gives ArcFace embeddings

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Faces in an RGB uint8 frame, boxes in that frame's pixels."""
        ...

    def embed(self, rgb: np.ndarray, det: Detection) -> np.ndarray:
        """(512,) float32 L2-normalized identity embedding of ``det`` (frame pixels)."""
        ...


_LIVE: weakref.WeakSet[Any] = weakref.WeakSet()


@atexit.register
def _close_live() -> None:
    """Close MediaPipe graphs before interpreter teardown (their own __del__ fails then)."""
    for obj in list(_LIVE):
        obj.close()


def merge_detections(dets: list[Detection], iou_threshold: float = 0.3, cover_threshold: float = 0.6) -> list[Detection]:
    """Non-maximum suppression, best score first.

    A box is dropped when its IoU with a kept box exceeds ``iou_threshold`` or when
    more than ``cover_threshold`` of the smaller box's area lies inside a kept box.
    """
    kept: list[Detection] = []
    for det in sorted(dets, key=lambda d: -d.score):
        ok = True
        for k in kept:
            if float(compute_iou(det.box, k.box)[0, 0]) > iou_threshold or cover_fraction(det.box, k.box) > cover_threshold:
                ok = False
                break
        if ok:
            kept.append(det)
    return kept


def cover_fraction(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection area over the smaller of the two boxes' areas (0-1)."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return float(iw * ih / max(smaller, 1e-9))


def plan_tiles(width: int, height: int, tile_grid: int) -> list[tuple[int, int, int]]:
    """Square tiles ``(x, y, side)`` in pixels covering the frame with overlap; [] if ``tile_grid`` <= 1."""
    if tile_grid <= 1:
        return []
    side = int(min(min(width, height), math.ceil(max(width, height) * TILE_OVERLAP / tile_grid)))
    step = side / TILE_OVERLAP

    def starts(length: int) -> list[int]:
        n = int(math.ceil(max(length - side, 0) / step)) + 1
        return sorted({int(round(v)) for v in np.linspace(0, length - side, n)})

    return [(x, y, side) for y in starts(height) for x in starts(width)]


def cap_faces(dets: list[Detection], max_faces: int) -> list[Detection]:
    """The ``max_faces`` largest detections (all if ``max_faces`` <= 0)."""
    if max_faces <= 0 or len(dets) <= max_faces:
        return dets
    area = [float((d.box[2] - d.box[0]) * (d.box[3] - d.box[1])) for d in dets]
    order = np.argsort(area)[::-1][:max_faces]
    return [dets[i] for i in sorted(order)]


class MediaPipeFaceDetector:
    """BlazeFace short-range from the pinned ``face_landmarker.task``, whole frame + tile grid."""

    has_identity = False

    def __init__(self, task_path: str | None = None, min_confidence: float = 0.6, tile_grid: int = 3,
                 max_faces: int = 8) -> None:
        from mediapipe.tasks.python.core.base_options import BaseOptions
        from mediapipe.tasks.python.vision import face_detector as mp_fd
        from mediapipe.tasks.python.vision.core.vision_task_running_mode import VisionTaskRunningMode

        path, sha = resolve_task_file(task_path)
        with zipfile.ZipFile(path) as bundle:
            if DETECTOR_MEMBER not in bundle.namelist():
                raise RuntimeError(f"{path} has no {DETECTOR_MEMBER}; set faces.task_path to a face_landmarker.task")
            buffer = bundle.read(DETECTOR_MEMBER)
        options = mp_fd.FaceDetectorOptions(base_options=BaseOptions(model_asset_buffer=buffer),
                                            running_mode=VisionTaskRunningMode.IMAGE,
                                            min_detection_confidence=min_confidence)
        self._detector = mp_fd.FaceDetector.create_from_options(options)
        self.tile_grid = int(tile_grid)
        self.max_faces = int(max_faces)
        self.model_id = f"mediapipe:{DETECTOR_MEMBER}@{path.name}:{sha[:12]}" + (
            f"+tiles{self.tile_grid}" if self.tile_grid > 1 else "")
        _LIVE.add(self)

    def close(self) -> None:
        if self._detector is not None:
            self._detector.close()
            self._detector = None

    def detect_image(self, rgb: np.ndarray, dx: int = 0, dy: int = 0) -> list[Detection]:
        """One BlazeFace pass; boxes shifted by ``(dx, dy)`` pixels."""
        import mediapipe as mp

        result = self._detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb)))
        h, w = rgb.shape[:2]
        out = []
        for d in result.detections:
            b = d.bounding_box
            box = np.array([b.origin_x, b.origin_y, b.origin_x + b.width, b.origin_y + b.height], np.float32)
            box[[0, 2]] = np.clip(box[[0, 2]], 0, w) + dx
            box[[1, 3]] = np.clip(box[[1, 3]], 0, h) + dy
            kps = np.array([(k.x * w + dx, k.y * h + dy) for k in d.keypoints], np.float32) if d.keypoints else None
            out.append(Detection(box=box, score=float(d.categories[0].score), keypoints=kps))
        return out

    def detect(self, rgb: np.ndarray, rois: list[np.ndarray] | None = None) -> list[Detection]:
        """Whole frame, then the tile grid; or, given ``rois`` (boxes of faces being tracked), a crop
        around each small one instead of the grid (a tracked small face stays found at 1 pass per face).
        """
        h, w = rgb.shape[:2]
        dets = self.detect_image(rgb)
        crops = plan_tiles(w, h, self.tile_grid) if rois is None else plan_roi_crops(rois, w, h)
        for x, y, side in crops:
            for det in self.detect_image(rgb[y:y + side, x:x + side], x, y):
                if touches_inner_edge(det.box, x, y, side, w, h):
                    continue
                dets.append(det)
        return cap_faces(merge_detections(dets), self.max_faces)

    def embed(self, rgb: np.ndarray, det: Detection) -> np.ndarray:
        raise NotImplementedError("the MediaPipe detector has no identity model (the faces stage uses "
                                  "stages.face_identity.DlibFaceEmbedder, or ArcFace with faces.insightface_root)")


def plan_roi_crops(rois: list[np.ndarray], width: int, height: int) -> list[tuple[int, int, int]]:
    """Square crops ``(x, y, side)`` of ``ROI_SCALE`` x each small box, shifted inside the frame.

    Boxes longer than ``SMALL_FACE_FRAC`` of the frame's long side are skipped: the whole-frame
    pass finds them.
    """
    out = []
    long_side = max(width, height)
    for box in rois:
        size = float(max(box[2] - box[0], box[3] - box[1]))
        if size > SMALL_FACE_FRAC * long_side:
            continue
        side = int(min(min(width, height), max(32.0, ROI_SCALE * size)))
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        x = int(np.clip(round(cx - side / 2), 0, width - side))
        y = int(np.clip(round(cy - side / 2), 0, height - side))
        out.append((x, y, side))
    return out


def touches_inner_edge(box: np.ndarray, x: int, y: int, side: int, width: int, height: int) -> bool:
    """True when ``box`` reaches a tile edge that is not also a frame edge (the face is cut off)."""
    return bool((x > 0 and box[0] <= x + EDGE_PX) or (y > 0 and box[1] <= y + EDGE_PX)
                or (x + side < width and box[2] >= x + side - EDGE_PX)
                or (y + side < height and box[3] >= y + side - EDGE_PX))


def locate_insightface_dir(root: str, name: str) -> Path:
    """``root/models/<name>`` (or ``root/<name>``, or ``root`` itself) holding ``*.onnx`` files."""
    base = Path(root).expanduser()
    for cand in (base / "models" / name, base / name, base):
        if cand.is_dir() and any(cand.glob("*.onnx")):
            return cand
    raise InsightFaceMissing(
        f"no insightface models for faces.insightface_name={name!r} under faces.insightface_root={root!r}: "
        f"expected {base / 'models' / name}/*.onnx (the buffalo_l layout: det_10g.onnx, w600k_r50.onnx). "
        f"Unpack buffalo_l.zip there, or unset faces.insightface_root to use the MediaPipe detector."
    )


class InsightFaceDetector:
    """SCRFD + ArcFace from a local insightface model directory (CPU, never downloads)."""

    def __init__(self, root: str, name: str = "buffalo_l", min_confidence: float = 0.5, max_faces: int = 8,
                 det_size_px: int = 640) -> None:
        from insightface.app import FaceAnalysis

        model_dir = locate_insightface_dir(root, name)
        # A directory path as ``name`` makes FaceAnalysis read it directly (no download lookup).
        self._app = FaceAnalysis(name=str(model_dir), allowed_modules=["detection", "recognition"],
                                 providers=["CPUExecutionProvider"])
        self._app.prepare(ctx_id=-1, det_thresh=min_confidence, det_size=(det_size_px, det_size_px))
        self._rec = self._app.models.get("recognition")
        self.has_identity = self._rec is not None
        self.metric = "cosine"  # embeddings are L2-normalized (stages.face_identity.IdentityEmbedder)
        self.max_faces = int(max_faces)
        self.model_dir = model_dir
        parts = [f"det={self.describe(self._app.det_model.model_file)}"]
        if self._rec is not None:
            parts.append(f"rec={self.describe(self._rec.model_file)}")
        self.model_id = f"insightface:{name}(" + ",".join(parts) + ")"

    @staticmethod
    def describe(model_file: str) -> str:
        """``file.onnx@<sha256 prefix>``."""
        return f"{Path(model_file).name}@{sha256_of_local(str(model_file))[:12]}"

    def close(self) -> None:
        """Nothing native to release (onnxruntime sessions free themselves)."""

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        boxes, kpss = self._app.det_model.detect(bgr, max_num=0)
        dets = []
        for k in range(boxes.shape[0]):
            kps = None if kpss is None else np.asarray(kpss[k], np.float32)
            dets.append(Detection(box=np.asarray(boxes[k, :4], np.float32), score=float(boxes[k, 4]), keypoints=kps))
        return cap_faces(dets, self.max_faces)

    def embed(self, rgb: np.ndarray, det: Detection) -> np.ndarray:
        """(512,) L2-normalized ArcFace embedding of ``det`` (aligned on its 5 keypoints)."""
        return self.embed_crop(self.crop(rgb, det))

    def crop(self, rgb: np.ndarray, det: Detection) -> np.ndarray:
        """The BGR face aligned on the detector's 5 keypoints, at the recognition model's input size."""
        from insightface.utils import face_align

        if self._rec is None:
            raise RuntimeError(f"no recognition model in {self.model_dir}")
        if det.keypoints is None or det.keypoints.shape[0] != 5:
            raise ValueError("ArcFace alignment needs the detector's 5 keypoints")
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        return face_align.norm_crop(bgr, landmark=det.keypoints, image_size=self._rec.input_size[0])

    def embed_crop(self, crop: np.ndarray) -> np.ndarray:
        """(512,) L2-normalized embedding of a crop from :meth:`crop`."""
        assert self._rec is not None
        emb = np.asarray(self._rec.get_feat(crop), np.float32).ravel()
        return emb / max(float(np.linalg.norm(emb)), 1e-12)


def square_crop(rgb: np.ndarray, box: np.ndarray, scale: float, out_px: int) -> tuple[np.ndarray, float, float, float]:
    """Square crop of side ``scale * max(box w, h)`` centred on ``box`` (zero padded), resized to ``out_px``.

    Returns ``(crop, x0, y0, px_per_crop_px)`` mapping crop pixels back to frame pixels:
    ``frame = (x0, y0) + crop * px_per_crop_px``.
    """
    import cv2

    h, w = rgb.shape[:2]
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = max(8.0, scale * float(max(box[2] - box[0], box[3] - box[1])))
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = int(round(side))
    crop = np.zeros((s, s, 3), np.uint8)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + s, w), min(y0 + s, h)
    if sx1 > sx0 and sy1 > sy0:
        crop[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
    crop = cv2.resize(crop, (out_px, out_px), interpolation=cv2.INTER_AREA if s > out_px else cv2.INTER_LINEAR)
    return crop, float(x0), float(y0), s / out_px


class CropLandmarker:
    """MediaPipe FaceLandmarker (IMAGE mode, one face) on a square crop around a detected box."""

    def __init__(self, task_path: str | None = None, crop_scale: float = 1.6, min_confidence: float = 0.5) -> None:
        from mediapipe.tasks.python.core.base_options import BaseOptions
        from mediapipe.tasks.python.vision import face_landmarker as mp_fl
        from mediapipe.tasks.python.vision.core.vision_task_running_mode import VisionTaskRunningMode

        path, sha = resolve_task_file(task_path)
        options = mp_fl.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(path)), running_mode=VisionTaskRunningMode.IMAGE,
            num_faces=1, min_face_detection_confidence=min_confidence, min_face_presence_confidence=min_confidence,
            output_face_blendshapes=True, output_facial_transformation_matrixes=True)
        self._landmarker = mp_fl.FaceLandmarker.create_from_options(options)
        self.crop_scale = float(crop_scale)
        self.model_id = f"{path.name}@{sha[:12]}"
        _LIVE.add(self)

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def measure(self, rgb: np.ndarray, box: np.ndarray) -> CropMeasure | None:
        """Landmarks (478, 3) in ``rgb``'s pixels, the facial transformation matrix and MediaPipe's 52
        blendshape scores for the face in ``box``, or None.

        None also when the landmarked face's nose tip lies outside ``box`` (a neighbour's face).
        """
        import mediapipe as mp

        crop, x0, y0, k = square_crop(rgb, box, self.crop_scale, LANDMARK_CROP_PX)
        result = self._landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=crop))
        if not result.face_landmarks:
            return None
        lms = np.array([(p.x, p.y, p.z) for p in result.face_landmarks[0]], np.float32) * LANDMARK_CROP_PX
        lms[:, 0] = x0 + lms[:, 0] * k
        lms[:, 1] = y0 + lms[:, 1] * k
        lms[:, 2] *= k
        nose = lms[1]
        if not (box[0] <= nose[0] <= box[2] and box[1] <= nose[1] <= box[3]):
            return None
        matrix = np.eye(4, dtype=np.float32)
        if result.facial_transformation_matrixes:
            matrix = np.asarray(result.facial_transformation_matrixes[0], np.float32).reshape(4, 4)
        scores = np.zeros(N_MP_BLENDSHAPES, np.float32)
        if result.face_blendshapes:
            scores = np.array([c.score for c in result.face_blendshapes[0]], np.float32)
        return CropMeasure(lms, matrix, scores)
