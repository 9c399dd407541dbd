"""Which face crops of a track get an identity embedding (the faces stage's identity pass, #15).

An identity embedding is the faces stage's most expensive step on CPU (dlib: about 60 ms per face,
ArcFace without a GPU similar), and most tracks are one person from start to end. So a track is
embedded densely only where its identity is in doubt:

* every ``every_n``-th detected frame of a track is *due*: its aligned crop is cut (dlib's 5 points
  and 150 px chip: about 2 ms) and held;
* a held crop is embedded when ``stride`` crops have been held since the last embedding. ``stride``
  starts at 1 and doubles after each embedding that agrees with the mean of the track's last
  ``RECENT`` embeddings, up to ``max_every_n / every_n``;
* an embedding that disagrees (farther than the threshold for dlib, below the cosine for ArcFace)
  embeds every crop held since the previous embedding too, and ``stride`` falls back to 1. Around
  any change of identity the track is therefore embedded on every due frame, as with
  ``max_every_n == every_n`` (the dense schedule), and ``stages.face_tracking`` finds the same break;
* when a sampled range ends, the last held crop of each track is embedded (same rule), so a track's
  end is never left unchecked.

What the sparse schedule can miss: another identity shown for less than ``max_every_n`` frames
between two agreeing embeddings (a flash, not a hand-over), and an outlier expression (which the
dense schedule, with ``faces.identity_confirm`` >= 2, leaves out of the mean anyway).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stages.face_identity import IdentityEmbedder
from stages.face_tracking import Detection

RECENT = 4  # embeddings of a track whose mean the next one is compared with


@dataclass
class TrackSchedule:
    """One track's sampling state."""

    stride: int = 1  # held crops per embedding
    held: list[tuple[Detection, Any]] = field(default_factory=list)  # due detections and their crops, oldest first
    recent: list[np.ndarray] = field(default_factory=list)  # the last RECENT embeddings


@dataclass
class IdentitySampler:
    """Embeds due faces of the tracks of one sampled range on the sparse schedule above.

    ``metric``/``threshold``: "euclidean" and the largest same-person distance (dlib), or "cosine"
    and the smallest same-person cosine (ArcFace). ``embeddings`` counts the embeddings computed and
    ``seconds`` their wall time (crops included).
    """

    embedder: IdentityEmbedder
    every_n: int
    max_every_n: int
    metric: str
    threshold: float
    embeddings: int = 0
    seconds: float = 0.0
    tracks: dict[int, TrackSchedule] = field(default_factory=dict)

    @property
    def max_stride(self) -> int:
        return max(1, self.max_every_n // max(1, self.every_n))

    def is_due(self, n_detected: int) -> bool:
        """Whether a track's ``n_detected``-th detection (1-based) is a due frame."""
        return (n_detected - 1) % max(1, self.every_n) == 0

    def offer(self, track_id: int, n_detected: int, rgb: np.ndarray, det: Detection) -> None:
        """A detection of ``track_id`` in ``rgb``; crops and embeds it (and held ones) when the schedule says."""
        if not self.is_due(n_detected):
            return
        t0 = time.perf_counter()
        state = self.tracks.setdefault(track_id, TrackSchedule())
        state.held.append((det, self.embedder.crop(rgb, det)))
        if not state.recent or len(state.held) >= state.stride:
            self.embed_latest(state)
        self.seconds += time.perf_counter() - t0

    def flush(self) -> None:
        """End of a sampled range: embed the last held crop of every track, then forget the tracks."""
        t0 = time.perf_counter()
        for state in self.tracks.values():
            if state.held:
                self.embed_latest(state)
        self.tracks.clear()
        self.seconds += time.perf_counter() - t0

    def embed_latest(self, state: TrackSchedule) -> None:
        """Embed the newest held crop; on disagreement the other held crops too. Clears ``held``."""
        det, crop = state.held[-1]
        det.embedding = self.embedder.embed_crop(crop)
        self.embeddings += 1
        if state.recent and self.disagrees(det.embedding, np.mean(state.recent, axis=0)):
            for older, older_crop in state.held[:-1]:
                older.embedding = self.embedder.embed_crop(older_crop)
                self.embeddings += 1
                state.recent.append(older.embedding)
            state.stride = 1
        elif state.recent:
            state.stride = min(2 * state.stride, self.max_stride)
        state.recent = (state.recent + [det.embedding])[-RECENT:]
        state.held.clear()

    def disagrees(self, embedding: np.ndarray, mean: np.ndarray) -> bool:
        """Whether ``embedding`` looks like another person than ``mean``."""
        if self.metric == "cosine":
            cos = float(embedding @ mean) / max(float(np.linalg.norm(embedding) * np.linalg.norm(mean)), 1e-12)
            return cos < self.threshold
        return float(np.linalg.norm(embedding.astype(np.float64) - mean)) > self.threshold
