"""The output folder: atomic writes, committed parts, orphan clean-up, the done set.

Layout under ``OUT`` (local path or URI, through pyarrow's filesystem layer)::

    shards/part-<commit>.parquet    kept clips (schema v3)
    rejects/part-<commit>.parquet   the rejects ledger
    sources/part-<commit>.parquet   one row per input file: the commit record
    manifest.json                   counts, config, versions, wall time

A commit writes its shard and rejects parts first and its sources part last,
each to a hidden temporary name and then renamed. A sources part is the proof
that its files are done: on start, shard/rejects parts without one (a run
killed mid-commit) and temporary files are deleted, and the files they held are
redone. Part names derive from the sorted sha256s of their sources, so a redo
overwrites rather than duplicates.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import posixpath
import uuid
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from core.media_io import resolve
from shards.reader import ERRORS, PART_PREFIX, PART_SUFFIX, REJECTS, SHARDS, SOURCES, list_parts

log = logging.getLogger(__name__)

TMP_PREFIX = ".tmp-"  # temporary files: written, then renamed into place


class CommitError(OSError):
    """A part could not be written to the output folder (full disk, quota, permissions)."""


def compute_commit_id(source_sha256s: list[str]) -> str:
    """Deterministic part id of a set of sources."""
    return hashlib.sha256("\n".join(sorted(source_sha256s)).encode()).hexdigest()[:20]


@dataclass
class OutputStore:
    """An output folder on any pyarrow filesystem."""

    root: str

    def __post_init__(self) -> None:
        self.fs, self.base = resolve(self.root)
        self.base = self.base.rstrip("/")

    def path(self, *parts: str) -> str:
        return posixpath.join(self.base, *parts)

    def ensure_dirs(self) -> None:
        for sub in (SHARDS, REJECTS, ERRORS, SOURCES):
            self.fs.create_dir(self.path(sub), recursive=True)

    def write_bytes_atomic(self, rel: str, data: bytes) -> None:
        """Write ``data`` to ``rel`` via a temporary file and a rename."""
        final = self.path(rel)
        tmp = posixpath.join(posixpath.dirname(final), f"{TMP_PREFIX}{uuid.uuid4().hex}-{posixpath.basename(final)}")
        try:
            with self.fs.open_output_stream(tmp) as fh:
                fh.write(data)
            self.fs.move(tmp, final)
        except OSError as exc:  # disk full, quota, permissions: no half-written file stays behind
            try:
                self.fs.delete_file(tmp)
            except OSError:
                pass  # the next run's clean_orphans removes it
            raise CommitError(f"cannot write {final} ({len(data)} bytes): {exc}. Nothing of this commit counts as "
                              "done; free space (or fix the output) and run the same command again") from exc

    def write_table_atomic(self, rel: str, table: pa.Table, row_group_size: int, zstd_level: int) -> None:
        buf = io.BytesIO()
        # Page CRCs let readers (training/data.py) refuse a corrupted page instead of decoding garbage.
        pq.write_table(table, buf, compression="zstd", compression_level=zstd_level, write_page_checksum=True,
                       row_group_size=row_group_size)
        self.write_bytes_atomic(rel, buf.getvalue())

    def list_parts(self, sub: str) -> list[str]:
        """Committed-looking part paths (absolute inside the filesystem) under ``sub``."""
        return [i.path for i in list_parts(self.fs, self.path(sub))]

    @staticmethod
    def commit_of(part_path: str) -> str:
        return posixpath.basename(part_path)[len(PART_PREFIX):-len(PART_SUFFIX)]

    def clean_orphans(self) -> int:
        """Delete temporary files and parts whose commit never finished. Returns how many."""
        committed = {self.commit_of(p) for p in self.list_parts(SOURCES)}
        removed = 0
        for sub in (SHARDS, REJECTS, ERRORS, SOURCES):
            sel = pafs.FileSelector(self.path(sub), allow_not_found=True)
            for info in self.fs.get_file_info(sel):
                name = posixpath.basename(info.path)
                orphan = name.startswith(TMP_PREFIX) or (
                    sub != SOURCES and name.startswith(PART_PREFIX) and self.commit_of(info.path) not in committed)
                if orphan and info.type == pafs.FileType.File:
                    self.fs.delete_file(info.path)
                    removed += 1
        if removed:
            log.info("removed %d unfinished part(s) from an interrupted run", removed)
        return removed

    def read_table(self, sub: str, columns: list[str] | None = None) -> pa.Table | None:
        """All committed parts of ``sub`` as one table (None when there are none)."""
        tables = []
        for p in self.list_parts(sub):
            with self.fs.open_input_file(p) as fh:
                tables.append(pq.read_table(fh, columns=columns))
        if not tables:
            return None
        return pa.concat_tables(tables, promote_options="default")

    def read_done_sources(self) -> pa.Table | None:
        return self.read_table(SOURCES, ["source_path", "source_sha256", "size_bytes", "mtime"])

    def count_attempts(self) -> dict[str, int]:
        """Source path -> failed attempts recorded in ``errors/`` (each one retried by a later run)."""
        table = self.read_table(ERRORS, ["source_path"])
        out: dict[str, int] = {}
        for path in (table.column("source_path").to_pylist() if table is not None else []):
            out[path] = out.get(path, 0) + 1
        return out

    def write_json_atomic(self, rel: str, obj: object) -> None:
        self.write_bytes_atomic(rel, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())

    def read_json(self, rel: str) -> dict | None:
        try:
            with self.fs.open_input_stream(self.path(rel)) as fh:
                return json.loads(fh.read().decode())
        except (FileNotFoundError, OSError):
            return None
