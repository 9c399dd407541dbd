"""Shard schema v3, the rejects ledger and the sources index, in one place.

``docs/shards.md`` documents every column. Readers must check
``omnitalker.schema_version`` in the file metadata before trusting a shard.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from stages.mel import MEL_SPEC, N_MELS

SCHEMA_VERSION = 3  # v3 (#7): face_boxes. v2 (#4): text_model, language_prob, text_source, sidecar_wer, chars_per_s, speaker, track_id, asd_lag_s, asd_scorer
FRAME_RATE = "24000/256"  # Hz, exactly 93.75: mel and visual frames per second
VISUAL_DIM = 61  # 51 blendshapes + 6 head pose + 4 eye
MP_BLENDSHAPES_DIM = 52  # MediaPipe's own scores, at 30 fps
VISUAL_LAYOUT = {
    "dim": VISUAL_DIM,
    "blendshapes": [0, 51],  # ARKit names in MediaPipe's order, without _neutral (no tongueOut)
    "pose": [51, 57],  # pitch, yaw, roll (radians, unwrapped), tx, ty (normalized image units), tz (from scale)
    "eye": [57, 61],  # left yaw, left pitch, right yaw, right pitch
    "frame_rate": FRAME_RATE,
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
    ("visual", pa.list_(pa.list_(pa.float32(), VISUAL_DIM))),
    ("mp_blendshapes", pa.list_(pa.list_(pa.float32(), MP_BLENDSHAPES_DIM))),
    # The speaker's face box per 30 fps frame (the frames of mp_blendshapes), x0 y0 x1 y1 in source
    # pixels; NaN where no face. The renderer's training crops source frames with it.
    ("face_boxes", pa.list_(pa.list_(pa.float32(), 4))),
    ("track_id", pa.int32()),  # the active speaker's face track within the source
    ("asd_score", pa.float32()),
    ("asd_lag_s", pa.float32()),  # seconds: best audio-visual lag (positive: video lags audio)
    ("asd_scorer", pa.string()),  # the ActiveSpeakerScorer that produced asd_score
    ("face_area_frac", pa.float32()),
    ("fit_rmse", pa.float32()),
    ("provenance", pa.string()),  # JSON: models that ran, stages skipped and why, audio facts
])

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
])


def feature_spec() -> dict[str, Any]:
    """The feature spec written into every shard's metadata."""
    return {"mel": MEL_SPEC, "visual": VISUAL_LAYOUT, "audio": {"sample_rate": 24000, "channels": 1,
                                                               "codec": "flac"}}


def shard_metadata(config_hash: str) -> dict[bytes, bytes]:
    """File-level key/value metadata of a shard."""
    return {
        b"omnitalker.schema_version": str(SCHEMA_VERSION).encode(),
        b"omnitalker.frame_rate": FRAME_RATE.encode(),
        b"omnitalker.feature_spec": json.dumps(feature_spec(), sort_keys=True).encode(),
        b"omnitalker.config_hash": config_hash.encode(),
    }


class SchemaVersionError(ValueError):
    """A shard written with another schema version."""


def check_shard_metadata(path: str, metadata: dict[bytes, bytes] | None) -> None:
    """Raise :class:`SchemaVersionError` naming ``path`` unless it was written with ``SCHEMA_VERSION``."""
    version = (metadata or {}).get(b"omnitalker.schema_version")
    if version is None:
        raise SchemaVersionError(f"{path}: not an omnitalker shard (no omnitalker.schema_version)")
    if int(version) != SCHEMA_VERSION:
        raise SchemaVersionError(f"{path}: schema version {int(version)}, this code reads {SCHEMA_VERSION}; "
                                 "re-run curation into a new output folder")
