"""Reading an ``omnitalker eval`` folder (EVAL_DIR) for the dashboard: pyarrow, numpy and json only.

An EVAL_DIR holds ``results.json`` (systems, models, split, device), ``table.md`` (one row per system),
``per_clip.parquet`` (one row per clip and system) and, after ``--render``, ``strips/<clip_id>.png``
(``evaluation/report.py`` writes them; the names are repeated here because the dashboard may not import
the evaluation package).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

RESULTS_FILE = "results.json"
TABLE_FILE = "table.md"
PER_CLIP_FILE = "per_clip.parquet"
STRIPS_DIR = "strips"
FORMAT = "omnitalker-eval-v1"


@dataclass
class EvalFolder:
    """What an EVAL_DIR holds."""

    root: str
    results: dict[str, Any]
    table_md: str
    per_clip: pa.Table | None
    strips: list[Path] = field(default_factory=list)  # PNG files, sorted

    def system_rows(self) -> list[dict[str, Any]]:
        """``results["systems"]`` as rows with a ``system`` column first."""
        return [{"system": name, **row} for name, row in self.results.get("systems", {}).items()]


def is_eval_dir(root: str | Path) -> bool:
    """True when ``root`` holds an evaluation's ``results.json``."""
    path = Path(root) / RESULTS_FILE
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError):
        return False


def read_eval_dir(root: str | Path) -> EvalFolder:
    """Read an EVAL_DIR; a missing ``per_clip.parquet`` or ``table.md`` is tolerated (None / empty)."""
    root = Path(root)
    results = json.loads((root / RESULTS_FILE).read_text(encoding="utf-8"))
    if results.get("format") != FORMAT:
        raise ValueError(f"{root / RESULTS_FILE}: not an evaluation result (format {results.get('format')!r})")
    table = (root / TABLE_FILE).read_text(encoding="utf-8") if (root / TABLE_FILE).is_file() else ""
    per_clip = pq.read_table(root / PER_CLIP_FILE) if (root / PER_CLIP_FILE).is_file() else None
    strips = sorted((root / STRIPS_DIR).glob("*.png")) if (root / STRIPS_DIR).is_dir() else []
    return EvalFolder(str(root), results, table, per_clip, strips)
