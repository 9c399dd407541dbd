"""The held-out split of a training run: deterministic, by source file (and by speaker where known).

Every trainer (``training/loop.py`` for the DiT, ``training/styletalker_loop.py``) calls
:func:`prepare_split` before it reads a clip, trains only on ``split.train_clip_ids`` and writes the
split to ``RUN_DIR/split.json``; ``omnitalker eval`` (``evaluation/``) reads it back, so no test clip
-- and no clip of a test clip's source or speaker -- is ever trained on.

Rule (:func:`compute_split`):

1. Clips are grouped by source: the source file's ``source_sha256`` (its ``source_path`` when the hash is
   empty), so a file copied under two names is one source.
2. Speakers where known: every ``(source, speaker)`` pair with voice embeddings (``voice_embedding``,
   GE2E, unit length) gets its mean voice; two sources whose voices have a cosine of at least
   ``speaker_merge_cos`` (0.76: one speaker's clips measure above it in docs/diarization.md) are put in
   one group (union-find), so one person filmed in two files lands on one side. ``None`` turns this off.
3. Each group gets a number ``u`` in [0, 1) from the sha256 of ``"<seed>:<smallest source key>"``; the
   group is held out when ``u < test_frac``. The test side of a source never changes when other
   sources are added, since ``u`` depends on the group's own sources only.
4. Guards: with ``test_frac > 0`` and at least two groups, at least one group is held out (the
   lowest ``u``) and at least one is kept for training (the highest ``u``). With one group (or
   ``test_frac == 0``) nothing is held out and ``note`` says so: evaluate such a run with
   ``omnitalker eval --split all`` on shards it never saw.

A resumed run reuses its ``split.json`` (clips that appeared since are classified by their source:
a held-out source stays held out, a new source trains).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shards.reader import list_shard_parts, open_shard, read_row_group

log = logging.getLogger(__name__)

SPLIT_FILE = "split.json"
SPLIT_FORMAT = "omnitalker-split-v1"
SCAN_COLUMNS = ("clip_id", "source_path", "source_sha256", "speaker", "voice_embedding")


@dataclass
class SplitConfig:
    """How a run's held-out test set is chosen (section ``data.split`` of the training YAMLs)."""

    test_frac: float = 0.1  # 0-1: expected fraction of source groups held out for evaluation (0 = none)
    seed: int = 0  # changes which groups are held out
    speaker_merge_cos: float | None = 0.76  # GE2E cosine joining two sources' speakers into one group; None = off


@dataclass
class ClipSource:
    """Where one clip comes from: its source key, the file's name and its speaker (None when unknown)."""

    clip_id: str
    source: str  # source_sha256, or source_path when the hash is empty
    source_name: str  # the source file's basename
    speaker: str | None
    voice: np.ndarray | None = None  # (256,) unit GE2E embedding, None when not computed


@dataclass
class HeldOutSplit:
    """The split of one run: which clips and sources are held out, and how it was made."""

    test_clip_ids: list[str]
    train_clip_ids: list[str]
    test_sources: list[str]  # source keys (sha256)
    train_sources: list[str]
    source_names: dict[str, str]  # source key -> file name
    groups: list[list[str]]  # the source groups (sources sharing a speaker are one group)
    config: dict[str, Any] = field(default_factory=dict)  # the SplitConfig it was made with
    note: str = ""  # why nothing (or less than asked) was held out
    format: str = SPLIT_FORMAT

    def is_test(self, clip_id: str, source: str | None = None) -> bool:
        """Held out: listed as a test clip, or (a clip added since) from a held-out source."""
        return clip_id in self._test_ids or (source is not None and source in self._test_src)

    def __post_init__(self) -> None:
        self._test_ids = set(self.test_clip_ids)
        self._test_src = set(self.test_sources)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: v for k, v in d.items() if not k.startswith("_")}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HeldOutSplit:
        if d.get("format") != SPLIT_FORMAT:
            raise ValueError(f"not a split file (format {d.get('format')!r}, expected {SPLIT_FORMAT!r})")
        keys = {"test_clip_ids", "train_clip_ids", "test_sources", "train_sources", "source_names", "groups",
                "config", "note", "format"}
        return cls(**{k: v for k, v in d.items() if k in keys})


def scan_clip_sources(shards_dir: str) -> list[ClipSource]:
    """Every clip of the shards with its source, speaker and voice (only these small columns are read)."""
    fs, parts = list_shard_parts(str(shards_dir))
    out: list[ClipSource] = []
    for path in parts:
        pf = open_shard(path, fs)
        cols = [c for c in SCAN_COLUMNS if c in pf.schema_arrow.names]
        for rg in range(pf.num_row_groups):
            for row in read_row_group(pf, path, rg, cols).to_pylist():
                src_path = row.get("source_path") or ""
                key = row.get("source_sha256") or src_path
                voice = row.get("voice_embedding")
                out.append(ClipSource(row["clip_id"], key, src_path.replace("\\", "/").rsplit("/", 1)[-1],
                                      row.get("speaker"),
                                      None if voice is None else np.asarray(voice, np.float32)))
    return out


def group_uniform(seed: int, group: list[str]) -> float:
    """A number in [0, 1) fixed by the seed and the group's smallest source key."""
    digest = hashlib.sha256(f"{seed}:{min(group)}".encode()).hexdigest()
    return int(digest[:15], 16) / 16 ** 15


def speaker_groups(clips: list[ClipSource], merge_cos: float | None) -> list[list[str]]:
    """Sources joined when any two of their speakers' mean voices have cosine >= ``merge_cos``."""
    sources = sorted({c.source for c in clips})
    parent = {s: s for s in sources}

    def find(s: str) -> str:
        while parent[s] != s:
            parent[s] = parent[parent[s]]
            s = parent[s]
        return s

    if merge_cos is not None:
        voices: dict[tuple[str, str | None], list[np.ndarray]] = {}
        for c in clips:
            if c.voice is not None and np.isfinite(c.voice).all():
                voices.setdefault((c.source, c.speaker), []).append(c.voice)
        keys = sorted(voices, key=lambda k: (k[0], k[1] or ""))
        means = [np.mean(voices[k], axis=0) for k in keys]
        means = [m / max(float(np.linalg.norm(m)), 1e-12) for m in means]
        for i in range(len(keys)):
            for j in range(i + 1, len(keys)):
                if keys[i][0] != keys[j][0] and float(means[i] @ means[j]) >= merge_cos:
                    parent[find(keys[i][0])] = find(keys[j][0])
    groups: dict[str, list[str]] = {}
    for s in sources:
        groups.setdefault(find(s), []).append(s)
    return sorted(groups.values(), key=min)


def compute_split(clips: list[ClipSource], cfg: SplitConfig) -> HeldOutSplit:
    """The held-out split of ``clips`` (rule in the module docstring)."""
    if not 0.0 <= cfg.test_frac < 1.0:
        raise ValueError(f"split.test_frac must be in [0, 1), got {cfg.test_frac}")
    groups = speaker_groups(clips, cfg.speaker_merge_cos)
    u = [group_uniform(cfg.seed, g) for g in groups]
    test = {i for i, x in enumerate(u) if x < cfg.test_frac}
    note = ""
    if cfg.test_frac > 0 and len(groups) < 2:
        test, note = set(), (f"{len(groups)} source group(s): nothing held out (the run trains on every clip; "
                             "evaluate it with --split all on shards it never saw)")
    elif cfg.test_frac > 0:
        if not test:
            test = {int(np.argmin(u))}
            note = "no group fell under test_frac: the group with the lowest hash is held out"
        if len(test) == len(groups):
            test.discard(int(np.argmax(u)))
            note = "every group fell under test_frac: the group with the highest hash trains"
    test_sources = sorted(s for i in test for s in groups[i])
    held = set(test_sources)
    names = {c.source: c.source_name for c in clips}
    return HeldOutSplit(test_clip_ids=sorted(c.clip_id for c in clips if c.source in held),
                        train_clip_ids=sorted(c.clip_id for c in clips if c.source not in held),
                        test_sources=test_sources, train_sources=sorted(set(names) - held), source_names=names,
                        groups=groups, config=asdict(cfg), note=note)


def read_split(run_dir: str | Path) -> HeldOutSplit | None:
    """``RUN_DIR/split.json`` (a run folder, or a checkpoint folder inside one), or None when absent."""
    run_dir = Path(run_dir)
    for folder in (run_dir, run_dir.parent, run_dir.parent.parent):
        path = folder / SPLIT_FILE
        if path.is_file():
            return HeldOutSplit.from_dict(json.loads(path.read_text(encoding="utf-8")))
    return None


def write_split(run_dir: str | Path, split: HeldOutSplit) -> Path:
    """Write ``RUN_DIR/split.json`` atomically."""
    path = Path(run_dir) / SPLIT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(split.to_dict(), indent=1, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)
    return path


def prepare_split(shards_dir: str | Path, run_dir: str | Path, cfg: SplitConfig, write: bool = True
                  ) -> HeldOutSplit:
    """The run's split: ``RUN_DIR/split.json`` when it exists (a resumed run), else computed and written.

    New clips of a resumed run are added to the side of their source (a new source trains).
    """
    clips = scan_clip_sources(str(shards_dir))
    split = read_split(run_dir) if (Path(run_dir) / SPLIT_FILE).is_file() else None
    if split is None:
        split = compute_split(clips, cfg)
        log.info("held-out split: %d test clips from %d sources, %d training clips%s", len(split.test_clip_ids),
                 len(split.test_sources), len(split.train_clip_ids), f" ({split.note})" if split.note else "")
    else:
        known = set(split.test_clip_ids) | set(split.train_clip_ids)
        new = [c for c in clips if c.clip_id not in known]
        if new:
            split.test_clip_ids = sorted(split.test_clip_ids + [c.clip_id for c in new if split.is_test(c.clip_id, c.source)])
            split.train_clip_ids = sorted(split.train_clip_ids + [c.clip_id for c in new
                                                                  if not split.is_test(c.clip_id, c.source)])
            for c in new:
                split.source_names.setdefault(c.source, c.source_name)
                if c.source not in split.test_sources and c.source not in split.train_sources:
                    split.train_sources = sorted([*split.train_sources, c.source])
            split.__post_init__()
    if write:
        write_split(run_dir, split)
    return split
