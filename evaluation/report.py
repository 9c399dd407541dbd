"""Writing an EVAL_DIR: ``results.json``, ``per_clip.parquet``, ``table.md`` and the comparison strips.

``table.md`` has one row per system; arrows say which way is better. NaN (a metric that does not apply,
e.g. WER of a system that does not make speech) is written ``-`` in the table and ``null`` in JSON.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

RESULTS_FILE = "results.json"
PER_CLIP_FILE = "per_clip.parquet"
TABLE_FILE = "table.md"
STRIPS_DIR = "strips"

# (key in results["systems"][name], column header, digits)
TABLE_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("wer", "WER/CER ↓", 3),
    ("sim_a", "SIM-A ↑", 3),
    ("sync_conf", "Sync-C ↑", 3),
    ("sync_dist", "Sync-D ↓", 3),
    ("sync_offset_s", "offset s", 3),
    ("sync_conf_rendered", "Sync-C rendered ↑", 3),
    ("syncnet_c_rendered", "SyncNet-C ↑", 3),
    ("syncnet_d_rendered", "SyncNet-D ↓", 3),
    ("e_fid", "E-FID ↓", 2),
    ("p_fid", "P-FID ↓", 2),
    ("jaw_env_corr", "jaw-env r ↑", 3),
    ("head_motion_dps_gap", "head Δ °/s ↓", 2),
    ("blink_per_min_gap", "blink Δ /min ↓", 1),
    ("expr_range_gap", "expr-range Δ ↓", 3),
    ("style_corr", "style r ↑", 3),
    ("pose_diversity_deg", "pose div °", 3),
    ("id_sim", "ID-SIM ↑", 3),
    ("rtf_model", "RTF model", 3),
    ("rtf_e2e", "RTF e2e", 3),
    ("n_clips", "clips", 0),
)


def clean(value: Any) -> Any:
    """JSON-safe copy: NaN and inf become None, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def format_cell(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if digits == 0:
        return str(int(value))
    return f"{float(value):.{digits}f}"


def render_table(results: dict[str, Any]) -> str:
    """``table.md``: the systems' rows, then the models that scored them and the device."""
    systems = results["systems"]
    cols = [c for c in TABLE_COLUMNS if any(s.get(c[0]) is not None for s in systems.values())]
    lines = ["| system | " + " | ".join(h for _, h, _ in cols) + " |",
             "|---|" + "|".join("---:" for _ in cols) + "|"]
    for name, row in systems.items():
        lines.append(f"| {name} | " + " | ".join(format_cell(row.get(k), d) for k, _, d in cols) + " |")
    models = results.get("models", {})
    split = results.get("split", {})
    lines += ["", f"Split: {split.get('split')} ({split.get('n_test')} clips). Device: {results.get('device')}.",
              "Models: " + "; ".join(f"{k}: {v}" for k, v in models.items() if v) + "."]
    return "\n".join(lines) + "\n"


def write_per_clip(path: Path, rows: list[dict[str, Any]]) -> None:
    """``per_clip.parquet``: one row per (clip, system)."""
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    cols = {k: [clean(r.get(k)) for r in rows] for k in keys}
    pq.write_table(pa.table(cols), path)


def write_outputs(out_dir: Path, results: dict[str, Any], rows: list[dict[str, Any]],
                  strips: list[dict[str, Any]], cfg: Any) -> None:
    """Write every file of an EVAL_DIR (strips only when ``cfg.render``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.render and strips:
        from evaluation.render import write_strips

        id_sim, paths = write_strips(out_dir / STRIPS_DIR, strips, cfg)
        for name, value in id_sim.items():
            if name in results["systems"]:
                results["systems"][name]["id_sim"] = value
        results["strips"] = [str(p.relative_to(out_dir)) for p in paths]
    write_per_clip(out_dir / PER_CLIP_FILE, rows)
    results = clean(results)
    (out_dir / RESULTS_FILE).write_text(json.dumps(results, indent=1, ensure_ascii=False), encoding="utf-8")
    (out_dir / TABLE_FILE).write_text(render_table(results), encoding="utf-8")
