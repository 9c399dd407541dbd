"""Data access for the shard-inspection dashboard: pyarrow and numpy only, no Streamlit.

Everything the app shows is read here, from one output folder ``OUT`` (a local path or
any URI that ``pyarrow.fs`` knows) laid out as ``docs/shards.md`` describes::

    OUT/manifest.json   OUT/shards/part-*.parquet   OUT/rejects/part-*.parquet   OUT/sources/part-*.parquet

Safety: :class:`OutputFolder` opens files only through :meth:`OutputFolder.open_input`, which
refuses any path that does not resolve (symlinks followed, for local folders) to inside ``OUT``.
Paths stored in rows (``source_path``) are shown, never opened. Nothing is ever written.

Reads are cached per part file, keyed by path, size and modification time, so a part that a
running curation rewrites is read again.

Time base: seconds of source time. Mel and visual frames run at 93.75 Hz (24000 / 256),
frame ``k`` of a clip at ``start_s + k / 93.75``; MediaPipe's own scores at 30 fps from ``start_s``.
"""

from __future__ import annotations

import json
import os
import posixpath
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from core.media_io import is_uri, resolve
from shards.codes import (
    EXPRESSION_NAMES,
    EYE_NAMES,
    EYE_SLICE,
    MP_BLENDSHAPE_NAMES,
    POSE_NAMES,
    POSE_SLICE,
    ROTATION_SLICE,
)
from shards.reader import MANIFEST, SHARDS, is_part_name, read_row
from shards.schema import SchemaVersionError, read_schema_version
from shards.spec import FRAME_RATE_HZ, VIDEO_TRACK_FPS
from shards.sync_score import combine_sync_score

MIN_SCHEMA_VERSION = 2  # v1 shards had other column names; the dashboard reads v2 and later by column presence
HEAVY_COLUMNS = ("mel", "audio_flac", "visual", "mp_blendshapes", "face_boxes", "words", "provenance")
CACHE_ENTRIES = 64  # cached part reads (tables or row groups)
DEFAULT_BLENDSHAPES = ("jawOpen", "eyeBlinkLeft", "eyeBlinkRight")
ROTATION_NAMES = POSE_NAMES[ROTATION_SLICE.start - POSE_SLICE.start:ROTATION_SLICE.stop - POSE_SLICE.start]  # pitch, yaw, roll
# Histogram metric -> the config fields (section, field) drawn as threshold lines on it.
THRESHOLD_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "duration_s": (("segment", "min_clip_s"), ("segment", "max_clip_s")),
    "dnsmos_ovrl": (("dnsmos", "min_dnsmos_ovrl"),),
    "asd_score": (("asd", "min_asd_score"),),
    "fit_rmse": (("visual", "max_fit_rmse_iod"),),
    "chars_per_s": (("segment", "min_chars_per_s"), ("segment", "max_chars_per_s")),
    "sync_score": (("sync", "min_score"),),
    "av_offset_s": (("sync", "max_correct_s"),),  # drawn at -limit and +limit
}
SYMMETRIC_THRESHOLDS = ("av_offset_s",)  # metrics whose limit holds on both sides of 0


T = TypeVar("T")

class DashboardDataError(Exception):
    """A problem with the output folder, with a message meant for the user."""


class NoShardsError(DashboardDataError):
    """The folder holds no committed shard parts."""


class CorruptPartError(DashboardDataError):
    """A part file that cannot be read or is not an omnitalker part; the message names the file."""


class OutsideFolderError(DashboardDataError):
    """A path that is not inside the output folder."""


@dataclass(frozen=True)
class PartFile:
    """One committed part: its path inside the filesystem, size in bytes, mtime in ns (0 if unknown)."""

    path: str
    size: int
    mtime_ns: int


_CACHE: OrderedDict[tuple, Any] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def cache_get(key: tuple) -> Any:
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    return None


def cache_put(key: tuple, value: Any) -> Any:
    with _CACHE_LOCK:
        _CACHE[key] = value
        while len(_CACHE) > CACHE_ENTRIES:
            _CACHE.popitem(last=False)
    return value


def clear_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()


class OutputFolder:
    """A curation output folder, opened read-only."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.fs, base = resolve(root)
        self.local = not is_uri(root) or isinstance(self.fs, pafs.LocalFileSystem)
        self.base = os.path.realpath(base) if self.local else posixpath.normpath(base).rstrip("/")
        info = self.fs.get_file_info(self.base)
        if info.type == pafs.FileType.NotFound:
            raise NoShardsError(f"{root}: no such output folder")
        if info.type != pafs.FileType.Directory:
            raise NoShardsError(f"{root}: not a folder; give the output folder of a curation run (OUT)")

    # ----------------------------------------------------------------- the one way in

    def check_inside(self, path: str) -> str:
        """``path`` normalized, or :class:`OutsideFolderError` unless it lies inside the folder."""
        if self.local:
            real = os.path.realpath(path)
            if real != self.base and not real.startswith(self.base.rstrip(os.sep) + os.sep):
                raise OutsideFolderError(f"{path}: outside the output folder {self.root}; refusing to open it")
            return real
        norm = posixpath.normpath(path)
        if not norm.startswith(self.base + "/"):
            raise OutsideFolderError(f"{path}: outside the output folder {self.root}; refusing to open it")
        return norm

    def open_input(self, path: str) -> pa.NativeFile:
        """A read-only random-access file; the only place this module opens anything."""
        return self.fs.open_input_file(self.check_inside(path))

    # ----------------------------------------------------------------- listing

    def list_parts(self, sub: str) -> list[PartFile]:
        """Committed parts under ``sub`` (``part-*.parquet``; hidden temporary files ignored)."""
        sel = pafs.FileSelector(posixpath.join(self.base, sub), allow_not_found=True)
        out = []
        for info in self.fs.get_file_info(sel):
            name = posixpath.basename(info.path)
            if info.type == pafs.FileType.File and is_part_name(name):
                out.append(PartFile(info.path, int(info.size or 0), int(info.mtime_ns or 0)))
        return sorted(out, key=lambda p: p.path)

    def read_manifest(self, name: str = MANIFEST) -> dict[str, Any] | None:
        """``manifest.json`` (or another JSON file of the folder, e.g. ``verify.json``); None when absent,
        a broken one is a :class:`CorruptPartError`."""
        path = posixpath.join(self.base, name)
        if self.fs.get_file_info(path).type != pafs.FileType.File:
            return None
        try:
            with self.open_input(path) as fh:
                return json.loads(fh.read().decode())
        except (ValueError, UnicodeDecodeError) as e:
            raise CorruptPartError(f"{path}: not valid JSON ({e})") from e

    # ----------------------------------------------------------------- reading parts

    def read_part(self, part: PartFile, columns: list[str] | None, check_version: bool) -> pa.Table:
        """One part's columns (all when None), cached; errors name the file."""
        key = ("table", self.root, part.path, part.size, part.mtime_ns, tuple(columns) if columns else None)
        hit = cache_get(key)
        if hit is not None:
            return hit
        def read(fh: Any) -> pa.Table:
            pf = pq.ParquetFile(fh)
            if check_version:
                check_part_metadata(part.path, pf.schema_arrow.metadata)
            names = set(pf.schema_arrow.names)
            return pf.read(columns=[c for c in columns if c in names] if columns is not None else None)

        return cache_put(key, self.read_guarded(part, read))

    def read_guarded(self, part: PartFile, read: Callable[[Any], T]) -> T:
        """``read(open file)`` for one part; any read failure becomes :class:`CorruptPartError` naming the file."""
        try:
            with self.open_input(part.path) as fh:
                return read(fh)
        except DashboardDataError:
            raise
        except (pa.ArrowException, OSError, ValueError) as e:
            raise CorruptPartError(f"{part.path}: cannot read this part ({type(e).__name__}: {e})") from e

    def read_all(self, sub: str, columns: list[str] | None = None) -> pa.Table | None:
        """Every committed part of ``sub`` as one table; None when there are none."""
        parts = self.list_parts(sub)
        tables = [self.read_part(p, columns, check_version=sub == SHARDS) for p in parts]
        if not tables:
            return None
        return pa.concat_tables(tables, promote_options="permissive")

    def require_shards(self) -> list[PartFile]:
        parts = self.list_parts(SHARDS)
        if not parts:
            raise NoShardsError(
                f"{self.root}: no shards here (no {SHARDS}/part-*.parquet). Point the dashboard at the output "
                "folder of a finished curation run (`omnitalker curate --output OUT`).")
        return parts

    def read_clips(self) -> pa.Table:
        """The scalar columns of every clip, plus ``_part`` (file) and ``_row`` (row in it) to load details."""
        tables = []
        for part in self.require_shards():
            schema = self.read_schema(part)
            light = [n for n in schema.names if n not in HEAVY_COLUMNS]
            t = self.read_part(part, light, check_version=True)
            t = t.append_column("_part", pa.array([part.path] * t.num_rows, pa.string()))
            tables.append(t.append_column("_row", pa.array(np.arange(t.num_rows, dtype=np.int64))))
        return add_sync_score(pa.concat_tables(tables, promote_options="permissive"))

    def read_schema(self, part: PartFile) -> pa.Schema:
        key = ("schema", self.root, part.path, part.size, part.mtime_ns)
        hit = cache_get(key)
        if hit is not None:
            return hit
        schema = self.read_guarded(part, pq.read_schema)
        check_part_metadata(part.path, schema.metadata)
        return cache_put(key, schema)

    def read_clip(self, part_path: str, row: int) -> dict[str, Any]:
        """Every column of one clip (row ``row`` of part ``part_path``), reading only its row group."""
        part = next((p for p in self.list_parts(SHARDS) if p.path == part_path), None)
        if part is None:
            raise DashboardDataError(f"{part_path}: not a shard part of {self.root}")
        key = ("clip", self.root, part.path, part.size, part.mtime_ns, row)
        hit = cache_get(key)
        if hit is not None:
            return hit
        def read(fh: Any) -> dict[str, Any] | None:
            pf = pq.ParquetFile(fh)
            check_part_metadata(part.path, pf.schema_arrow.metadata)
            return read_row(pf, part.path, row)

        clip = self.read_guarded(part, read)
        if clip is None:
            raise DashboardDataError(f"{part.path}: has no row {row}")
        return cache_put(key, clip)


def check_part_metadata(path: str, metadata: dict[bytes, bytes] | None) -> int:
    """The shard's schema version; :class:`CorruptPartError` naming ``path`` unless it is v2 or later."""
    try:
        version = read_schema_version(path, metadata)
    except SchemaVersionError as e:
        raise CorruptPartError(str(e)) from e
    if version < MIN_SCHEMA_VERSION:
        raise CorruptPartError(f"{path}: schema version {version}; the dashboard reads v{MIN_SCHEMA_VERSION} "
                               "and later (re-curate v1 output)")
    return version


# --------------------------------------------------------------------------- overview


def summarize_hours(clips: pa.Table | None, rejects: pa.Table | None) -> list[dict[str, Any]]:
    """Bar-chart rows ``{status, stage, reason, hours, count}``: kept clips, then rejects by stage and reason.

    Hours are seconds of audio / 3600 (``duration_s`` of clips and of reject rows).
    """
    rows: list[dict[str, Any]] = []
    if clips is not None and clips.num_rows:
        rows.append({"status": "kept", "stage": "kept", "reason": "clips", "count": clips.num_rows,
                     "hours": float(pc.sum(clips["duration_s"]).as_py() or 0.0) / 3600})
    if rejects is not None and rejects.num_rows:
        grouped = rejects.group_by(["stage", "reason"]).aggregate([("duration_s", "sum"), ([], "count_all")])
        for r in sorted(grouped.to_pylist(), key=lambda r: (r["stage"], r["reason"])):
            rows.append({"status": "rejected", "stage": r["stage"], "reason": r["reason"],
                         "count": int(r["count_all"]), "hours": float(r["duration_s_sum"] or 0.0) / 3600})
    return rows


def collect_thresholds(config: dict[str, Any] | None) -> dict[str, list[tuple[str, float]]]:
    """Metric -> ``[(config field, value)]`` from ``manifest["config"]``; disabled (0/None) limits left out."""
    out: dict[str, list[tuple[str, float]]] = {}
    config = config or {}
    for metric, fields in THRESHOLD_FIELDS.items():
        for section, name in fields:
            if metric == "asd_score" and (config.get("asd") or {}).get("scorer") == "learned":
                name = "min_learned_score"
            value = (config.get(section) or {}).get(name)
            if isinstance(value, int | float) and not isinstance(value, bool) and (value != 0 or metric == "asd_score"):
                out.setdefault(metric, []).append((f"{section}.{name}", float(value)))
                if metric in SYMMETRIC_THRESHOLDS:
                    out[metric].append((f"-{section}.{name}", -float(value)))
    return out


def compute_histogram(values: np.ndarray, bins: int = 30, include: list[float] | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """``(counts, edges)`` of the finite ``values``; the range is widened to show every ``include`` value."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    points = np.concatenate([v, np.asarray(include or [], dtype=np.float64)])
    if points.size == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    lo, hi = float(points.min()), float(points.max())
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.histogram(v, bins=bins, range=(lo, hi))


def add_sync_score(table: pa.Table) -> pa.Table:
    """``table`` with ``sync_score``, the lip-sync score the sync stage kept each clip on (``shards.sync_score``:
    ``sync_conf + (1 - sync_dist)`` less the cost of ``av_offset_s``; null where the stage did not run)."""
    if any(c not in table.column_names for c in ("sync_conf", "sync_dist", "av_offset_s")):
        return table
    conf, dist = column_values(table, "sync_conf"), column_values(table, "sync_dist")
    score = combine_sync_score(conf, dist, column_values(table, "av_offset_s"))
    return table.append_column("sync_score", pa.array(score.astype(np.float32), mask=~np.isfinite(score)))


def column_values(table: pa.Table | None, column: str) -> np.ndarray:
    """A numeric column as float64 with NaN for nulls (empty when absent)."""
    if table is None or column not in table.column_names:
        return np.zeros(0)
    return np.asarray(table[column].to_numpy(zero_copy_only=False), dtype=np.float64)


def present_columns(table: pa.Table) -> list[str]:
    """Columns that hold at least one value (columns later stages fill stay hidden until then)."""
    return [c for c in table.column_names if table[c].null_count < table.num_rows]


def skipped_stages(manifest: dict[str, Any] | None) -> list[dict[str, Any]]:
    """``[{stage, why, files}]`` from the manifest's ``skipped`` section."""
    rows = []
    for stage, whys in sorted(((manifest or {}).get("skipped") or {}).items()):
        for why, n in sorted(whys.items()):
            rows.append({"stage": stage, "why": why, "files": int(n)})
    return rows


# --------------------------------------------------------------------------- filtering


def filter_clips(table: pa.Table, languages: list[str] | None = None, sources: list[str] | None = None,
                 ranges: dict[str, tuple[float, float]] | None = None, text: str | None = None) -> pa.Table:
    """Clips matching every given filter: language and source in the lists, each column within
    ``[lo, hi]`` (rows with a null there are dropped), ``text`` a case-insensitive substring."""
    mask = pa.array(np.ones(table.num_rows, dtype=bool))
    if languages and "language" in table.column_names:
        mask = pc.and_(mask, pc.fill_null(pc.is_in(table["language"], pa.array(languages, pa.string())), False))
    if sources:
        mask = pc.and_(mask, pc.fill_null(pc.is_in(table["source_path"], pa.array(sources, pa.string())), False))
    for col, (lo, hi) in (ranges or {}).items():
        if col in table.column_names:
            inside = pc.and_(pc.greater_equal(table[col], lo), pc.less_equal(table[col], hi))
            mask = pc.and_(mask, pc.fill_null(inside, False))
    if text and "text" in table.column_names:
        hit = pc.match_substring(table["text"], text, ignore_case=True)
        mask = pc.and_(mask, pc.fill_null(hit, False))
    return table.filter(mask)


def sort_table(table: pa.Table, column: str, descending: bool = False) -> pa.Table:
    """Rows ordered by ``column`` (nulls last)."""
    if column not in table.column_names:
        return table
    return table.sort_by([(column, "descending" if descending else "ascending")])


def filter_rejects(table: pa.Table, stages: list[str] | None = None, reasons: list[str] | None = None
                   ) -> pa.Table:
    """Reject rows of the given stages and reasons (all when a list is empty or None)."""
    mask = pa.array(np.ones(table.num_rows, dtype=bool))
    if stages:
        mask = pc.and_(mask, pc.is_in(table["stage"], pa.array(stages, pa.string())))
    if reasons:
        mask = pc.and_(mask, pc.is_in(table["reason"], pa.array(reasons, pa.string())))
    return table.filter(mask)


# --------------------------------------------------------------------------- one clip


def frame_times(n_frames: int, start_s: float, rate_hz: float = FRAME_RATE_HZ) -> np.ndarray:
    """Source-time seconds of ``n_frames`` frames at ``rate_hz`` from ``start_s``."""
    return start_s + np.arange(n_frames, dtype=np.float64) / rate_hz


def to_matrix(rows: list | None, dim: int) -> np.ndarray | None:
    """A list-of-lists column value as a float32 ``(n, dim)`` array (None when absent or empty)."""
    if not rows:
        return None
    m = np.asarray(rows, dtype=np.float32)
    return m if m.ndim == 2 and m.shape[1] == dim else None


def visual_curves(visual: np.ndarray, start_s: float, blendshapes: tuple[str, ...] | list[str] = DEFAULT_BLENDSHAPES
                  ) -> dict[str, dict[str, np.ndarray]]:
    """Curves of the 61-d codes on the 93.75 Hz axis: groups ``pose`` (degrees), ``blendshapes`` (0-1)
    and ``eye`` (degrees), each ``{"t_s": times, name: values}``."""
    t = frame_times(visual.shape[0], start_s)
    pose = np.degrees(visual[:, ROTATION_SLICE])
    eye = np.degrees(visual[:, EYE_SLICE])
    return {
        "pose": {"t_s": t, **{f"{n} (deg)": pose[:, i] for i, n in enumerate(ROTATION_NAMES)}},
        "blendshapes": {"t_s": t, **{n: visual[:, EXPRESSION_NAMES.index(n)] for n in blendshapes}},
        "eye": {"t_s": t, **{f"{n} (deg)": eye[:, i] for i, n in enumerate(EYE_NAMES)}},
    }


def mediapipe_curves(mp: np.ndarray, start_s: float, blendshapes: tuple[str, ...] | list[str] = DEFAULT_BLENDSHAPES
                     ) -> dict[str, np.ndarray]:
    """MediaPipe's own scores of ``blendshapes`` on their 30 fps axis, ``{"t_s": times, name: values}``."""
    t = frame_times(mp.shape[0], start_s, VIDEO_TRACK_FPS)
    return {"t_s": t, **{n: mp[:, MP_BLENDSHAPE_NAMES.index(n)] for n in blendshapes}}


def to_long_rows(curves: dict[str, np.ndarray], label: str = "") -> list[dict[str, Any]]:
    """``{"t_s": t, name: v}`` as long rows ``{t_s, curve, value}`` for a line chart."""
    t = curves["t_s"]
    rows = []
    for name, v in curves.items():
        if name == "t_s":
            continue
        curve = f"{name}{label}"
        rows.extend({"t_s": float(a), "curve": curve, "value": float(b)} for a, b in zip(t, v, strict=True))
    return rows


# Five stops of matplotlib's viridis, interpolated linearly.
VIRIDIS_STOPS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], np.float64)


def mel_to_image(mel: np.ndarray) -> np.ndarray:
    """``(n_frames, 100)`` log-mel -> ``(100, n_frames, 3)`` uint8 RGB, low frequencies at the bottom,
    colour scaled from the 1st to the 99th percentile."""
    m = np.asarray(mel, dtype=np.float64).T[::-1]
    lo, hi = np.percentile(m, [1, 99]) if m.size else (0.0, 1.0)
    x = np.clip((m - lo) / max(hi - lo, 1e-9), 0, 1) * (len(VIRIDIS_STOPS) - 1)
    i = np.minimum(x.astype(np.int64), len(VIRIDIS_STOPS) - 2)
    f = (x - i)[..., None]
    rgb = VIRIDIS_STOPS[i] * (1 - f) + VIRIDIS_STOPS[i + 1] * f
    return rgb.round().astype(np.uint8)


def word_rows(words: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Word timings as table rows (seconds of source time)."""
    return [{"word": w["word"], "start_s": round(w["start_s"], 3), "end_s": round(w["end_s"], 3),
             "prob": None if w.get("prob") is None else round(float(w["prob"]), 3)} for w in words or []]


def source_aspect(provenance: str | None) -> float:
    """Source video width / height from the clip's provenance (1.0 when unknown)."""
    try:
        w, h = json.loads(provenance or "{}")["visual"]["source_size_px"]
        return float(w) / float(h) if w and h else 1.0
    except (KeyError, TypeError, ValueError):
        return 1.0


def frame_at(t_s: float, start_s: float, n_frames: int, rate_hz: float = FRAME_RATE_HZ) -> int:
    """Index of the frame nearest source time ``t_s``, clamped to the clip."""
    return int(np.clip(round((t_s - start_s) * rate_hz), 0, max(n_frames - 1, 0)))


_FACE_MODEL: list[Any] = []


def project_face(codes: np.ndarray, aspect: float = 1.0) -> tuple[np.ndarray, np.ndarray | None]:
    """2D landmarks of one 61-d code: ``(478, 2)`` in image-height units (x scaled by ``aspect``,
    y down), and the canonical mesh triangles (None if the basis has none).

    Uses the packaged basis ``blendshape_fit/assets/basis_v1.npz`` (numpy only; no model runs).
    """
    from blendshape_fit.face_model import load_face_model

    if not _FACE_MODEL:
        _FACE_MODEL.append(load_face_model())
    model = _FACE_MODEL[0]
    _, pts = model.project(np.asarray(codes, dtype=np.float64), aspect=aspect)
    return np.stack([pts[:, 0] * aspect, pts[:, 1]], axis=1), model.triangles
