"""The unit of work that flows through the stages: one input file.

Every stage mutates :class:`FileItem` in place. A file carries its probe
result, its standardized audio, its shots and its segments. Segments that a
stage drops stay in ``item.rejects`` so the ledger can explain them.

Times are seconds from the start of the source file. Sample indices are at
24 kHz (``AUDIO_SR``). A segment's ``start_s`` is exactly
``start_sample / 24000``, so the clip's audio, mel frames and visual frames
share one time base: mel frame ``k`` of a clip is centred at
``start_s + k * 256 / 24000`` seconds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

AUDIO_SR = 24000  # Hz: the sample rate of every stored clip
MODEL_SR = 16000  # Hz: the rate of the 16 kHz models (VAD, DNSMOS, ASR)


@dataclass
class Reject:
    """One row of the rejects ledger."""

    stage: str
    reason: str
    value: float | None = None  # the measured value that failed the check
    threshold: float | None = None  # the configured limit it was checked against
    start_s: float | None = None  # None for a whole-file reject
    end_s: float | None = None
    detail: str = ""
    traceback: str = ""


@dataclass
class Segment:
    """A candidate clip inside one file."""

    start_sample: int  # at 24 kHz, inclusive
    end_sample: int  # at 24 kHz, exclusive
    shot_index: int = 0
    dnsmos: dict[str, float] | None = None
    mel: np.ndarray | None = None  # (n_frames, 100) float32
    visual: np.ndarray | None = None  # (n_frames, 61) float32
    mp_blendshapes: np.ndarray | None = None  # (n_video_frames, 52) float32 at 30 fps
    face_area_frac: float | None = None
    fit_rmse: float | None = None  # fraction of the inter-ocular distance
    text: str | None = None
    language: str | None = None
    words: list[dict[str, Any]] | None = None
    asd_score: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def start_s(self) -> float:
        return self.start_sample / AUDIO_SR

    @property
    def end_s(self) -> float:
        return self.end_sample / AUDIO_SR

    @property
    def duration_s(self) -> float:
        return (self.end_sample - self.start_sample) / AUDIO_SR

    def reject(self, stage: str, reason: str, value: float | None = None,
               threshold: float | None = None, detail: str = "") -> Reject:
        """Build the ledger row for dropping this segment."""
        return Reject(stage=stage, reason=reason, value=value, threshold=threshold,
                      start_s=self.start_s, end_s=self.end_s, detail=detail)


@dataclass
class ProbeInfo:
    """What ``probe`` learns about a file without decoding all of it."""

    container: str = ""
    size_bytes: int = 0
    duration_s: float = 0.0
    has_video: bool = False
    has_audio: bool = False
    video_codec: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None  # average frames per second
    variable_frame_rate: bool = False
    audio_codec: str | None = None
    audio_sample_rate: int | None = None  # Hz, as stored in the source
    audio_channels: int | None = None
    # Presentation time (seconds) of the first audio sample and first video frame.
    # Source time 0 is the first audio sample: a video frame with presentation
    # time p sits at source time p - audio_start_s.
    audio_start_s: float = 0.0
    video_start_s: float = 0.0


@dataclass
class FileItem:
    """One input file on its way through the stages."""

    source_path: str
    source_sha256: str = ""
    probe: ProbeInfo = field(default_factory=ProbeInfo)
    audio_24k: np.ndarray | None = None  # float32 mono, loudness-normalized
    audio_16k: np.ndarray | None = None  # float32 mono, same gain
    loudness_lufs: float | None = None  # integrated loudness before normalization
    gain_db: float | None = None
    shots: list[tuple[float, float]] = field(default_factory=list)  # seconds
    segments: list[Segment] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    rejected: bool = False  # the whole file is out
    provenance: dict[str, Any] = field(default_factory=lambda: {"models": {}, "skipped": {}})
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds

    def reject_file(self, reject: Reject) -> None:
        """Drop the whole file (and any segments it had) with one ledger row."""
        self.rejects.append(reject)
        self.rejected = True
        self.segments = []
        self.release_audio()

    def drop_segments(self, keep: list[Segment], dropped: list[Reject]) -> None:
        """Replace the segment list and ledger the dropped ones."""
        self.segments = keep
        self.rejects.extend(dropped)

    def release_audio(self) -> None:
        self.audio_24k = None
        self.audio_16k = None

    def record_model(self, stage: str, model: str) -> None:
        """Note in provenance which model actually ran for ``stage``."""
        self.provenance["models"][stage] = model

    def record_skip(self, stage: str, why: str) -> None:
        """Note in provenance that ``stage`` did not run, and why."""
        self.provenance["skipped"][stage] = why


def make_clip_id(source_sha256: str, start_sample: int, end_sample: int) -> str:
    """Deterministic clip id: the source hash plus the exact 24 kHz sample span."""
    digest = hashlib.sha256(f"{source_sha256}:{start_sample}:{end_sample}".encode()).hexdigest()
    return f"{source_sha256[:12]}-{start_sample:010d}-{digest[:8]}"
