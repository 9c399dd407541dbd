"""IoU face tracking on a constant frame-rate grid, and identity splitting.

The tracker is fed one sampled frame at a time (``update``) with that frame's
detections. Detections are matched greedily to live tracks by box IoU (best
pair first); a track that finds no match coasts for up to ``max_missed_frames``
frames (its rows hold NaN) and is closed after that. Unmatched detections open
new tracks. The tracker knows nothing about shots or time: the caller runs one
tracker per contiguous sampled range inside one shot, so a track never crosses
a shot boundary.

Identity: given embeddings on a subsample of a track's frames, a track is cut
wherever a frame's embedding disagrees with the running mean of the current
piece (an IoU tracker can hand a box over to another person who steps into the
same place, or a cross-fade can turn one face into another without a cut):
``find_identity_breaks`` for L2-normalized ArcFace embeddings (below ``min_cos``
cosine), ``find_distance_breaks`` for dlib descriptors (farther than
``max_dist`` Euclidean). With ``confirm`` > 1 a single disagreeing embedding
(a laugh with the head thrown back, motion blur) is an outlier, not a new person.
``choose_cut_frame`` and ``split_track`` then cut.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np


class CropMeasure(NamedTuple):
    """MediaPipe's measure of one face in one frame (``stages.face_detectors.CropLandmarker.measure``)."""

    landmarks: np.ndarray  # (478, 3) float32 pixels of the image measured (z: MediaPipe's depth, same scale)
    matrix: np.ndarray  # (4, 4) float32 facial transformation matrix
    scores: np.ndarray  # (52,) float32 MediaPipe blendshape scores in [0, 1], _neutral first


@dataclass
class Detection:
    """One face in one frame; pixels of the image the detector saw."""

    box: np.ndarray  # (4,) float32 x0 y0 x1 y1, source pixels
    score: float  # detector confidence (0-1)
    keypoints: np.ndarray | None = None  # (K, 2) float32 pixels (insightface: 5 points, MediaPipe: 6)
    mouth_open: float = float("nan")  # inner-lip gap / mouth width from the 478 landmarks; NaN if none
    yaw_deg: float = float("nan")  # degrees, 0 = frontal; NaN if no landmarks
    embedding: np.ndarray | None = None  # identity subsample only: (512,) L2-normalized ArcFace or (128,) dlib
    landmarks: CropMeasure | None = None  # MediaPipe's measure of this face, points in source pixels (faces)


@dataclass
class RawTrack:
    """A track under construction: one entry per sampled frame from its first detection on."""

    track_id: int
    first_frame: int  # index of the first sampled frame (in the tracker's frame count)
    detections: list[Detection | None] = field(default_factory=list)  # None where it coasted
    missed: int = 0  # consecutive frames without a match
    split_from: int | None = None  # id of the track this piece was cut from by identity (None: not cut)

    @property
    def last_frame(self) -> int:
        return self.first_frame + len(self.detections) - 1

    @property
    def last_box(self) -> np.ndarray:
        for det in reversed(self.detections):
            if det is not None:
                return det.box
        raise ValueError("track without detections")

    def trim(self) -> None:
        """Drop the coasted frames at the end (a track ends at its last detection)."""
        while self.detections and self.detections[-1] is None:
            self.detections.pop()

    @property
    def n_detected(self) -> int:
        return sum(d is not None for d in self.detections)


def compute_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (N, M) of boxes ``a`` (N, 4) and ``b`` (M, 4) given as x0 y0 x1 y1."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def match_greedy(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Pairs ``(row, col)`` taken best IoU first, each row and column once, IoU >= ``threshold``."""
    pairs: list[tuple[int, int]] = []
    if iou.size == 0:
        return pairs
    order = np.argsort(-iou, axis=None, kind="stable")
    used_r: set[int] = set()
    used_c: set[int] = set()
    for flat in order:
        r, c = divmod(int(flat), iou.shape[1])
        if iou[r, c] < threshold:
            break
        if r in used_r or c in used_c:
            continue
        pairs.append((r, c))
        used_r.add(r)
        used_c.add(c)
    return pairs


class IouTracker:
    """Greedy IoU tracker over consecutive sampled frames.

    ``iou_threshold``: lowest box IoU (0-1) that continues a track.
    ``max_missed_frames``: sampled frames a track may coast without a detection.
    """

    def __init__(self, iou_threshold: float = 0.3, max_missed_frames: int = 5, first_id: int = 0) -> None:
        self.iou_threshold = float(iou_threshold)
        self.max_missed_frames = int(max_missed_frames)
        self.next_id = int(first_id)
        self.frame = -1
        self.live: list[RawTrack] = []
        self.closed: list[RawTrack] = []

    def update(self, detections: list[Detection]) -> list[int]:
        """Advance one frame; return the track id given to each detection (same order)."""
        self.frame += 1
        ids = [-1] * len(detections)
        if self.live and detections:
            iou = compute_iou(np.stack([t.last_box for t in self.live]), np.stack([d.box for d in detections]))
            pairs = match_greedy(iou, self.iou_threshold)
        else:
            pairs = []
        matched_tracks = set()
        for r, c in pairs:
            track = self.live[r]
            track.detections.append(detections[c])
            track.missed = 0
            ids[c] = track.track_id
            matched_tracks.add(r)
        still: list[RawTrack] = []
        for r, track in enumerate(self.live):
            if r not in matched_tracks:
                track.missed += 1
                if track.missed > self.max_missed_frames:
                    self.close(track)
                    continue
                track.detections.append(None)
            still.append(track)
        self.live = still
        for c, det in enumerate(detections):
            if ids[c] < 0:
                track = RawTrack(track_id=self.next_id, first_frame=self.frame, detections=[det])
                self.next_id += 1
                self.live.append(track)
                ids[c] = track.track_id
        return ids

    def close(self, track: RawTrack) -> None:
        track.trim()
        self.closed.append(track)

    def finish(self) -> list[RawTrack]:
        """Close every live track; return all tracks ordered by id."""
        for track in self.live:
            self.close(track)
        self.live = []
        return sorted(self.closed, key=lambda t: t.track_id)


def cosine_to_mean(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, cosines)``: the L2-normalized mean of (N, D) embeddings and each row's cosine to it."""
    e = np.asarray(embeddings, dtype=np.float64)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    mean = e.mean(axis=0)
    mean = mean / max(float(np.linalg.norm(mean)), 1e-12)
    return mean.astype(np.float32), (e @ mean).astype(np.float32)


def walk_identity_breaks(embeddings: np.ndarray, disagrees: Callable[[np.ndarray, np.ndarray], bool],
                         confirm: int = 1) -> list[int]:
    """Rows of time-ordered (N, D) ``embeddings`` where a new identity starts.

    Each row is compared with the mean of the current piece (``disagrees(mean, row)``).
    A row that agrees joins the piece. A row that disagrees starts a new piece when it
    and the next ``confirm - 1`` rows all disagree with that mean; otherwise it is an
    outlier (a laugh, a blur, a hand) and is left out of the mean. ``confirm=1``: every
    disagreeing row starts a new piece.
    """
    e = np.asarray(embeddings, dtype=np.float64)
    breaks: list[int] = []
    if len(e) == 0:
        return breaks
    confirm = max(1, int(confirm))
    acc, n = e[0].copy(), 1
    for k in range(1, len(e)):
        mean = acc / n
        if not disagrees(mean, e[k]):
            acc += e[k]
            n += 1
        elif k + confirm <= len(e) and all(disagrees(mean, r) for r in e[k:k + confirm]):
            breaks.append(k)
            acc, n = e[k].copy(), 1
    return breaks


def find_identity_breaks(frames: list[int], embeddings: np.ndarray, min_cos: float, confirm: int = 1) -> list[int]:
    """Positions in ``frames`` (sorted frame indices with one embedding each) where a new identity starts.

    For L2-normalized embeddings (ArcFace): a row below ``min_cos`` cosine to the
    (normalized) running mean of the current piece disagrees; ``confirm`` as in
    :func:`walk_identity_breaks`.
    """
    if len(frames) == 0:
        return []
    e = np.asarray(embeddings, dtype=np.float64)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)

    def disagrees(mean: np.ndarray, row: np.ndarray) -> bool:
        return float(row @ mean) / max(float(np.linalg.norm(mean)), 1e-12) < min_cos

    return walk_identity_breaks(e, disagrees, confirm)


def distance_to_mean(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, distances)``: the mean of (N, D) embeddings (not normalized) and each row's Euclidean
    distance to it (units of the embedding space: dlib descriptors)."""
    e = np.asarray(embeddings, dtype=np.float64)
    mean = e.mean(axis=0)
    return mean.astype(np.float32), np.linalg.norm(e - mean, axis=1).astype(np.float32)


def find_distance_breaks(frames: list[int], embeddings: np.ndarray, max_dist: float, confirm: int = 1) -> list[int]:
    """Positions in ``frames`` where a new identity starts, for embeddings compared by Euclidean distance.

    For dlib descriptors: a row farther than ``max_dist`` from the running mean of the
    current piece disagrees; ``confirm`` as in :func:`walk_identity_breaks`.
    """
    if len(frames) == 0:
        return []

    def disagrees(mean: np.ndarray, row: np.ndarray) -> bool:
        return float(np.linalg.norm(row - mean)) > max_dist

    return walk_identity_breaks(np.asarray(embeddings, dtype=np.float64), disagrees, confirm)


def choose_cut_frame(track: RawTrack, lo: int, hi: int) -> int:
    """Frame index in ``(lo, hi]`` where the box jumps most (lowest IoU to the previous detection).

    ``lo`` and ``hi`` are absolute frame indices of two embedded frames with
    different identities; the switch happened somewhere after ``lo``.
    """
    best, best_iou = hi, np.inf
    prev = track.detections[lo - track.first_frame]
    for f in range(lo + 1, hi + 1):
        det = track.detections[f - track.first_frame]
        if det is None:
            continue
        if prev is not None:
            iou = float(compute_iou(prev.box, det.box)[0, 0])
            if iou < best_iou:
                best, best_iou = f, iou
        prev = det
    return best


def split_track(track: RawTrack, cut_frames: list[int], next_id: int) -> list[RawTrack]:
    """Cut ``track`` before each absolute frame in ``cut_frames``; new pieces get ids from ``next_id``."""
    pieces: list[RawTrack] = []
    bounds = [track.first_frame] + sorted(cut_frames) + [track.last_frame + 1]
    for k in range(len(bounds) - 1):
        a, b = bounds[k], bounds[k + 1]
        dets = track.detections[a - track.first_frame:b - track.first_frame]
        tid = track.track_id if k == 0 else next_id + k - 1
        piece = RawTrack(track_id=tid, first_frame=a, detections=list(dets),
                         split_from=track.track_id if cut_frames else track.split_from)
        piece.trim()
        while piece.detections and piece.detections[0] is None:  # start at a detection
            piece.detections.pop(0)
            piece.first_frame += 1
        if piece.detections:
            pieces.append(piece)
    return pieces


def split_by_identity(raw: list[RawTrack], next_id: int, metric: str, threshold: float, confirm: int
                      ) -> tuple[list[RawTrack], int, int]:
    """Cut every track whose embeddings disagree (``metric`` "cosine": below ``threshold``; else Euclidean
    farther than it); return the pieces, the next free id and the number of cuts."""
    out: list[RawTrack] = []
    splits = 0
    for track in raw:
        frames = [track.first_frame + j for j, d in enumerate(track.detections) if d is not None and d.embedding is not None]
        if len(frames) < 2:
            out.append(track)
            continue
        embs = np.stack([track.detections[f - track.first_frame].embedding for f in frames])
        find = find_identity_breaks if metric == "cosine" else find_distance_breaks
        breaks = find(frames, embs, threshold, confirm)
        if not breaks:
            out.append(track)
            continue
        cuts = [choose_cut_frame(track, frames[k - 1], frames[k]) for k in breaks]
        pieces = split_track(track, cuts, next_id)
        next_id += len(pieces) - 1
        splits += len(pieces) - 1
        out.extend(pieces)
    return out, next_id, splits
