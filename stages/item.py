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

from shards.schema import LEDGER_REASONS
from shards.spec import AUDIO_SR

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

    def __post_init__(self) -> None:
        if self.reason not in LEDGER_REASONS:  # a new reason is added to the registry (and so the docs)
            raise ValueError(f"ledger reason {self.reason!r} is not in shards.schema.LEDGER_REASONS")


@dataclass
class VideoFrames:
    """The speaker's face at each source video frame of a segment, at the frame's own time (not written out).

    The visual stage fills it; the sync stage re-interpolates from it when it shifts the video.
    """

    times_s: np.ndarray  # (T,) float64 source seconds, increasing
    codes: np.ndarray  # (T, 61) float32 fitted codes, faceless frames interpolated
    blendshapes: np.ndarray  # (T, 52) float32 MediaPipe's scores; zeros where no face
    boxes: np.ndarray  # (T, 4) float32 x0 y0 x1 y1 source pixels; NaN where no face
    face_mask: np.ndarray  # (T,) bool


@dataclass
class TrackLandmarks:
    """A face track's MediaPipe measures at every source frame it is on screen, at the frame's own time.

    ``faces`` measures them once (``stages/face_landmarks.py``); ``visual`` and the lip-sync speaker
    choice fit codes from them instead of running MediaPipe again. In memory only, dropped after ``visual``.
    """

    times_s: np.ndarray  # (K,) float64 source seconds, increasing
    points: np.ndarray  # (K, 478, 3) float32 source pixels (z: MediaPipe's relative depth, same scale); NaN if not found
    scores: np.ndarray  # (K, 52) float32 MediaPipe blendshape scores in [0, 1]; zeros where not found
    matrices: np.ndarray  # (K, 4, 4) float32 facial transformation matrices; identity where not found
    found: np.ndarray  # (K,) bool: the face was landmarked on this frame


@dataclass
class VoiceWindows:
    """GE2E voice embeddings of 1.6-s windows over a file's speech (``stages/voice_diarizer.py``)."""

    centres_s: np.ndarray  # (W,) float64 source seconds of the window centres
    owned: np.ndarray  # (W, 2) float64 source seconds: the part of the speech each window labels
    embeddings: np.ndarray  # (W, 256) float32 unit vectors
    labels: list[str]  # (W,) the speaker cluster of each window


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
    face_boxes: np.ndarray | None = None  # (n_video_frames, 4) float32 x0 y0 x1 y1 source px at 30 fps; NaN: no face
    face_area_frac: float | None = None
    fit_rmse: float | None = None  # fraction of the inter-ocular distance
    text: str | None = None  # raw transcript (sidecar transcript when supplied, else ASR)
    text_model: str | None = None  # normalized model text: characters (Latin) or tone pinyin (Chinese)
    language: str | None = None  # ISO 639-1 code from ASR (or config for sidecars)
    language_prob: float | None = None  # ASR language probability (0-1)
    words: list[dict[str, Any]] | None = None  # [{"word", "start_s", "end_s", "prob"}], source seconds
    speaker: str | None = None  # diarization label of the segment's single speaker; None if not run
    voice_embedding: np.ndarray | None = None  # (256,) float32 unit GE2E voice embedding (stages/voiceover.py)
    voice_track_cos: float | None = None  # cosine of the voice to the rest of its face track's clips
    track_id: int | None = None  # the active speaker's face track (FileItem.face_tracks)
    asd_score: float | None = None  # active-speaker score of that track (scorer-specific, higher = speaking)
    asd_lag_s: float | None = None  # seconds: best audio-visual lag (positive: video lags audio)
    asd_scorer: str | None = None  # which ActiveSpeakerScorer produced asd_score
    # Lip sync (stages/sync.py): seconds, positive = audio late; distance and confidence in 1 - cos units.
    sync_conf: float | None = None
    sync_dist: float | None = None
    av_offset_s: float | None = None
    av_shift_applied_s: float | None = None  # the offset corrected: video rows come from source time t - shift
    sync_model: str | None = None
    video_frames: VideoFrames | None = None  # the speaker's face per source frame (visual), in memory only
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
class FaceTrack:
    """One face followed through one shot, sampled at ``FileItem.face_fps``.

    Times are source seconds (audio time base). Arrays have one row per sampled
    frame of the track's span; rows where the tracker coasted (no detection)
    hold NaN.
    """

    track_id: int
    shot_index: int
    times_s: np.ndarray  # (T,) float64, source seconds of the sampled frames
    boxes: np.ndarray  # (T, 4) float32, x0 y0 x1 y1 in source pixels; NaN where missed
    scores: np.ndarray  # (T,) float32 detector confidence; NaN where missed
    mouth_open: np.ndarray  # (T,) float32 inner-lip gap / mouth width from landmarks; NaN if none
    yaw_deg: np.ndarray  # (T,) float32 head yaw in degrees (0 = frontal); NaN if none
    frame_w: int = 0  # px
    frame_h: int = 0  # px
    # Identity (stages/face_identity.py), on every faces.identity_every_n_frames-th detected frame:
    embedding: np.ndarray | None = None  # float32 track mean: (512,) L2-normalized ArcFace or (128,) dlib descriptor
    identity_min_cos: float | None = None  # ArcFace: lowest cosine of a frame's embedding to the track mean
    identity_max_dist: float | None = None  # dlib: largest Euclidean distance of a frame's descriptor to the mean
    n_embeddings: int = 0  # frames of the track that were embedded
    split_from: int | None = None  # id of the IoU track this one was cut from on an identity change (None: not cut)
    landmarks: TrackLandmarks | None = None  # per source frame (faces); None once visual has used them

    @property
    def start_s(self) -> float:
        return float(self.times_s[0])

    @property
    def end_s(self) -> float:
        return float(self.times_s[-1])

    def area_fracs(self) -> np.ndarray:
        """(T,) box area as a fraction of the frame area (NaN where missed)."""
        w = self.boxes[:, 2] - self.boxes[:, 0]
        h = self.boxes[:, 3] - self.boxes[:, 1]
        return (w * h) / float(max(1, self.frame_w * self.frame_h))


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
    n_audio_streams: int = 0  # audio streams in the container (the first one is used)
    empty_video_stream: bool = False  # a video stream is declared but holds no frame (then has_video is False)
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
    # A chunk of a long file (stages/chunk.py) carries only a window of the audio: ``audio_24k[0]`` is
    # source sample ``audio_origin`` (24 kHz; a multiple of 768, so the 16 kHz copy starts at the
    # exact sample ``audio_origin * 2 // 3`` on a 32 ms VAD window boundary). 0 for a whole file.
    audio_origin: int = 0
    n_samples: int | None = None  # 24 kHz samples of the whole file's audio (None: len(audio_24k))
    chunk: ChunkInfo | None = None  # set on the rows of a file split into chunks
    next_track_id: int = 0  # face-track ids the faces stage used (a chunk's ids are renumbered on merge)
    loudness_lufs: float | None = None  # integrated loudness before normalization
    gain_db: float | None = None
    shots: list[tuple[float, float]] = field(default_factory=list)  # seconds
    vad_probs: np.ndarray | None = None  # (n,) float32 silero speech probability per 32 ms window at 16 kHz
    face_tracks: list[FaceTrack] = field(default_factory=list)
    voice_windows: VoiceWindows | None = None  # voice embeddings over the speech (offline diarization)
    face_fps: float | None = None  # Hz: the rate the face tracks were sampled at
    sidecar_transcript: dict[str, Any] | None = None  # parsed .txt/.srt/.vtt next to the source, if any
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

    @property
    def total_samples(self) -> int:
        """24 kHz samples of the whole file's audio (a chunk knows the whole length too)."""
        if self.n_samples is not None:
            return self.n_samples
        return 0 if self.audio_24k is None else len(self.audio_24k)

    def slice_audio_24k(self, start: int, end: int) -> np.ndarray:
        """24 kHz samples ``[start, end)`` in source sample indices (clipped to the file, like a slice)."""
        assert self.audio_24k is not None, "the 24 kHz audio was released"
        return cut_window(self.audio_24k, self.audio_origin, self.total_samples, start, end)

    def slice_audio_16k(self, start: int, end: int) -> np.ndarray:
        """16 kHz samples ``[start, end)`` in source 16 kHz sample indices (clipped to the file)."""
        assert self.audio_16k is not None, "the 16 kHz audio was released"
        total = self.total_samples * MODEL_SR // AUDIO_SR if self.n_samples is not None else len(self.audio_16k)
        return cut_window(self.audio_16k, self.audio_origin * MODEL_SR // AUDIO_SR, total, start, end)


    def record_model(self, stage: str, model: str) -> None:
        """Note in provenance which model actually ran for ``stage``."""
        self.provenance["models"][stage] = model

    def record_skip(self, stage: str, why: str) -> None:
        """Note in provenance that ``stage`` did not run, and why."""
        self.provenance["skipped"][stage] = why


@dataclass
class ChunkInfo:
    """Where one chunk of a long file sits (``stages/chunk.py``); seconds of the source."""

    index: int  # 0-based position of the chunk in its file
    count: int  # chunks the file was cut into
    start_s: float  # the chunk owns the segments starting in [start_s, end_s)
    end_s: float
    base_provenance: dict[str, Any] = field(default_factory=dict)  # the file's provenance when it was cut


def cut_window(window: np.ndarray, origin: int, total: int, start: int, end: int) -> np.ndarray:
    """``audio[start:end]`` of a file whose samples ``[origin, origin + len(window))`` are held.

    Python slice semantics on the whole file (negative bounds are not allowed). Asking for samples
    of the file outside the window is a bug in the chunk plan (its padding is too small), so it raises
    instead of returning silence.
    """
    if start < 0 or end < 0:
        raise ValueError(f"negative sample bounds {start}:{end}")
    start, end = min(start, total), min(max(end, start), total)
    if start < origin or end > origin + len(window):
        raise ValueError(f"samples {start}:{end} are outside this chunk's audio window "
                         f"{origin}:{origin + len(window)} (the chunk padding is too small)")
    return window[start - origin:end - origin]


def make_clip_id(source_sha256: str, start_sample: int, end_sample: int) -> str:
    """Deterministic clip id: the source hash plus the exact 24 kHz sample span."""
    digest = hashlib.sha256(f"{source_sha256}:{start_sample}:{end_sample}".encode()).hexdigest()
    return f"{source_sha256[:12]}-{start_sample:010d}-{digest[:8]}"
