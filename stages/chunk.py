"""Chunks of a long file: cut after the whole-file stages, run the model stages apart, merge before commit.

One row per file puts a whole file on one worker from decode to codes, so an hour-long podcast runs
on one core while the others idle. The stages that need the whole file (decode and loudness, scene
cut, VAD, diarization: one speaker label set per file) run first; then :func:`split_item` cuts a file
longer than ``max_chunk_s`` into chunks, each a :class:`~stages.item.FileItem` row that owns the
segments starting in its span, and the model stages (ASR to sync) run on the chunks on any worker.
:func:`merge_chunks` puts the chunks of a file back together, and the file is committed once, as
before: its clips never straddle two commits and the clip ids and clip set are those of the unchunked
run.

Why the clips do not change: a cut lies only where no later stage looks across it,

* at a shot boundary between two segments (ASR joins pieces, fine segmentation joins VAD spans and
  the face pass samples ranges, each within one shot), or
* in a pause of at least ``min_gap_s`` with no speech (the longest join any stage makes:
  :func:`required_gap_s`).

A chunk carries only its window of the audio (its segments plus ``pad_s`` each side, for the ASD
context), so a file's audio crosses the object store once, not once per chunk. Face tracks are
numbered per chunk and renumbered on merge in file order; the faces stage's id counter is
translation-invariant, so the ids are those of the unchunked run.

Files with a sidecar transcript are not chunked: its text is aligned to the whole file's segments.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from shards.spec import AUDIO_SR
from stages.item import ChunkInfo, FileItem
from stages.transcripts import load_sidecar

# Window origins are multiples of this many 24 kHz samples (160 ms): a whole number of 32 ms VAD
# windows and 10 ms voice-mel hops at 16 kHz, so sliced audio lines up sample for sample.
ORIGIN_QUANTUM = 3840


@dataclass
class ChunkPlan:
    """How long files are cut; seconds."""

    max_chunk_s: float = 60.0  # a file longer than this is cut into chunks of about this length; 0 = never
    min_gap_s: float = 2.0  # a cut inside a shot needs a pause at least this long (>= required_gap_s)
    pad_s: float = 2.0  # audio carried beyond a chunk's first and last segment (>= the ASD context)

    def split(self, items: list[FileItem]) -> list[FileItem]:
        """Every item's chunks (or the item itself), in order."""
        return [c for item in items for c in split_item(item, self)]


def required_gap_s(join_gaps_s: list[float], merge_gap_s: float, margin_s: float) -> float:
    """The shortest in-shot pause a cut may use: longer than every join a later stage makes.

    ``join_gaps_s``: pauses below which ASR and fine segmentation join pieces; ``merge_gap_s`` and
    ``margin_s``: the face pass merges sampled ranges closer than ``merge_gap_s`` after widening
    each by ``margin_s``.
    """
    return max([*join_gaps_s, merge_gap_s + 2 * margin_s])


def find_cut_points(item: FileItem, min_gap_s: float) -> list[float]:
    """Source seconds between consecutive segments where the file may be cut (sorted)."""
    segs = sorted(item.segments, key=lambda s: s.start_sample)
    cuts: list[float] = []
    end_s = -math.inf
    shot = None
    for seg in segs:
        if shot is not None and seg.start_s >= end_s and (seg.shot_index != shot or seg.start_s - end_s >= min_gap_s):
            cuts.append(0.5 * (end_s + seg.start_s))
        end_s = max(end_s, seg.end_s)
        shot = seg.shot_index
    return cuts


def choose_cuts(cut_points: list[float], duration_s: float, max_chunk_s: float) -> list[float]:
    """Cuts that make chunks of at most about ``max_chunk_s``: the last allowed point before each limit
    (never closer than half a chunk to the previous cut), else the first one after it."""
    chosen: list[float] = []
    start = 0.0
    points = sorted(cut_points)
    while duration_s - start > max_chunk_s:
        inside = [p for p in points if start + 0.5 * max_chunk_s <= p <= start + max_chunk_s]
        later = [p for p in points if p > start + max_chunk_s]
        if inside:
            cut = inside[-1]
        elif later:
            cut = later[0]
        else:
            break
        if duration_s - cut < 0.25 * max_chunk_s:  # a sliver at the end: leave it with the last chunk
            break
        chosen.append(cut)
        start = cut
    return chosen


def split_item(item: FileItem, plan: ChunkPlan) -> list[FileItem]:
    """``[item]`` unchanged, or the chunks of a long file (see the module docstring)."""
    if (plan.max_chunk_s <= 0 or item.rejected or item.chunk is not None or item.audio_24k is None
            or len(item.audio_24k) / AUDIO_SR <= plan.max_chunk_s or not item.segments):
        return [item]
    if load_sidecar(item.source_path) is not None:
        return [item]
    total = len(item.audio_24k)
    cuts = choose_cuts(find_cut_points(item, plan.min_gap_s), total / AUDIO_SR, plan.max_chunk_s)
    if not cuts:
        return [item]
    bounds = [-math.inf, *cuts, math.inf]
    base_provenance = copy.deepcopy(item.provenance)
    chunks: list[FileItem] = []
    for k in range(len(bounds) - 1):
        lo, hi = bounds[k], bounds[k + 1]
        segs = [s for s in item.segments if lo <= s.start_s < hi]
        first = min(s.start_sample for s in segs) - int(plan.pad_s * AUDIO_SR)
        last = max(s.end_sample for s in segs) + int(plan.pad_s * AUDIO_SR)
        a = max(0, first // ORIGIN_QUANTUM * ORIGIN_QUANTUM)
        b = min(total, last)
        chunk = copy.copy(item)
        chunk.segments = segs
        chunk.audio_origin = a
        chunk.n_samples = total
        chunk.audio_24k = np.array(item.audio_24k[a:b])
        chunk.audio_16k = None if item.audio_16k is None else np.array(item.audio_16k[a * 2 // 3:b * 2 // 3])
        chunk.chunk = ChunkInfo(index=k, count=len(bounds) - 1, start_s=max(lo, 0.0), end_s=min(hi, total / AUDIO_SR),
                                base_provenance=base_provenance)
        chunk.rejects = list(item.rejects) if k == 0 else []
        chunk.timings = dict(item.timings) if k == 0 else {}
        chunk.provenance = copy.deepcopy(item.provenance)
        chunk.face_tracks = []
        chunks.append(chunk)
    return chunks


def merge_chunks(chunks: list[FileItem]) -> FileItem:
    """One item from all the chunks of a file (any order); raises if one is missing."""
    chunks = sorted(chunks, key=lambda c: c.chunk.index if c.chunk else 0)
    info = chunks[0].chunk
    if info is None or [c.chunk.index for c in chunks if c.chunk] != list(range(info.count)):
        raise ValueError(f"chunks of {chunks[0].source_path} incomplete: "
                         f"{[c.chunk.index if c.chunk else None for c in chunks]}")
    total = chunks[0].total_samples
    merged = replace(chunks[0], chunk=None, audio_origin=0, n_samples=None, audio_16k=None, segments=[],
                     face_tracks=[], rejects=[], timings={}, provenance={})
    merged.rejected = any(c.rejected for c in chunks)
    if merged.rejected or any(c.audio_24k is None for c in chunks):
        merged.audio_24k = None
    else:
        merged.audio_24k = np.zeros(total, np.float32)
        for c in chunks:
            merged.audio_24k[c.audio_origin:c.audio_origin + len(c.audio_24k)] = c.audio_24k
    base = 0
    for c in chunks:
        renumber_tracks(c, base)
        base += c.next_track_id
        merged.face_tracks += c.face_tracks
        merged.segments += c.segments
        merged.rejects += c.rejects
        for name, seconds in c.timings.items():
            merged.timings[name] = merged.timings.get(name, 0.0) + seconds
    merged.next_track_id = base
    merged.provenance = prov = merge_provenance(info.base_provenance, [c.provenance for c in chunks])
    # A stage that ran on any chunk ran on the file (a chunk whose segments were all dropped skips it).
    prov["skipped"] = {k: v for k, v in prov.get("skipped", {}).items() if k not in prov.get("models", {})}
    merged.provenance["chunks"] = {"count": info.count,
                                   "starts_s": [round(c.chunk.start_s, 3) for c in chunks if c.chunk]}
    if merged.rejected:
        merged.segments = []
    return merged


def renumber_tracks(chunk: FileItem, base: int) -> None:
    """Shift a chunk's face-track ids (and every reference to them) by ``base``."""
    if base == 0:
        return
    for tr in chunk.face_tracks:
        tr.track_id += base
        if tr.split_from is not None:
            tr.split_from += base
    for seg in chunk.segments:
        if seg.track_id is not None:
            seg.track_id += base
        for row in seg.extra.get("asd_candidates", []):
            row["track_id"] += base
        if "face" in seg.extra and "track_id" in seg.extra["face"]:
            seg.extra["face"]["track_id"] += base


def merge_provenance(base: dict[str, Any], parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The file's provenance from its chunks': what the whole-file stages wrote (``base``) once, and
    per-chunk additions combined: numbers summed, lists joined, the first value for anything else."""
    out: dict[str, Any] = {}
    for key in dict.fromkeys(k for p in parts for k in p):
        values = [p[key] for p in parts if key in p]
        if key in base and all(v == base[key] for v in values):
            out[key] = copy.deepcopy(base[key])
        elif all(isinstance(v, dict) for v in values):
            out[key] = merge_provenance(base.get(key) if isinstance(base.get(key), dict) else {}, values)
        elif all(isinstance(v, list) for v in values):
            out[key] = [x for v in values for x in v]
        elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            start = base.get(key, 0)  # counted before the cut: once, not once per chunk
            start = start if isinstance(start, int | float) and not isinstance(start, bool) else 0
            total = start + sum(v - start for v in values)
            out[key] = round(total, 6) if isinstance(total, float) else total
        else:
            out[key] = copy.deepcopy(values[0])
    return out
