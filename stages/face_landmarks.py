"""One landmark pass per face: ``faces`` measures each track on every source frame, ``visual`` and the
lip-sync speaker choice reuse it.

``faces`` detects and tracks on a constant ``sample_fps`` grid (what tracking and active-speaker
detection need), and measures MediaPipe's 478 landmarks on a crop around each detected face
(``stages.face_detectors.CropLandmarker``: IMAGE mode, one face, with the 52 blendshape scores and
the facial transformation matrix). Those measures are kept per track at the frame's own
presentation time, and two kinds of frame are added on the track's last box, so that a track has a
row for every source frame it is on screen:

- frames between two grid times (a source faster than the grid: 30, 50 or 60 fps, or a variable
  rate; ``blendshape_fit.landmarker.iterate_frames_with_grid`` hands them over);
- grid frames where the tracker coasted (the detector missed the face for a few frames).

``collect_track_landmarks`` turns them into a :class:`stages.item.TrackLandmarks`;
``select_landmarks`` cuts the rows of one segment into the ``LandmarkTrack`` the fit takes (the
frame on screen at the start, every frame inside, the first at or after the end; uncovered ends
padded with faceless rows at the track's frame rate, so ``visual``'s faceless checks see them).

Units: times in source seconds (the audio's time base), points in source pixels.
"""

from __future__ import annotations

import math

import numpy as np

from blendshape_fit.landmarker import N_LANDMARKS, N_MP_BLENDSHAPES, LandmarkTrack
from stages.face_detectors import CropLandmarker
from stages.face_tracking import CropMeasure, IouTracker, RawTrack
from stages.item import TrackLandmarks

ExtraRows = dict[int, dict[float, CropMeasure | None]]  # tracker id -> source time -> measure off the detections
# (None: MediaPipe did not find the face there)


def scale_measure(m: CropMeasure, scale: float) -> CropMeasure:
    """``m`` with its points multiplied by ``scale`` (detection image pixels -> source pixels)."""
    return CropMeasure((m.landmarks * np.float32(scale)).astype(np.float32), m.matrix, m.scores)


def follow_tracks(landmarker: CropLandmarker, rgb: np.ndarray, t_s: float, scale: float, tracker: IouTracker,
                  extra: ExtraRows, on_grid: bool) -> int:
    """Measure every live track that has no landmarks at ``t_s`` on its last box; return the calls made.

    ``on_grid``: the frame was sampled and the tracker just updated, so a track matched on it
    (``missed == 0``) was measured with its detection; only coasting tracks are measured here.
    """
    calls = 0
    for track in tracker.live:
        if on_grid and track.missed == 0:
            continue
        calls += 1
        got = landmarker.measure(rgb, track.last_box)
        extra.setdefault(track.track_id, {})[t_s] = None if got is None else scale_measure(got, scale)
    return calls


def collect_track_landmarks(raw: RawTrack, frame_pts: list[float], extra: ExtraRows) -> TrackLandmarks | None:
    """The landmark rows of one (possibly identity-split) raw track, in time order; None if it has no frame.

    ``frame_pts[k]``: source time of the tracker's k-th sampled frame (NaN where no picture). Rows: every
    distinct source frame the track spans (found or not), plus the extra rows measured on the tracker's
    track (found or not) between its first frame and the grid frame after its last.
    """
    rows: dict[float, CropMeasure | None] = {}
    for j, det in enumerate(raw.detections):
        t = frame_pts[raw.first_frame + j]
        if math.isnan(t):
            continue
        if det is not None and det.landmarks is not None:
            rows[t] = det.landmarks
        else:
            rows.setdefault(t, None)
    if not rows:
        return None
    lo = frame_pts[raw.first_frame]
    nxt = raw.last_frame + 1
    hi = frame_pts[nxt] if nxt < len(frame_pts) and not math.isnan(frame_pts[nxt]) else math.inf
    key = raw.split_from if raw.split_from is not None else raw.track_id
    for t, m in extra.get(key, {}).items():
        if lo <= t < hi and rows.get(t) is None:  # a detection's own measure wins
            rows[t] = m
    times = sorted(rows)
    k = len(times)
    points = np.full((k, N_LANDMARKS, 3), np.nan, np.float32)
    scores = np.zeros((k, N_MP_BLENDSHAPES), np.float32)
    matrices = np.tile(np.eye(4, dtype=np.float32), (k, 1, 1))
    found = np.zeros(k, bool)
    for r, t in enumerate(times):
        m = rows[t]
        if m is not None:
            points[r], matrices[r], scores[r], found[r] = m.landmarks, m.matrix, m.scores, True
    return TrackLandmarks(times_s=np.asarray(times, np.float64), points=points, scores=scores, matrices=matrices,
                          found=found)


def select_landmarks(lm: TrackLandmarks, start_s: float, end_s: float, width_px: int, height_px: int
                     ) -> LandmarkTrack | None:
    """The rows for ``[start_s, end_s]`` as a ``LandmarkTrack`` (see the module doc); None if none overlap."""
    t = lm.times_s
    step = float(np.median(np.diff(t))) if len(t) > 1 else 0.04
    if not ((t >= start_s - step) & (t < end_s)).any():
        return None
    a = max(int(np.searchsorted(t, start_s, side="right")) - 1, 0)
    b = min(int(np.searchsorted(t, end_s, side="left")), len(t) - 1)
    idx = np.arange(a, b + 1)
    times = t[idx]
    before = np.arange(times[0] - step, start_s - step, -step)[::-1] if times[0] > start_s + step / 2 else []
    after = np.arange(times[-1] + step, end_s + step, step) if times[-1] < end_s - step / 2 else []
    pad_b, pad_a = len(before), len(after)
    n = pad_b + len(idx) + pad_a

    def padded(x: np.ndarray, fill: np.ndarray) -> np.ndarray:
        out = np.broadcast_to(fill, (n, *x.shape[1:])).copy()
        out[pad_b:pad_b + len(idx)] = x[idx]
        return out

    times_all = np.concatenate([np.asarray(before, np.float64), times, np.asarray(after, np.float64)])
    fps = (n - 1) / (times_all[-1] - times_all[0]) if n > 1 and times_all[-1] > times_all[0] else 1.0 / step
    return LandmarkTrack(
        times_s=times_all, landmarks=padded(lm.points, np.float32(np.nan)),
        blendshapes=padded(lm.scores, np.float32(0)), matrices=padded(lm.matrices, np.eye(4, dtype=np.float32)),
        face_mask=padded(lm.found, np.bool_(False)), width_px=width_px, height_px=height_px, fps=float(fps),
        n_decoded=0, n_detected=0)
