"""Committing processed files, and the row format they travel in on Ray Data.

Kept apart from :mod:`pipeline.executors` on purpose: a Ray commit task runs in its own worker
process, and unpickling it imports this module. ``pipeline.executors`` imports every stage (torch,
scipy, the model wrappers: about 3 CPU s per fresh process, measured with ``python -X importtime``);
this module imports only the writer (about 0.25 s), so the commit workers do not pay for models they
never run (docs/performance.md, "Ray's own processes").
"""

from __future__ import annotations

import dataclasses
import json
import pickle
from dataclasses import dataclass

import numpy as np

from pipeline.storage import OutputStore
from pipeline.writer import CommitSummary, commit_items
from stages.item import FileItem


@dataclass
class CommitSpec:
    """Everything a commit task needs (picklable)."""

    out_root: str
    config_hash: str
    stats: dict[str, tuple[int, float]]
    row_group_size: int
    zstd_level: int
    flac_subtype: str

    def commit(self, items: list[FileItem]) -> CommitSummary:
        return commit_items(OutputStore(self.out_root), items, self.stats, self.config_hash,
                            self.row_group_size, self.zstd_level, self.flac_subtype)


def unpack_items(batch: dict[str, np.ndarray]) -> list[FileItem]:
    """The files of a Ray Data batch (one pickled :class:`FileItem` per row)."""
    return [pickle.loads(b) for b in batch["item"]]


def pack_items(items: list[FileItem]) -> dict[str, np.ndarray]:
    """A Ray Data batch of ``items``, one pickled file per row."""
    out = np.empty(len(items), dtype=object)
    out[:] = [pickle.dumps(i, protocol=5) for i in items]
    return {"item": out}


class CommitTask:
    """Commits whole files; a chunk row is passed back to the driver, which merges and commits its file."""

    def __init__(self, spec: CommitSpec) -> None:
        self.spec = spec

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = unpack_items(batch)
        whole = [i for i in items if i.chunk is None]
        parts = [i for i in items if i.chunk is not None]
        summaries = [json.dumps(dataclasses.asdict(self.spec.commit(whole)))] if whole else []
        rows = [(s, b"") for s in summaries] + [("", pickle.dumps(p, protocol=5)) for p in parts]
        return {"summary": np.array([s for s, _ in rows], dtype=object),
                "chunk": np.array([c for _, c in rows], dtype=object)}
