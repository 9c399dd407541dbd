"""Turning finished files into shard, ledger and sources rows, and committing them.

Ray-free: the Ray job calls :func:`commit_items` from a ``map_batches`` task,
the serial executor calls it directly.
"""

from __future__ import annotations

import dataclasses
import io
import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import soundfile as sf

from pipeline.storage import OutputStore, compute_commit_id
from shards.codes import CODE_DIM
from shards.reader import ERRORS, REJECTS, SHARDS, SOURCES
from shards.schema import (
    ERROR_SCHEMA,
    MP_BLENDSHAPES_DIM,
    REJECT_SCHEMA,
    SHARD_SCHEMA,
    SOURCE_SCHEMA,
    shard_metadata,
)
from shards.spec import AUDIO_SR, N_MELS, to_pcm16
from stages.item import FileItem, Reject, make_clip_id


@dataclass
class CommitSummary:
    """What one commit wrote (one row of the driver's progress stream)."""

    commit_id: str
    n_files: int
    n_clips: int
    n_rejects: int
    audio_s: float  # seconds of source audio processed
    kept_s: float  # seconds kept as clips
    paths: list[str]
    n_errors: int = 0  # files that failed with an error (not committed as done; the next run retries them)


def encode_flac(clip: np.ndarray, subtype: str = "PCM_16") -> bytes:
    """FLAC bytes of 24 kHz mono float audio on the 16-bit grid of :func:`shards.spec.quantize_pcm16`."""
    pcm = to_pcm16(clip)
    buf = io.BytesIO()
    sf.write(buf, pcm, AUDIO_SR, format="FLAC", subtype=subtype)
    return buf.getvalue()


def nested_frames(arrays: list[np.ndarray | None], dim: int) -> pa.Array:
    """``list<fixed_size_list<float32, dim>>`` from per-row ``(n, dim)`` arrays (None -> null)."""
    offsets = [0]
    mask = []
    flat = []
    for a in arrays:
        if a is None:
            offsets.append(offsets[-1])
            mask.append(True)
            continue
        a = np.asarray(a, dtype=np.float32).reshape(-1, dim)
        flat.append(a.reshape(-1))
        offsets.append(offsets[-1] + len(a))
        mask.append(False)
    values = pa.array(np.concatenate(flat) if flat else np.zeros(0, np.float32), type=pa.float32())
    inner = pa.FixedSizeListArray.from_arrays(values, dim)
    return pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), inner,
                                    mask=pa.array(mask, type=pa.bool_()))


def build_clip_rows(item: FileItem, config_hash: str, flac_subtype: str) -> dict[str, list[Any]]:
    """Column lists for the kept segments of one file."""
    cols: dict[str, list[Any]] = {name: [] for name in SHARD_SCHEMA.names}
    assert item.audio_24k is not None or not item.segments
    for seg in item.segments:
        clip = item.audio_24k[seg.start_sample:seg.end_sample]
        scores = seg.dnsmos or {}
        asr = seg.extra.get("asr", {})
        prov = {"models": item.provenance.get("models", {}), "skipped": item.provenance.get("skipped", {}),
                "audio": item.provenance.get("audio", {}), "config_hash": config_hash, **seg.extra}
        row = {
            "clip_id": make_clip_id(item.source_sha256, seg.start_sample, seg.end_sample),
            "source_path": item.source_path, "source_sha256": item.source_sha256,
            "start_s": seg.start_s, "end_s": seg.end_s, "duration_s": seg.duration_s,
            "start_sample": seg.start_sample, "end_sample": seg.end_sample, "shot_index": seg.shot_index,
            "sample_rate": AUDIO_SR, "n_frames": int(seg.mel.shape[0]), "mel": seg.mel,
            "audio_flac": encode_flac(clip, flac_subtype),
            "dnsmos_ovrl": scores.get("ovrl"), "dnsmos_sig": scores.get("sig"),
            "dnsmos_bak": scores.get("bak"), "dnsmos_p808": scores.get("p808"),
            "text": seg.text, "text_model": seg.text_model, "language": seg.language,
            "language_prob": seg.language_prob, "text_source": asr.get("text_source"),
            "sidecar_wer": asr.get("sidecar_wer"), "chars_per_s": seg.extra.get("segment", {}).get("chars_per_s"),
            "words": seg.words, "speaker": seg.speaker,
            "voice_embedding": None if seg.voice_embedding is None else np.asarray(seg.voice_embedding, np.float32),
            "voice_track_cos": seg.voice_track_cos, "visual": seg.visual,
            "mp_blendshapes": seg.mp_blendshapes, "face_boxes": seg.face_boxes, "track_id": seg.track_id, "asd_score": seg.asd_score,
            "asd_lag_s": seg.asd_lag_s, "asd_scorer": seg.asd_scorer,
            "sync_conf": seg.sync_conf, "sync_dist": seg.sync_dist, "av_offset_s": seg.av_offset_s,
            "av_shift_applied_s": seg.av_shift_applied_s, "sync_model": seg.sync_model,
            "face_area_frac": seg.face_area_frac, "fit_rmse": seg.fit_rmse,
            "provenance": json.dumps(prov, sort_keys=True, default=str),
        }
        for k, v in row.items():
            cols[k].append(v)
    return cols


def build_shard_table(items: list[FileItem], config_hash: str, flac_subtype: str) -> pa.Table:
    cols: dict[str, list[Any]] = {name: [] for name in SHARD_SCHEMA.names}
    for item in items:
        for k, v in build_clip_rows(item, config_hash, flac_subtype).items():
            cols[k].extend(v)
    arrays = []
    for f in SHARD_SCHEMA:
        if f.name == "mel":
            arrays.append(nested_frames(cols["mel"], N_MELS))
        elif f.name == "visual":
            arrays.append(nested_frames(cols["visual"], CODE_DIM))
        elif f.name == "mp_blendshapes":
            arrays.append(nested_frames(cols["mp_blendshapes"], MP_BLENDSHAPES_DIM))
        elif f.name == "face_boxes":
            arrays.append(nested_frames(cols["face_boxes"], 4))
        else:
            arrays.append(pa.array(cols[f.name], type=f.type))
    table = pa.Table.from_arrays(arrays, schema=SHARD_SCHEMA)
    return table.replace_schema_metadata(shard_metadata(config_hash))


def reject_rows(item: FileItem) -> list[dict[str, Any]]:
    rows = []
    rejects = list(item.rejects)
    if not item.rejected and not item.segments and rejects:
        # Every segment was dropped: one file-level row says so, the segment rows say why.
        last = rejects[-1]
        rejects.append(Reject(stage=last.stage, reason="all_segments_rejected", value=float(len(rejects)),
                              detail="every candidate segment was rejected; see the segment rows"))
    for r in rejects:
        whole = r.start_s is None
        rows.append({
            "source_path": item.source_path, "source_sha256": item.source_sha256, "stage": r.stage,
            "reason": r.reason, "value": r.value, "threshold": r.threshold, "start_s": r.start_s,
            "end_s": r.end_s,
            "duration_s": (item.probe.duration_s if whole and r.reason != "all_segments_rejected"
                           else (0.0 if whole else r.end_s - r.start_s)),
            "detail": (r.detail + ("\n" + r.traceback if r.traceback else "")).strip(),
        })
    return rows


def is_error(item: FileItem) -> bool:
    """True when a stage failed on the file with an unexpected exception (a fault, not a reject)."""
    return any(r.reason == "error" for r in item.rejects)


def error_rows(item: FileItem, size_bytes: int, mtime: float, config_hash: str) -> list[dict[str, Any]]:
    at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return [{"source_path": item.source_path, "source_sha256": item.source_sha256, "size_bytes": size_bytes,
             "mtime": mtime, "attempt": int(item.provenance.get("attempt", 1)), "stage": r.stage,
             "detail": (r.detail + ("\n" + r.traceback if r.traceback else "")).strip(), "config_hash": config_hash,
             "at": at} for r in item.rejects if r.reason == "error"]


def source_row(item: FileItem, size_bytes: int, mtime: float, config_hash: str = "") -> dict[str, Any]:
    kept_s = sum(s.duration_s for s in item.segments)
    audio_s = (len(item.audio_24k) / AUDIO_SR) if item.audio_24k is not None else item.probe.duration_s
    status = "duplicate" if item.provenance.get("duplicate_of") else ("kept" if item.segments else "rejected")
    return {
        "source_path": item.source_path, "source_sha256": item.source_sha256, "size_bytes": size_bytes,
        "mtime": mtime, "status": status, "duration_s": audio_s, "kept_s": kept_s,
        "n_clips": len(item.segments), "n_rejects": len(reject_rows(item)), "has_video": item.probe.has_video,
        "probe": json.dumps(dataclasses.asdict(item.probe), sort_keys=True),
        "provenance": json.dumps(item.provenance, sort_keys=True, default=str),
        "stage_seconds": json.dumps({k: round(v, 4) for k, v in item.timings.items()}, sort_keys=True),
        "attempt": int(item.provenance.get("attempt", 1)), "config_hash": config_hash,
    }


def commit_items(store: OutputStore, items: list[FileItem], stats: dict[str, tuple[int, float]],
                 config_hash: str, row_group_size: int = 32, zstd_level: int = 3,
                 flac_subtype: str = "PCM_16") -> CommitSummary:
    """Write the shard, ledger and sources parts of ``items`` (sources last).

    ``stats`` maps source path to ``(size_bytes, mtime)`` from the listing.
    """
    # The path enters the id (a duplicate's commit must not overwrite its original's, which has the
    # same sha256), and a retried file's attempt number, so a retry never overwrites the parts of
    # the attempt that errored.
    commit_id = compute_commit_id([f"{i.source_sha256}:{i.source_path}" + (
        "" if i.provenance.get("attempt", 1) == 1 else f"#{i.provenance['attempt']}") for i in items])
    failed = [i for i in items if is_error(i)]
    items = [i for i in items if not is_error(i)]
    shard = build_shard_table(items, config_hash, flac_subtype)
    rejects = [r for i in items for r in reject_rows(i)]
    sources = [source_row(i, *stats.get(i.source_path, (i.probe.size_bytes, 0.0)), config_hash) for i in items]
    errors = [r for i in failed for r in error_rows(i, *stats.get(i.source_path, (i.probe.size_bytes, 0.0)),
                                                    config_hash)]
    name = f"part-{commit_id}.parquet"
    if shard.num_rows:
        store.write_table_atomic(f"{SHARDS}/{name}", shard, row_group_size, zstd_level)
    if rejects:
        store.write_table_atomic(f"{REJECTS}/{name}", pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA),
                                 row_group_size * 32, zstd_level)
    if errors:
        store.write_table_atomic(f"{ERRORS}/{name}", pa.Table.from_pylist(errors, schema=ERROR_SCHEMA),
                                 row_group_size * 32, zstd_level)
    store.write_table_atomic(f"{SOURCES}/{name}", pa.Table.from_pylist(sources, schema=SOURCE_SCHEMA),
                             row_group_size * 32, zstd_level)
    return CommitSummary(commit_id=commit_id, n_files=len(items) + len(failed), n_clips=shard.num_rows,
                         n_rejects=len(rejects), audio_s=float(sum(s["duration_s"] for s in sources)),
                         kept_s=float(sum(s["kept_s"] for s in sources)),
                         paths=[i.source_path for i in items + failed], n_errors=len(failed))


