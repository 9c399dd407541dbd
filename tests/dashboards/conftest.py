"""Fixtures for the dashboard tests.

``synthetic_out`` is a small output folder written here with pyarrow in the real shard
schema (``shards.schema``): two shard parts (one with two row groups), rejects, sources
and a manifest, in about a second. The app tests use ``curated_serial`` (tests/conftest.py):
real shards curated from the shared media.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from dashboards import data

CONFIG = {"segment": {"min_clip_s": 3.0, "max_clip_s": 30.0, "min_chars_per_s": 4.0, "max_chars_per_s": 25.0},
          "dnsmos": {"min_dnsmos_ovrl": 3.0, "min_dnsmos_sig": 0.0}, "asd": {"scorer": "classical", "min_asd_score": 0.3},
          "visual": {"max_fit_rmse_iod": 0.05}, "sync": {"min_score": 0.52, "max_correct_s": 0.2}}
SR = 24000


def encode_flac(seconds: float, hz: float = 220.0) -> bytes:
    t = np.arange(int(seconds * SR)) / SR
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), SR, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def make_clip(i: int, language: str, source: str, start_s: float, seconds: float, visual: bool = True
              ) -> dict[str, Any]:
    """One shard row with every schema column a test looks at; the rest stay null."""
    rng = np.random.default_rng(i)
    start_sample, end_sample = int(start_s * SR), int((start_s + seconds) * SR)
    n = 1 + (end_sample - start_sample) // 256
    codes = np.zeros((n, 61), np.float32)
    codes[:, 24] = np.linspace(0, 1, n)  # jawOpen (EXPRESSION_NAMES index 24) ramps up
    codes[:, 52] = np.radians(10.0)  # yaw 10 degrees
    n_mp = int(seconds * 30)
    return {
        "clip_id": f"clip{i:02d}", "source_path": source, "source_sha256": f"{i:064x}",
        "start_s": start_s, "end_s": start_s + seconds, "duration_s": seconds,
        "start_sample": start_sample, "end_sample": end_sample, "shot_index": 0, "sample_rate": SR, "n_frames": n,
        "mel": rng.normal(size=(n, 100)).astype(np.float32).tolist(), "audio_flac": encode_flac(seconds),
        "dnsmos_ovrl": 2.9 + 0.1 * i, "dnsmos_sig": 3.5, "dnsmos_bak": 3.9, "dnsmos_p808": 3.6,
        "text": f"clip number {i} says hello", "text_model": f"clip number {i} says hello", "language": language,
        "language_prob": None, "text_source": "asr", "sidecar_wer": None, "chars_per_s": 5.0 + i,
        "words": [{"word": "hello", "start_s": start_s + 0.1, "end_s": start_s + 0.5, "prob": 0.9}],
        "speaker": None, "visual": codes.tolist() if visual else None,
        "mp_blendshapes": rng.uniform(size=(n_mp, 52)).astype(np.float32).tolist() if visual else None,
        "track_id": 0, "asd_score": 0.5 + 0.05 * i, "asd_lag_s": 0.0, "asd_scorer": "classical",
        "face_area_frac": 0.1, "fit_rmse": 0.01 * (i + 1) if visual else None,
        "sync_conf": 0.15 + 0.03 * i, "sync_dist": 0.5, "av_offset_s": 0.02 * (i - 2), "av_shift_applied_s": 0.0,
        "sync_model": "sync_v1@test",
        "provenance": json.dumps({"visual": {"source_size_px": [640, 480]}}),
    }


def write_part(path: Path, rows: list[dict[str, Any]], row_group_size: int = 32) -> None:
    from shards.schema import SHARD_SCHEMA, shard_metadata

    cols = {f.name: [r.get(f.name) for r in rows] for f in SHARD_SCHEMA}
    table = pa.table(cols, schema=SHARD_SCHEMA).replace_schema_metadata(shard_metadata("testhash"))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group_size)


def write_rejects(path: Path, rows: list[dict[str, Any]]) -> None:
    from shards.schema import REJECT_SCHEMA

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({f.name: [r.get(f.name) for r in rows] for f in REJECT_SCHEMA}, schema=REJECT_SCHEMA),
                   path)


def write_output_folder(root: Path) -> Path:
    """Two shard parts (5 clips: en and zh, two sources), 3 reject rows, a sources part, a manifest."""
    a, b = "/media/a.mp4", "/media/b.mp4"
    write_part(root / "shards" / "part-aaa.parquet",
               [make_clip(0, "en", a, 0.0, 3.2), make_clip(1, "en", a, 4.0, 4.0), make_clip(2, "zh", b, 1.0, 3.5)],
               row_group_size=2)
    write_part(root / "shards" / "part-bbb.parquet",
               [make_clip(3, "zh", b, 6.0, 5.0), make_clip(4, "en", b, 12.0, 3.0, visual=False)])
    write_rejects(root / "rejects" / "part-aaa.parquet", [
        {"source_path": a, "stage": "dnsmos", "reason": "low_dnsmos_ovrl", "value": 2.1, "threshold": 3.0,
         "start_s": 8.0, "end_s": 11.6, "duration_s": 3.6, "detail": ""},
        {"source_path": b, "stage": "segment", "reason": "too_short", "value": 1.8, "threshold": 3.0,
         "start_s": 20.0, "end_s": 21.8, "duration_s": 1.8, "detail": "seconds"},
        {"source_path": "/media/c.wav", "stage": "probe", "reason": "no_video", "value": 0.0, "threshold": None,
         "start_s": None, "end_s": None, "duration_s": 7.2, "detail": "no video stream"}])
    (root / "sources").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"source_path": [a, b, "/media/c.wav"], "duration_s": [12.0, 25.0, 7.2],
                             "status": ["kept", "kept", "rejected"]}), root / "sources" / "part-aaa.parquet")
    manifest = {"schema_version": 3, "inputs": 3, "hours_in": 44.2 / 3600, "hours_kept": 18.7 / 3600, "clips": 5,
                "wall_time_s": 12.5, "config": CONFIG, "config_hash": "testhash",
                "models": {"dnsmos": {"speechmos": 2}}, "skipped": {"diarize": {"no model configured": 2}}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    # Not parts: a commit in flight and a stray file. Readers must ignore both.
    (root / "shards" / ".tmp-123-part-ccc.parquet").write_bytes(b"half written")
    (root / "shards" / "notes.txt").write_text("not a part")
    return root


@pytest.fixture(scope="session")
def synthetic_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_output_folder(tmp_path_factory.mktemp("dash") / "out")


@pytest.fixture(autouse=True)
def fresh_cache() -> None:
    """Each test starts with an empty read cache (tests rewrite parts in place)."""
    data.clear_cache()
