"""Synthetic shards (the current ``shards.schema.SHARD_SCHEMA`` and ``SCHEMA_VERSION``) for the training tests.

:func:`write_shard` writes clips with pyarrow exactly as the curation writer lays them out
(``pipeline.writer.nested_frames``, ``shard_metadata``, zstd, fixed row-group size).
A clip's mel and visual are a function of its number (:func:`clip_features`), so a test
can check what a loader returns without keeping the arrays around.

Import the helpers, or the ``synthetic_shards`` fixture (``from tests.training.shard_fixtures
import synthetic_shards``) into a test module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.writer import nested_frames
from shards.codes import CODE_DIM
from shards.schema import MP_BLENDSHAPES_DIM, SCHEMA_VERSION, SHARD_SCHEMA, shard_metadata
from shards.spec import N_MELS

HOP = 256  # 24 kHz samples per frame
TEXTS = ["Some call me nature, others call me mother nature.", "bin blue at f two now",
         "dui4， zhe4 jiu4 shi4 wo3， wan4 ren2 jing4 yang3 de tai4 yi3 zhen1 ren2。", "ask not", "Hi!"]


def clip_features(number: int, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic ``(mel (n, 100), visual (n, 61))`` of clip ``number``: frame k, dim d holds a known value."""
    k = np.arange(n_frames, dtype=np.float32)[:, None]
    mel = (number + 0.001 * k + 0.01 * np.arange(N_MELS, dtype=np.float32)[None, :] - 8.0).astype(np.float32)
    visual = (np.sin(number + 0.01 * k + np.arange(CODE_DIM, dtype=np.float32)[None, :])).astype(np.float32)
    return mel, visual


def clip_id_of(number: int) -> str:
    return f"synthetic-{number:06d}"


def make_clip(number: int, length: int, text: str | None = None, **scalars: Any) -> dict[str, Any]:
    """One shard row of ``length`` frames; ``scalars`` override the quality columns (``dnsmos_ovrl``, ``asd_score``, ``fit_rmse``...)."""
    mel, visual = clip_features(number, length)
    start = number * 10 * 24000
    end = start + (length - 1) * HOP
    row: dict[str, Any] = {name: None for name in SHARD_SCHEMA.names}
    row.update(clip_id=clip_id_of(number), source_path=f"/media/src{number % 7}.mp4", source_sha256="0" * 64,
               start_s=start / 24000, end_s=end / 24000, duration_s=(end - start) / 24000, start_sample=start,
               end_sample=end, shot_index=0, sample_rate=24000, n_frames=length, mel=mel, audio_flac=b"",
               dnsmos_ovrl=3.5, dnsmos_sig=3.8, dnsmos_bak=4.0, dnsmos_p808=3.9,
               text=text if text is not None else TEXTS[number % len(TEXTS)], language="en", language_prob=0.99,
               text_source="asr", chars_per_s=12.0, words=[], visual=visual,
               mp_blendshapes=np.zeros((2, MP_BLENDSHAPES_DIM), np.float32), track_id=0, asd_score=0.8,
               asd_lag_s=0.0, asd_scorer="classical", face_area_frac=0.1, fit_rmse=0.02, provenance="{}")
    row["text_model"] = row["text"]
    row.update(scalars)
    return row


def build_table(rows: list[dict[str, Any]], schema_version: int = SCHEMA_VERSION) -> pa.Table:
    """A shard table of ``rows`` with the file metadata of ``schema_version``."""
    arrays = []
    for f in SHARD_SCHEMA:
        values = [r[f.name] for r in rows]
        if f.name == "mel":
            arrays.append(nested_frames(values, N_MELS))
        elif f.name == "visual":
            arrays.append(nested_frames(values, CODE_DIM))
        elif f.name == "mp_blendshapes":
            arrays.append(nested_frames(values, MP_BLENDSHAPES_DIM))
        else:
            arrays.append(pa.array(values, type=f.type))
    meta = shard_metadata("synthetic")
    meta[b"omnitalker.schema_version"] = str(schema_version).encode()
    return pa.Table.from_arrays(arrays, schema=SHARD_SCHEMA).replace_schema_metadata(meta)


def write_shard(path: Path, rows: list[dict[str, Any]], row_group_size: int = 4, schema_version: int = SCHEMA_VERSION) -> Path:
    pq.write_table(build_table(rows, schema_version), path, compression="zstd", row_group_size=row_group_size)
    return path


def write_truncated_shard(path: Path, rows: list[dict[str, Any]]) -> Path:
    """A shard cut off part-way, as a crashed copy leaves it (the footer is gone)."""
    write_shard(path, rows)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@dataclass
class ShardSet:
    """Several good shards of varied clip lengths, and what they hold."""

    shards_dir: Path
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)  # clip_id -> row
    numbers: dict[str, int] = field(default_factory=dict)  # clip_id -> clip number

    def features(self, clip_id: str) -> tuple[np.ndarray, np.ndarray]:
        return clip_features(self.numbers[clip_id], self.rows[clip_id]["n_frames"])


def write_shard_set(shards_dir: Path, n_files: int = 3, clips_per_file: int = 22, row_group_size: int = 4,
                    seed: int = 0, min_frames: int = 80, max_frames: int = 600) -> ShardSet:
    """``n_files`` good shards with ``clips_per_file`` clips of ``min_frames``..``max_frames`` frames each."""
    shards_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = ShardSet(shards_dir)
    number = 0
    for f in range(n_files):
        rows = []
        for _ in range(clips_per_file):
            row = make_clip(number, int(rng.integers(min_frames, max_frames + 1)))
            rows.append(row)
            out.rows[row["clip_id"]] = row
            out.numbers[row["clip_id"]] = number
            number += 1
        write_shard(shards_dir / f"part-{f:04d}.parquet", rows, row_group_size)
    return out


@pytest.fixture(scope="session")
def synthetic_shards(tmp_path_factory: pytest.TempPathFactory) -> ShardSet:
    """3 shards x 22 clips (80-600 frames), 4 clips per row group (6 row groups per file)."""
    return write_shard_set(tmp_path_factory.mktemp("synthetic") / "shards")
