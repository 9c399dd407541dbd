"""framing: the face-level part of fine segmentation, after active-speaker detection.

Active-speaker detection (``stages/asd.py``) picks the speaking face track of
each clip (``Segment.track_id``). This stage measures that track over the
clip's span and drops clips whose face is too small or not frontal enough,
each with a ledger row holding the measured value:

- ``face_too_small``: median box area / frame area below ``framing.min_face_area_frac``;
- ``not_frontal``: median |yaw| (degrees) above ``framing.max_abs_yaw_deg``.

Files without video pass through untouched (the ASD stage already recorded why).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from stages.base import Resources, Stage
from stages.item import FaceTrack, FileItem, Reject, Segment


def measure_track(track: FaceTrack, start_s: float, end_s: float) -> tuple[float, float]:
    """Median area fraction and median |yaw| (degrees) of ``track`` inside ``[start_s, end_s]``; NaN if none."""
    inside = (track.times_s >= start_s) & (track.times_s <= end_s)
    area = track.area_fracs()[inside]
    yaw = np.abs(track.yaw_deg[inside])
    area = area[np.isfinite(area)]
    yaw = yaw[np.isfinite(yaw)]
    return (float(np.median(area)) if area.size else float("nan"),
            float(np.median(yaw)) if yaw.size else float("nan"))


@dataclass
class FramingConfig:
    min_face_area_frac: float = 0.02  # face box area / frame area (median over the clip); smaller: face_too_small
    max_abs_yaw_deg: float = 45.0  # degrees: median |yaw| above this is not frontal (not_frontal)


@dataclass
class FramingStage(Stage):
    """Face area and frontalness of each clip's active speaker. Pure numpy; runs as a task."""

    name: str = "framing"
    cfg: FramingConfig = field(default_factory=FramingConfig)
    resources: Resources = field(default_factory=lambda: Resources(num_cpus=1))

    def check(self, seg: Segment, track: FaceTrack) -> Reject | None:
        area, yaw = measure_track(track, seg.start_s, seg.end_s)
        seg.extra["face"] = {"track_id": track.track_id, "area_frac_median": round(area, 5),
                             "abs_yaw_deg_median": round(yaw, 2)}
        if not area >= self.cfg.min_face_area_frac:
            return seg.reject(self.name, "face_too_small", area, self.cfg.min_face_area_frac,
                              detail="median face box area / frame area")
        if not yaw <= self.cfg.max_abs_yaw_deg:
            return seg.reject(self.name, "not_frontal", yaw, self.cfg.max_abs_yaw_deg,
                              detail="median |yaw| in degrees")
        return None

    def process_item(self, item: FileItem) -> None:
        if not item.probe.has_video:
            return
        tracks = {t.track_id: t for t in item.face_tracks}
        keep: list[Segment] = []
        dropped: list[Reject] = []
        for seg in item.segments:
            track = tracks.get(seg.track_id) if seg.track_id is not None else None
            if track is None:
                dropped.append(seg.reject(self.name, "no_speaker_track", None, None,
                                          detail="active-speaker detection chose no face track"))
                continue
            failed = self.check(seg, track)
            if failed is None:
                keep.append(seg)
            else:
                dropped.append(failed)
        item.drop_segments(keep, dropped)
