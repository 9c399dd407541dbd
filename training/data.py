"""Training data: an index of curated clips, and a DataLoader of frame-budgeted batches.

Reading (``docs/shards.md``): :func:`build_index` lists ``part-*.parquet`` in the shards
folder (or ``OUT/shards`` when given a curation output folder), checks each file's
``omnitalker.schema_version`` and reads only the scalar columns (``SCALAR_COLUMNS``) row
group by row group; ``mel`` and ``visual`` are never touched there. A corrupt or truncated
file, a wrong schema version or a wrong column type raises an error naming the file.
Page CRCs are verified where the writer stored them (``write_page_checksum``); without
them, bytes flipped inside a compressed page can go unnoticed, so loaded clips are also
checked for length and finite values.

Load-time filters (:class:`DataConfig`) let a curated set be re-filtered without
re-curating. Null rule: a threshold left at None passes every clip, null values
included; a set threshold fails a clip whose value is null (it cannot be shown to pass).
Clips without model text or without visual codes are dropped too (``require_text``,
``require_visual``; ``fit_rmse`` is written with the codes, so a null ``fit_rmse``
means no codes), as are clips whose text has more characters than the clip has frames
(a token is at most one character, so every kept text fits its frames).

Epoch plan (:func:`plan_epoch`, metadata only, the same on every rank): row groups are
shuffled by ``(seed, epoch)`` and dealt round-robin to ranks. Each rank walks its row
groups in windows of ``window_row_groups``; the clips of a window are shuffled, then
stably sorted by length and packed greedily into batches with
``batch size * longest clip <= max_frames_per_batch`` (padding counted) and at most
``max_samples_per_batch`` clips, so clips of similar length share a batch and padding
stays small; the window's batches are then shuffled. A clip longer than the budget is
skipped with a warning (counted in ``EpochPlan.n_skipped_long``). With ``even_batches``
a rank with fewer batches repeats its first ones so every rank steps the same number
of times (DDP needs it). Within a rank, DataLoader worker ``w`` of ``W`` takes the
windows ``w, w+W, ...``: a row group is read by one worker only, once per epoch.

Memory: a worker holds the clips of one window (at most ``window_row_groups`` x 32
clips, each at most ``max_frames_per_batch`` frames of 161 float32) and the last Parquet
row group it read.
"""

from __future__ import annotations

import argparse
import json
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from model.vocab import Vocab
from shards.codes import CODE_DIM
from shards.reader import ShardError, list_shard_parts, read_row_group
from shards.reader import open_shard as open_part
from shards.schema import SHARD_SCHEMA
from shards.spec import FRAME_RATE_HZ, N_MELS
from training.split import SplitConfig

SCALAR_COLUMNS = ("clip_id", "n_frames", "duration_s", "dnsmos_ovrl", "asd_score", "fit_rmse", "text_model")
FEATURE_COLUMNS = ("clip_id", "n_frames", "mel", "visual", "text_model")


@dataclass
class DataConfig:
    max_frames_per_batch: int = 4000  # frames (93.75 Hz) per batch, padding included: B * longest clip
    max_samples_per_batch: int = 32  # clips per batch
    num_workers: int = 0  # DataLoader worker processes per rank
    shuffle: bool = True
    seed: int = 0  # shuffling is a function of (seed, epoch) only
    min_dnsmos_ovrl: float | None = None  # DNSMOS P.835 overall MOS (1-5); None = no filter
    min_asd_score: float | None = None  # active-speaker score (scale of the shard's asd_scorer); None = no filter
    max_fit_rmse: float | None = None  # visual fit RMSE / inter-ocular distance; None = no filter
    min_duration_s: float | None = None  # seconds; None = no filter
    max_duration_s: float | None = None  # seconds; None = no filter
    require_text: bool = True  # drop clips whose text_model is null or empty
    require_visual: bool = True  # drop clips without visual codes (null fit_rmse)
    window_row_groups: int = 4  # row groups whose clips are shuffled, length-sorted and packed together
    even_batches: bool = True  # every rank gets the same number of batches (repeats a rank's first batches)
    split: SplitConfig = field(default_factory=SplitConfig)  # held-out test sources (training/split.py, split.json)


@dataclass
class ClipIndex:
    """Where every kept clip lives: ``files[file_idx[i]]``, row group, row; plus its length and text."""

    shards_dir: str
    files: list[str]
    file_idx: np.ndarray  # int32 per clip
    row_group: np.ndarray  # int32 per clip
    row: np.ndarray  # int32 per clip, within its row group
    n_frames: np.ndarray  # int32 per clip, frames at 93.75 Hz
    clip_ids: list[str]
    text_model: list[str]
    n_scanned: int = 0  # clips in the shards before filtering
    dropped: dict[str, int] = field(default_factory=dict)  # filter reason -> clips dropped

    def __len__(self) -> int:
        return len(self.clip_ids)

    def texts(self) -> Iterator[str]:
        """The model text of every kept clip (for :meth:`model.vocab.Vocab.build`)."""
        yield from self.text_model

    def summarize(self) -> dict[str, Any]:
        frames = int(self.n_frames.sum()) if len(self) else 0
        return {"shards_dir": self.shards_dir, "n_files": len(self.files), "n_scanned": self.n_scanned,
                "n_clips": len(self), "hours": round(frames / FRAME_RATE_HZ / 3600, 4), "dropped": dict(self.dropped),
                "max_frames": int(self.n_frames.max()) if len(self) else 0}


def open_shard(path: str, columns: tuple[str, ...] = (*SCALAR_COLUMNS, "mel", "visual")) -> pq.ParquetFile:
    """Open a shard (``shards.reader.open_shard``) and check the types of ``columns``; errors name ``path``."""
    pf = open_part(path)
    for name in columns:
        want = SHARD_SCHEMA.field(name).type
        got = pf.schema_arrow.field(name).type if name in pf.schema_arrow.names else None
        if got != want:
            raise ShardError(f"{path}: column {name} has type {got}, expected {want}")
    return pf


def floats_of(table: pa.Table, name: str) -> np.ndarray:
    """float64 values of a column, NaN for null."""
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)


def select_clips(t: pa.Table, cfg: DataConfig) -> tuple[np.ndarray, dict[str, int]]:
    """Mask of the rows of one row group passing the load-time filters, and drops per reason.

    A row is counted under the first filter it fails, in the order below.
    """
    n = t.num_rows
    texts = t.column("text_model").to_pylist()
    frames = t.column("n_frames").to_numpy(zero_copy_only=False)
    dur = floats_of(t, "duration_s")
    fit = floats_of(t, "fit_rmse")
    checks: list[tuple[str, np.ndarray]] = [("empty", np.asarray(frames > 0))]
    if cfg.require_text:
        checks.append(("no_text", np.array([bool(s) for s in texts], dtype=bool)))
    if cfg.require_visual:
        checks.append(("no_visual", ~np.isnan(fit)))
    checks.append(("text_longer_than_frames", np.array([len(s or "") <= f for s, f in zip(texts, frames, strict=True)], bool)))
    limits = [("too_short", dur, cfg.min_duration_s, 1), ("too_long", dur, cfg.max_duration_s, -1),
              ("low_dnsmos_ovrl", floats_of(t, "dnsmos_ovrl"), cfg.min_dnsmos_ovrl, 1),
              ("low_asd_score", floats_of(t, "asd_score"), cfg.min_asd_score, 1),
              ("high_fit_rmse", fit, cfg.max_fit_rmse, -1)]
    for reason, values, threshold, sign in limits:
        if threshold is not None:  # NaN (null) compares False: a set threshold fails null values
            checks.append((reason, values >= threshold if sign > 0 else values <= threshold))
    keep = np.ones(n, dtype=bool)
    dropped: dict[str, int] = {}
    for reason, ok in checks:
        newly = keep & ~ok
        if newly.any():
            dropped[reason] = int(newly.sum())
        keep &= ok
    return keep, dropped


def build_index(shards_dir: str, cfg: DataConfig) -> ClipIndex:
    """Scan the scalar columns of every shard, apply the load-time filters, record where clips live."""
    files = list_shard_parts(str(shards_dir))[1]
    cols: dict[str, list[Any]] = {k: [] for k in ("file_idx", "row_group", "row", "n_frames", "clip_ids", "text")}
    dropped: dict[str, int] = {}
    n_scanned = 0
    for fi, path in enumerate(files):
        pf = open_shard(path)
        for rg in range(pf.num_row_groups):
            t = read_row_group(pf, path, rg, SCALAR_COLUMNS)
            n_scanned += t.num_rows
            keep, drops = select_clips(t, cfg)
            for k, v in drops.items():
                dropped[k] = dropped.get(k, 0) + v
            rows = np.flatnonzero(keep)
            cols["file_idx"].append(np.full(len(rows), fi, np.int32))
            cols["row_group"].append(np.full(len(rows), rg, np.int32))
            cols["row"].append(rows.astype(np.int32))
            cols["n_frames"].append(t.column("n_frames").to_numpy(zero_copy_only=False)[rows].astype(np.int32))
            ids, texts = t.column("clip_id").to_pylist(), t.column("text_model").to_pylist()
            cols["clip_ids"].extend(ids[r] for r in rows)
            cols["text"].extend(texts[r] or "" for r in rows)

    def cat(name: str) -> np.ndarray:
        return np.concatenate(cols[name]) if cols[name] else np.zeros(0, np.int32)

    return ClipIndex(shards_dir=str(shards_dir), files=files, file_idx=cat("file_idx"), row_group=cat("row_group"),
                     row=cat("row"), n_frames=cat("n_frames"), clip_ids=cols["clip_ids"], text_model=cols["text"],
                     n_scanned=n_scanned, dropped=dropped)


def exclude_clips(index: ClipIndex, held_out: set[str], reason: str = "held_out_test") -> ClipIndex:
    """``index`` without the clips in ``held_out`` (counted in ``dropped[reason]``)."""
    keep = np.array([c not in held_out for c in index.clip_ids], dtype=bool)
    if keep.all():
        return index
    dropped = dict(index.dropped)
    dropped[reason] = dropped.get(reason, 0) + int((~keep).sum())
    return ClipIndex(shards_dir=index.shards_dir, files=index.files, file_idx=index.file_idx[keep],
                     row_group=index.row_group[keep], row=index.row[keep], n_frames=index.n_frames[keep],
                     clip_ids=[c for c, k in zip(index.clip_ids, keep, strict=True) if k],
                     text_model=[t for t, k in zip(index.text_model, keep, strict=True) if k],
                     n_scanned=index.n_scanned, dropped=dropped)


# --------------------------------------------------------------------------- epoch plan


@dataclass
class EpochPlan:
    """Per rank, the batches of one epoch: (window number, clip positions in the index)."""

    ranks: list[list[tuple[int, np.ndarray]]]
    n_skipped_long: int  # clips longer than max_frames_per_batch, left out
    n_repeated: list[int]  # per rank, batches repeated to even the ranks out


def pack_batches(positions: np.ndarray, n_frames: np.ndarray, cfg: DataConfig) -> list[np.ndarray]:
    """Greedy packing of length-sorted clips under the frame budget (padding counted) and clip cap."""
    batches: list[np.ndarray] = []
    start = 0
    longest = 0
    for i, pos in enumerate(positions):
        n = int(n_frames[pos])
        size = i - start + 1
        if size > 1 and (size > cfg.max_samples_per_batch or size * max(longest, n) > cfg.max_frames_per_batch):
            batches.append(positions[start:i])
            start, longest = i, 0
        longest = max(longest, n)
    if start < len(positions):
        batches.append(positions[start:])
    return batches


def plan_epoch(index: ClipIndex, cfg: DataConfig, world_size: int = 1, epoch: int = 0) -> EpochPlan:
    """The batches of every rank for ``epoch``, from the index alone (no shard I/O)."""
    rng = np.random.default_rng([cfg.seed, epoch])
    fits = index.n_frames <= cfg.max_frames_per_batch
    n_long = int((~fits).sum())
    keys = index.file_idx.astype(np.int64) * (int(index.row_group.max(initial=0)) + 1) + index.row_group
    group_keys, inverse = np.unique(keys, return_inverse=True)
    members = [[] for _ in group_keys]
    for pos in np.flatnonzero(fits):
        members[inverse[pos]].append(pos)
    order = rng.permutation(len(group_keys)) if cfg.shuffle else np.arange(len(group_keys))
    ranks: list[list[tuple[int, np.ndarray]]] = []
    for r in range(world_size):
        mine = order[r::world_size]
        plan: list[tuple[int, np.ndarray]] = []
        for w, start in enumerate(range(0, len(mine), cfg.window_row_groups)):
            pos = np.array([p for g in mine[start:start + cfg.window_row_groups] for p in members[g]], np.int64)
            if not len(pos):
                continue
            if cfg.shuffle:
                pos = rng.permutation(pos)
            pos = pos[np.argsort(index.n_frames[pos], kind="stable")]
            batches = pack_batches(pos, index.n_frames, cfg)
            if cfg.shuffle:
                batches = [batches[i] for i in rng.permutation(len(batches))]
            plan.extend((w, b) for b in batches)
        ranks.append(plan)
    repeated = [0] * world_size
    if cfg.even_batches and world_size > 1:
        target = max(len(p) for p in ranks)
        everything = [b for p in ranks for b in p]
        for r, plan in enumerate(ranks):
            pool = list(plan) or everything
            for i in range(target - len(plan)):
                plan.append(pool[i % len(pool)])
                repeated[r] += 1
    return EpochPlan(ranks=ranks, n_skipped_long=n_long, n_repeated=repeated)


# --------------------------------------------------------------------------- reading


class RowGroupReader:
    """Reads the feature columns of one row group at a time; keeps the last file and row group open."""

    def __init__(self, files: list[str]):
        self.files = files
        self.pf: tuple[int, pq.ParquetFile] | None = None
        self.table: tuple[tuple[int, int], pa.Table] | None = None

    def read(self, file_idx: int, rg: int) -> pa.Table:
        if self.table is not None and self.table[0] == (file_idx, rg):
            return self.table[1]
        if self.pf is None or self.pf[0] != file_idx:
            self.pf = (file_idx, open_shard(self.files[file_idx]))
        table = read_row_group(self.pf[1], self.files[file_idx], rg, FEATURE_COLUMNS)
        self.table = ((file_idx, rg), table)
        return table


def frames_of(table: pa.Table, name: str, row: int, dim: int) -> np.ndarray | None:
    """``(n, dim)`` float32 frames of one row of a ``list<fixed_size_list>`` column; None when null."""
    value = table.column(name)[row]
    if not value.is_valid:
        return None
    # a copy: the clip must not keep its whole row group alive
    return np.array(value.values.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, dim)


def load_clip(reader: RowGroupReader, index: ClipIndex, pos: int) -> tuple[np.ndarray, np.ndarray]:
    """``(mel (n, 100), codes (n, 61))`` of the clip at index position ``pos``, checked against the index."""
    fi, rg, row = int(index.file_idx[pos]), int(index.row_group[pos]), int(index.row[pos])
    path = index.files[fi]
    table = reader.read(fi, rg)
    where = f"{path}: row group {rg} row {row}"
    if row >= table.num_rows or table.column("clip_id")[row].as_py() != index.clip_ids[pos]:
        raise ShardError(f"{where}: not clip {index.clip_ids[pos]}; the shard changed since the index was built")
    mel = frames_of(table, "mel", row, N_MELS)
    codes = frames_of(table, "visual", row, CODE_DIM)
    n = int(index.n_frames[pos])
    if mel is None or codes is None:
        raise ShardError(f"{where}: clip {index.clip_ids[pos]} has a null {'mel' if mel is None else 'visual'}")
    if len(mel) != n or len(codes) != n:
        raise ShardError(f"{where}: n_frames {n} but mel has {len(mel)} and visual {len(codes)} frames")
    if not (np.isfinite(mel).all() and np.isfinite(codes).all()):
        raise ShardError(f"{where}: clip {index.clip_ids[pos]} has non-finite mel or visual values")
    return mel, codes


def collate_clips(clips: list[tuple[str, np.ndarray, np.ndarray, list[int]]]) -> dict[str, Any]:
    """Zero-padded batch tensors from ``(clip_id, mel, codes, text ids)`` tuples."""
    lengths = [len(m) for _, m, _, _ in clips]
    b, n = len(clips), max(lengths)
    mel = torch.zeros(b, n, N_MELS)
    codes = torch.zeros(b, n, CODE_DIM)
    text = torch.zeros(b, n, dtype=torch.long)  # 0 = filler: pads the text to the clip's frames, then to N
    for i, (cid, m, c, ids) in enumerate(clips):
        if len(ids) > len(m):
            raise ValueError(f"clip {cid}: {len(ids)} text tokens for {len(m)} frames")
        mel[i, :len(m)] = torch.from_numpy(m)
        codes[i, :len(c)] = torch.from_numpy(c)
        text[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
    return {"mel": mel, "codes": codes, "text": text, "lengths": torch.tensor(lengths, dtype=torch.long),
            "clip_ids": [cid for cid, _, _, _ in clips]}


class ShardBatchDataset(IterableDataset):
    """Yields the ready batches of one rank's epoch plan; DataLoader workers split it by window."""

    def __init__(self, index: ClipIndex, vocab: Vocab, batches: list[tuple[int, np.ndarray]]):
        self.index = index
        self.vocab = vocab
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        mine = [(w, b) for w, b in self.batches if w % n_workers == worker]
        reader = RowGroupReader(self.index.files)
        i = 0
        while i < len(mine):  # one run of batches of the same window at a time
            j = i
            while j < len(mine) and mine[j][0] == mine[i][0]:
                j += 1
            needed = np.concatenate([b for _, b in mine[i:j]])
            needed = needed[np.lexsort((self.index.row[needed], self.index.row_group[needed],
                                        self.index.file_idx[needed]))]
            loaded = {int(p): load_clip(reader, self.index, int(p)) for p in needed}
            for _, batch in mine[i:j]:
                yield collate_clips([(self.index.clip_ids[p], *loaded[int(p)],
                                      self.vocab.encode(self.index.text_model[p])) for p in batch])
            del loaded
            i = j


def make_loader(index: ClipIndex, vocab: Vocab, cfg: DataConfig, rank: int = 0, world_size: int = 1,
                epoch: int = 0) -> DataLoader:
    """The batches of ``rank`` for ``epoch`` (dicts: mel, codes, text, lengths, clip_ids); ``len()`` = batches."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world size {world_size}")
    if len(index) == 0:
        raise ValueError(f"{index.shards_dir}: no clips left after filtering ({index.dropped})")
    plan = plan_epoch(index, cfg, world_size, epoch)
    if plan.n_skipped_long:
        warnings.warn(f"{plan.n_skipped_long} clips longer than max_frames_per_batch={cfg.max_frames_per_batch} "
                      "frames are skipped", stacklevel=2)
    dataset = ShardBatchDataset(index, vocab, plan.ranks[rank])
    return DataLoader(dataset, batch_size=None, num_workers=cfg.num_workers,
                      persistent_workers=False)


def compute_feature_stats(index: ClipIndex, max_clips: int = 256, min_std: float = 1e-3) -> dict[str, Any]:
    """Per-dimension mean and std of mel and codes over up to ``max_clips`` clips spread over the index.

    Stds are floored at ``min_std`` (constant dimensions would otherwise divide by zero).
    """
    if len(index) == 0:
        raise ValueError(f"{index.shards_dir}: no clips to compute feature stats on")
    pick = np.unique(np.linspace(0, len(index) - 1, min(max_clips, len(index))).round().astype(np.int64))
    reader = RowGroupReader(index.files)
    sums = {"mel": np.zeros(N_MELS), "codes": np.zeros(CODE_DIM)}
    sqs = {"mel": np.zeros(N_MELS), "codes": np.zeros(CODE_DIM)}
    frames = 0
    for pos in pick:
        mel, codes = load_clip(reader, index, int(pos))
        for k, x in (("mel", mel), ("codes", codes)):
            x = x.astype(np.float64)
            sums[k] += x.sum(0)
            sqs[k] += (x * x).sum(0)
        frames += len(mel)
    out: dict[str, Any] = {"n_clips": len(pick), "n_frames": frames, "min_std": min_std}
    for k in ("mel", "codes"):
        mean = sums[k] / frames
        std = np.sqrt(np.maximum(sqs[k] / frames - mean * mean, 0.0))
        out[f"{k}_mean"] = mean.tolist()
        out[f"{k}_std"] = np.maximum(std, min_std).tolist()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description="Index curated shards and summarize one epoch of batches (JSON).")
    p.add_argument("shards", help="shards folder, or a curation output folder holding shards/")
    p.add_argument("--max-frames-per-batch", type=int, default=DataConfig.max_frames_per_batch)
    args = p.parse_args()
    cfg = DataConfig(max_frames_per_batch=args.max_frames_per_batch)
    index = build_index(args.shards, cfg)
    plan = plan_epoch(index, cfg)
    used = [len(b) * int(index.n_frames[b].max()) for _, b in plan.ranks[0]]
    real = [int(index.n_frames[b].sum()) for _, b in plan.ranks[0]]
    print(json.dumps({"index": index.summarize(), "config": asdict(cfg), "n_batches": len(used),
                      "n_skipped_long": plan.n_skipped_long,
                      "padding_frac": round(1 - sum(real) / max(sum(used), 1), 4)}, indent=2))


if __name__ == "__main__":
    main()
