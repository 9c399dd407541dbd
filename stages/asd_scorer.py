"""The active-speaker scorer interface and the track helpers every scorer shares.

``stages/asd.py`` (the stage) picks a scorer; ``stages/asd_classical.py`` and
``stages/asd_learned.py`` implement :class:`ActiveSpeakerScorer`. They import this module and
never the stage, so the three have no import cycle.

Times are source seconds; VAD probabilities are silero's, one per 32 ms window of 16 kHz audio.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from stages.item import FaceTrack

VAD_WINDOW_S = 0.032  # seconds per silero VAD probability (512 samples at 16 kHz)
VAD_WINDOW = 512  # samples at 16 kHz


@dataclass
class AsdResult:
    """One scorer's verdict on one track over one segment."""

    score: float  # scorer-specific, higher = speaking (classical: 0-1)
    lag_s: float  # seconds: best audio-visual lag (positive: video lags audio)
    detail: dict[str, float] = field(default_factory=dict)  # scorer-specific measures, JSON-able


class ActiveSpeakerScorer(Protocol):
    """Scores how well a face track's visible speech matches a stretch of audio.

    ``audio_16k`` is 16 kHz mono starting at ``audio_start_s`` (source seconds) and
    reaches at least ``context_s`` beyond ``[start_s, end_s)`` where the file allows;
    ``vad_probs`` are the silero probabilities of the same stretch, window ``i``
    covering ``audio_start_s + [i, i + 1) * 0.032`` s. ``source_path`` is the media
    file, for scorers that look at pixels.
    """

    name: str

    def score(self, track: FaceTrack, audio_16k: np.ndarray, audio_start_s: float, vad_probs: np.ndarray,
              start_s: float, end_s: float, source_path: str | None = None) -> AsdResult: ...


def slice_track(track: FaceTrack, start_s: float, end_s: float) -> np.ndarray:
    """Indices of the track's frames inside ``[start_s, end_s)``."""
    return np.flatnonzero((track.times_s >= start_s - 1e-6) & (track.times_s < end_s - 1e-6))


def sample_vad(vad_probs: np.ndarray, vad_start_s: float, times_s: np.ndarray) -> np.ndarray:
    """Speech probability at ``times_s`` (nearest 32 ms window; 0 outside)."""
    idx = np.floor((np.asarray(times_s) - vad_start_s) / VAD_WINDOW_S).astype(int)
    ok = (idx >= 0) & (idx < len(vad_probs))
    out = np.zeros(len(idx), np.float32)
    out[ok] = vad_probs[idx[ok]]
    return out


class LastAudioFeature:
    """The feature of the last audio array seen: a segment's candidate tracks share one audio cut,
    so its envelope or MFCCs are computed once per segment, not once per track."""

    def __init__(self) -> None:
        self.audio: np.ndarray | None = None  # held, so its id cannot be reused by another array
        self.feature: np.ndarray | None = None
        self.hits = 0  # features served from the cache (a test reads it)

    def get(self, audio: np.ndarray, compute) -> np.ndarray:
        """``compute(audio)``, or the value computed for this very array last time."""
        if audio is self.audio and self.feature is not None:
            self.hits += 1
            return self.feature
        self.audio, self.feature = audio, compute(audio)
        return self.feature


def fill_gaps(times_s: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Linearly interpolate NaN samples (held at the ends)."""
    ok = np.isfinite(values)
    if ok.all():
        return values.astype(np.float64)
    return np.interp(times_s, times_s[ok], values[ok].astype(np.float64))
