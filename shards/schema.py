"""Shard schema v3, the rejects ledger and the sources index, in one place.

``docs/shards.md`` documents every column. Readers must check
``omnitalker.schema_version`` in the file metadata before trusting a shard.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from shards.codes import CODE_DIM, EXPRESSION_SLICE, EYE_SLICE, POSE_SLICE
from shards.spec import AUDIO_SPEC, FRAME_RATE_TEXT, MEL_SPEC, N_MELS
from shards.sync_score import LAG_COST_PER_S

SCHEMA_VERSION = 5  # v5 (#13): voice_embedding, voice_track_cos. v4 (#12): sync_conf, sync_dist, av_offset_s, av_shift_applied_s, sync_model. v3 (#7): face_boxes. v2 (#4): text_model, language_prob, text_source, sidecar_wer, chars_per_s, speaker, track_id, asd_lag_s, asd_scorer
VOICE_DIM = 256  # GE2E voice embedding size (stages/voice.py EMBED_DIM is this)
MP_BLENDSHAPES_DIM = 52  # MediaPipe's own scores, at 30 fps
# The visual column's layout as the feature spec states it (derived from shards.codes).
VISUAL_LAYOUT = {
    "dim": CODE_DIM,
    "blendshapes": [EXPRESSION_SLICE.start, EXPRESSION_SLICE.stop],  # ARKit names in MediaPipe's order, no _neutral
    "pose": [POSE_SLICE.start, POSE_SLICE.stop],  # pitch, yaw, roll (radians, unwrapped), tx, ty, tz
    "eye": [EYE_SLICE.start, EYE_SLICE.stop],  # left yaw, left pitch, right yaw, right pitch
    "frame_rate": FRAME_RATE_TEXT,
}
WORD_TYPE = pa.struct([("word", pa.string()), ("start_s", pa.float64()), ("end_s", pa.float64()),
                       ("prob", pa.float32())])

SHARD_SCHEMA = pa.schema([
    ("clip_id", pa.string()),
    ("source_path", pa.string()),
    ("source_sha256", pa.string()),
    ("start_s", pa.float64()),
    ("end_s", pa.float64()),
    ("duration_s", pa.float64()),
    ("start_sample", pa.int64()),
    ("end_sample", pa.int64()),
    ("shot_index", pa.int32()),
    ("sample_rate", pa.int32()),
    ("n_frames", pa.int32()),
    ("mel", pa.list_(pa.list_(pa.float32(), N_MELS))),
    ("audio_flac", pa.binary()),
    ("dnsmos_ovrl", pa.float32()),
    ("dnsmos_sig", pa.float32()),
    ("dnsmos_bak", pa.float32()),
    ("dnsmos_p808", pa.float32()),
    # Text (ASR, fine segmentation): null only where the stage was skipped.
    ("text", pa.string()),  # raw transcript (a sidecar transcript when supplied, else whisper)
    ("text_model", pa.string()),  # normalized model text: characters (Latin) or tone-number pinyin (Chinese)
    ("language", pa.string()),
    ("language_prob", pa.float32()),
    ("text_source", pa.string()),  # sidecar | asr
    ("sidecar_wer", pa.float32()),  # WER between the sidecar transcript and whisper; null without a sidecar
    ("chars_per_s", pa.float32()),  # model-text letters+digits per second
    ("words", pa.list_(WORD_TYPE)),
    ("speaker", pa.string()),  # diarization label; null where diarization was skipped (see provenance)
    # The clip's GE2E voice embedding (unit length; stages/voice.py): group clips by speaker with it.
    ("voice_embedding", pa.list_(pa.float32(), VOICE_DIM)),
    ("voice_track_cos", pa.float32()),  # cosine of the voice to the other clips of its face track
    ("visual", pa.list_(pa.list_(pa.float32(), CODE_DIM))),
    ("mp_blendshapes", pa.list_(pa.list_(pa.float32(), MP_BLENDSHAPES_DIM))),
    # The speaker's face box per 30 fps frame (the frames of mp_blendshapes), x0 y0 x1 y1 in source
    # pixels; NaN where no face. The renderer's training crops source frames with it.
    ("face_boxes", pa.list_(pa.list_(pa.float32(), 4))),
    ("track_id", pa.int32()),  # the active speaker's face track within the source
    ("asd_score", pa.float32()),
    ("asd_lag_s", pa.float32()),  # seconds: best audio-visual lag (positive: video lags audio)
    ("asd_scorer", pa.string()),  # the ActiveSpeakerScorer that produced asd_score
    # Lip sync (stages/sync.py): the lip-sync model's distance curve over audio-visual lags.
    ("sync_conf", pa.float32()),  # median distance minus the best within sync.max_correct_s (1 - cos units)
    ("sync_dist", pa.float32()),  # the best distance (1 - cos; 0 = matched)
    ("av_offset_s", pa.float32()),  # seconds: best lag, positive = audio late (sound after the lip movement)
    ("av_shift_applied_s", pa.float32()),  # seconds the video side was moved to correct it (visual rows: t - shift)
    ("sync_model", pa.string()),  # the lip-sync weights that scored the clip
    ("face_area_frac", pa.float32()),
    ("fit_rmse", pa.float32()),
    ("provenance", pa.string()),  # JSON: models that ran, stages skipped and why, audio facts
])

# Every reason a ledger row can carry, with the stage(s) that emit it (docs/shards.md lists them;
# stages.item.Reject refuses any other, tests/shards/test_reasons.py checks the doc and the code).
LEDGER_REASONS: dict[str, str] = {
    "missing": "probe: the input path does not exist",
    "empty_file": "probe: 0 bytes",
    "unsupported_extension": "probe: not a media container the job decodes (listed inputs are never skipped unsaid)",
    "unreadable": "probe: PyAV cannot open it",
    "no_audio": "probe: no audio stream",
    "no_video": "probe: no video stream, or one without frames (probe.require_video)",
    "too_large": "probe: the video declares more pixels per frame than probe.max_frame_pixels",
    "too_short": "probe, vad, diarize, segment: shorter than the stage's minimum",
    "duplicate": "probe: the same bytes as another input",
    "undecodable_audio": "audio: the audio stream does not decode",
    "audio_gaps": "audio: decode gaps and corrupt packets above audio.max_gap_frac",
    "silent": "audio: loudness below audio.silence_lufs",
    "no_speech": "vad: no speech region",
    "multi_speaker": "diarize: a second speaker or overlapped speech",
    "no_text": "asr: no words, or whisper's no-speech probability too high",
    "no_words": "segment: no word timings to cut at",
    "too_long": "segment: longer than segment.max_clip_s after cutting",
    "chars_per_s_low": "segment: speaking rate below segment.min_chars_per_s",
    "chars_per_s_high": "segment: speaking rate above segment.max_chars_per_s",
    "language_not_allowed": "segment: the detected language is not in segment.allowed_languages",
    "language_prob": "segment: language probability below segment.min_language_prob",
    "low_dnsmos_ovrl": "dnsmos: OVRL below dnsmos.min_dnsmos_ovrl",
    "low_dnsmos_sig": "dnsmos: SIG below dnsmos.min_dnsmos_sig",
    "low_dnsmos_bak": "dnsmos: BAK below dnsmos.min_dnsmos_bak",
    "no_face_track": "asd: no face track covers the segment",
    "voice_over": "asd: speech, but no face on screen moves its mouth and the face is still",
    "off_screen_speaker": "asd: speech, no mouth moves, a live face: the voice is someone off screen",
    "asd_low": "asd: the best active-speaker score is below the threshold",
    "asd_ambiguous": "asd: several faces and no clear speaker",
    "no_speaker_track": "framing: the speaker's face track is missing",
    "face_too_small": "framing: face box below framing.min_face_area_frac of the frame",
    "not_frontal": "framing: median |yaw| above framing.max_abs_yaw_deg",
    "voice_mismatch": "voiceover: the voice is unlike the rest of its face track's clips",
    "no_face": "visual: too many frames without a face",
    "face_gap": "visual: a stretch without a face longer than visual.max_faceless_gap_s",
    "fit_rmse": "visual: the blendshape fit's error is too high",
    "too_short_for_sync": "sync: shorter than the lip-sync model's window",
    "av_offset": "sync: audio-visual offset beyond sync.max_correct_s",
    "lip_sync_low": f"sync: lip-sync score sync_conf + (1 - sync_dist) - {LAG_COST_PER_S:g} abs(av_offset_s) below "
                    "sync.min_score (dubbed or out of sync)",
    "all_segments_rejected": "writer: every segment of the file was dropped (the rows above say why)",
    "error": "any stage: an unexpected exception (in errors/, never in rejects/: the file is retried)",
}

REJECT_SCHEMA = pa.schema([
    ("source_path", pa.string()),
    ("source_sha256", pa.string()),
    ("stage", pa.string()),
    ("reason", pa.string()),
    ("value", pa.float64()),  # the measured value
    ("threshold", pa.float64()),  # the configured limit
    ("start_s", pa.float64()),  # null for a whole-file reject
    ("end_s", pa.float64()),
    ("duration_s", pa.float64()),  # seconds of audio this row drops
    ("detail", pa.string()),
])

SOURCE_SCHEMA = pa.schema([
    ("source_path", pa.string()),
    ("source_sha256", pa.string()),
    ("size_bytes", pa.int64()),
    ("mtime", pa.float64()),
    ("status", pa.string()),  # kept | rejected | duplicate
    ("duration_s", pa.float64()),  # seconds of audio in the source
    ("kept_s", pa.float64()),  # seconds kept as clips
    ("n_clips", pa.int32()),
    ("n_rejects", pa.int32()),
    ("has_video", pa.bool_()),
    ("probe", pa.string()),  # JSON ProbeInfo
    ("provenance", pa.string()),  # JSON
    ("stage_seconds", pa.string()),  # JSON {stage: wall seconds}
    ("attempt", pa.int32()),  # which attempt at this file committed it (earlier ones errored: errors/)
    ("config_hash", pa.string()),  # the config that produced this file's rows
])

# errors/: one row per failed attempt at a file. A fault of the code or the environment (an
# unexpected exception), never a verdict on the input: the file is not done, the next run retries it.
ERROR_SCHEMA = pa.schema([
    ("source_path", pa.string()),
    ("source_sha256", pa.string()),
    ("size_bytes", pa.int64()),
    ("mtime", pa.float64()),
    ("attempt", pa.int32()),
    ("stage", pa.string()),
    ("detail", pa.string()),  # exception type, message and traceback
    ("config_hash", pa.string()),
    ("at", pa.string()),  # local time of the attempt, ISO 8601
])


def feature_spec() -> dict[str, Any]:
    """The feature spec written into every shard's metadata."""
    return {"mel": MEL_SPEC, "visual": VISUAL_LAYOUT, "audio": dict(AUDIO_SPEC)}


def shard_metadata(config_hash: str) -> dict[bytes, bytes]:
    """File-level key/value metadata of a shard."""
    return {
        b"omnitalker.schema_version": str(SCHEMA_VERSION).encode(),
        b"omnitalker.frame_rate": FRAME_RATE_TEXT.encode(),
        b"omnitalker.feature_spec": json.dumps(feature_spec(), sort_keys=True).encode(),
        b"omnitalker.config_hash": config_hash.encode(),
    }


class SchemaVersionError(ValueError):
    """A shard written with another schema version."""


def read_schema_version(path: str, metadata: dict[bytes, bytes] | None) -> int:
    """The ``omnitalker.schema_version`` of a shard; :class:`SchemaVersionError` naming ``path`` if absent or garbled."""
    raw = (metadata or {}).get(b"omnitalker.schema_version")
    if raw is None:
        raise SchemaVersionError(f"{path}: not an omnitalker shard (no omnitalker.schema_version)")
    try:
        return int(raw)
    except ValueError as e:
        raise SchemaVersionError(f"{path}: unreadable omnitalker.schema_version {raw!r}") from e


def check_shard_metadata(path: str, metadata: dict[bytes, bytes] | None) -> None:
    """Raise :class:`SchemaVersionError` naming ``path`` unless it was written with ``SCHEMA_VERSION``."""
    version = read_schema_version(path, metadata)
    if version != SCHEMA_VERSION:
        raise SchemaVersionError(f"{path}: schema version {version}, this code reads {SCHEMA_VERSION}; "
                                 "re-run curation into a new output folder")
