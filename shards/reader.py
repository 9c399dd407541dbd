"""Reading curated shards: the output folder's layout, part listing, checked opens, row lookups.

Training (``training/data.py``), the dashboard (``dashboards/data.py``) and generation
(``inference/``) all read shards through these functions, so a part is recognised, opened and
version-checked the same way everywhere. Paths are local or any URI pyarrow's filesystem layer
knows (``s3://``, ``gs://``, ``file://``).

Output folder layout (``pipeline/storage.py`` writes it)::

    OUT/shards/part-<commit id>.parquet    clips (shards/schema.py SHARD_SCHEMA)
    OUT/rejects/part-<commit id>.parquet   the rejects ledger
    OUT/sources/part-<commit id>.parquet   the sources index (written last: the commit marker)
    OUT/manifest.json

Files whose names start with ``.`` are temporary and never read.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from core.media_io import is_uri, resolve
from shards.codes import CODE_DIM
from shards.schema import check_shard_metadata
from shards.spec import N_MELS

SHARDS, REJECTS, SOURCES = "shards", "rejects", "sources"  # sub-folders of an output folder
ERRORS = "errors"  # attempts that failed with an error (a fault, not a reject): retried by the next run
MANIFEST = "manifest.json"
VERIFY_REPORT = "verify.json"  # `omnitalker verify`'s last report on the folder (pipeline/verify.py)
PART_PREFIX, PART_SUFFIX = "part-", ".parquet"


class ShardError(ValueError):
    """A shard that cannot be read: corrupt, truncated, or with the wrong column types. Names the file."""


def is_part_name(name: str) -> bool:
    """True for a committed part's file name (``part-*.parquet``; temporary names start with ``.``)."""
    return name.startswith(PART_PREFIX) and name.endswith(PART_SUFFIX)


def list_parts(fs: pafs.FileSystem, folder: str) -> list[pafs.FileInfo]:
    """The part files directly in ``folder`` (a path inside ``fs``), sorted by path; [] if it is missing."""
    infos = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    parts = [i for i in infos if i.type == pafs.FileType.File and is_part_name(posixpath.basename(i.path))]
    return sorted(parts, key=lambda i: i.path)


def list_shard_parts(shards_dir: str) -> tuple[pafs.FileSystem, list[str]]:
    """``(filesystem, part paths)`` of ``shards_dir``, an output folder or its ``shards/`` folder.

    Raises ``FileNotFoundError`` naming the folder when there is no part.
    """
    fs, root = resolve(str(shards_dir))
    root = root.rstrip("/") or "/"
    nested = posixpath.join(root, SHARDS)
    if fs.get_file_info(nested).type == pafs.FileType.Directory:
        root = nested
    info = fs.get_file_info(root)
    if info.type != pafs.FileType.Directory:
        raise FileNotFoundError(f"{root}: no such shards folder")
    parts = [i.path for i in list_parts(fs, root)]
    if not parts:
        raise FileNotFoundError(f"{root}: no {PART_PREFIX}*{PART_SUFFIX} shards")
    return fs, parts


def open_shard(path: str, fs: pafs.FileSystem | None = None) -> pq.ParquetFile:
    """Open one shard part with page-CRC checks and check its schema version; errors name ``path``.

    ``fs`` is the part's filesystem (from :func:`list_shard_parts`); None opens a local path or URI.
    A file that is not Parquet raises :class:`ShardError`; another schema version raises
    ``shards.schema.SchemaVersionError``.
    """
    try:
        if fs is None and not is_uri(path):
            pf = pq.ParquetFile(path, page_checksum_verification=True)
        else:
            if fs is None:
                fs, path = resolve(path)
            pf = pq.ParquetFile(fs.open_input_file(path), page_checksum_verification=True)
    except Exception as e:  # ArrowInvalid, OSError: a truncated or non-Parquet file
        raise ShardError(f"{path}: not a readable Parquet file, corrupt or truncated ({type(e).__name__}: {e})") from e
    check_shard_metadata(path, pf.schema_arrow.metadata)
    return pf


def read_row_group(pf: pq.ParquetFile, path: str, rg: int, columns: list[str] | tuple[str, ...] | None) -> pa.Table:
    """Row group ``rg`` of an open part (``columns`` None: all); a corrupt page raises :class:`ShardError`."""
    try:
        return pf.read_row_group(rg, columns=list(columns) if columns is not None else None, use_threads=False)
    except Exception as e:
        raise ShardError(f"{path}: row group {rg} unreadable, corrupt file ({type(e).__name__}: {e})") from e


def read_row(pf: pq.ParquetFile, path: str, row: int, columns: list[str] | None = None) -> dict[str, Any] | None:
    """Row ``row`` (0-based within the part) as a dict, reading only its row group; None past the end."""
    first = 0
    for rg in range(pf.num_row_groups):
        n = pf.metadata.row_group(rg).num_rows
        if row < first + n:
            return read_row_group(pf, path, rg, columns).slice(row - first, 1).to_pylist()[0]
        first += n
    return None


def iterate_mel_code_clips(shards_dir: str, min_frames: int = 0, min_dnsmos_ovrl: float = 0.0
                           ) -> Iterator[tuple[str, str, str, np.ndarray, np.ndarray]]:
    """``(clip_id, source file name, shard path, mel (N, 100), codes (N, 61))`` of every clip that has
    both, at least ``min_frames`` frames and DNSMOS OVRL >= ``min_dnsmos_ovrl``. A clip whose mel and
    codes disagree in length is a :class:`ShardError` naming the shard (the trainers' shared reader)."""
    fs, parts = list_shard_parts(shards_dir)
    for path in parts:
        pf = open_shard(path, fs)
        for rg in range(pf.num_row_groups):
            rows = read_row_group(pf, path, rg, ["clip_id", "source_path", "mel", "visual", "dnsmos_ovrl"]).to_pylist()
            for row in rows:
                if row["mel"] is None or row["visual"] is None or (row["dnsmos_ovrl"] or 0.0) < min_dnsmos_ovrl:
                    continue
                mel = np.asarray(row["mel"], np.float32).reshape(-1, N_MELS)
                codes = np.asarray(row["visual"], np.float32).reshape(-1, CODE_DIM)
                if mel.shape[0] != codes.shape[0]:
                    raise ShardError(f"{path}: clip {row['clip_id']} has {mel.shape[0]} mel and "
                                     f"{codes.shape[0]} visual frames")
                if mel.shape[0] >= min_frames:
                    yield row["clip_id"], posixpath.basename(row["source_path"] or ""), path, mel, codes


def find_clip(shards_dir: str, clip_id: str, columns: list[str]) -> tuple[str, dict[str, Any]]:
    """``(part path, row)`` of ``clip_id``: only ``clip_id`` is scanned until found, then one row group is read.

    Columns a part does not have are left out of the row. Raises ``KeyError`` when no part holds it.
    """
    fs, parts = list_shard_parts(shards_dir)
    for path in parts:
        pf = open_shard(path, fs)
        names = set(pf.schema_arrow.names)
        use = [c for c in columns if c in names]
        for rg in range(pf.num_row_groups):
            ids = read_row_group(pf, path, rg, ["clip_id"]).column("clip_id").to_pylist()
            if clip_id in ids:
                return path, read_row_group(pf, path, rg, use).slice(ids.index(clip_id), 1).to_pylist()[0]
    raise KeyError(f"clip_id {clip_id!r} not found in {len(parts)} shard part(s) under {shards_dir}")
