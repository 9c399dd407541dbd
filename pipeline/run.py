"""``python -m pipeline.run`` (= ``omnitalker curate``): curate media into Parquet shards.

The same command runs on a laptop (embedded local Ray) and on a cluster
(``ray job submit ... -- python -m pipeline.run ...``, which sets RAY_ADDRESS).
Re-running it resumes: inputs already committed are skipped.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

from pipeline.config import CurateConfig, load_config
from pipeline.executors import (
    CommitSpec,
    build_probe_stage,
    build_stages,
    init_ray,
    plan_operators,
    probe_ray,
    probe_serial,
    run_ray,
    run_serial,
)
from pipeline.inputs import InputFile, list_inputs
from pipeline.manifest import write_manifest
from pipeline.progress import CurateProgress, print_summary
from pipeline.storage import OutputStore
from stages.item import FileItem, Reject

log = logging.getLogger("omnitalker.curate")
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "curate.yaml"


def plan_items(inputs: list[InputFile], store: OutputStore) -> tuple[list[FileItem], set[str], int]:
    """New inputs as items, the sha256s already committed, and how many were skipped by (path, size, mtime)."""
    done = store.read_done_sources()
    done_stats: set[tuple[str, int, float]] = set()
    done_shas: set[str] = set()
    if done is not None:
        for r in done.to_pylist():
            done_stats.add((r["source_path"], r["size_bytes"], r["mtime"]))
            done_shas.add(r["source_sha256"])
    items = [FileItem(source_path=f.path) for f in inputs if (f.path, f.size_bytes, f.mtime) not in done_stats]
    return items, done_shas, len(inputs) - len(items)


def split_probed(probed: list[FileItem], done_shas: set[str]) -> tuple[list[FileItem], list[FileItem], int, int]:
    """Anti-join on sha256 and de-duplicate. Returns ``(to_process, to_commit_now, n_done, n_duplicates)``."""
    first_path: dict[str, str] = {}
    fresh, early = [], []
    n_done = n_dup = 0
    for item in probed:
        sha = item.source_sha256
        if sha in done_shas and not item.rejected:
            # Same bytes already committed: the same path touched, or a copy elsewhere.
            n_done += 1
            continue
        if sha in first_path or (sha in done_shas):
            n_dup += 1
            item.provenance["duplicate_of"] = first_path.get(sha, "(an earlier run)")
            item.reject_file(Reject(stage="probe", reason="duplicate",
                                    detail=f"same sha256 as {item.provenance['duplicate_of']}"))
            early.append(item)
            continue
        first_path[sha] = item.source_path
        (early if item.rejected else fresh).append(item)
    return fresh, early, n_done, n_dup


def curate(input_spec: str, output: str, cfg: CurateConfig, executor: str = "ray",
           show_progress: bool = True, limit: int | None = None) -> dict[str, Any]:
    """Run the whole job; returns the manifest."""
    t0 = time.time()
    store = OutputStore(output)
    store.ensure_dirs()
    store.clean_orphans()
    inputs = list_inputs(input_spec)
    items, done_shas, skipped_done = plan_items(inputs, store)
    if limit is not None:
        items = items[:limit]
    stages = build_stages(cfg)
    probe_stage = build_probe_stage(cfg)
    stats = {f.path: (f.size_bytes, f.mtime) for f in inputs}
    spec = CommitSpec(out_root=output, config_hash=cfg.hash(), stats=stats,
                      row_group_size=cfg.run.rows_per_row_group, zstd_level=cfg.run.zstd_level,
                      flac_subtype=cfg.run.flac_subtype)
    plans = plan_operators(stages, cfg.run.fuse_stages)
    label = "serial"
    if items and executor == "ray":
        label = "ray " + init_ray(cfg, plans)
        log.info("Ray operators: %s", " -> ".join(p.name for p in plans))
    log.info("%d inputs: %d to probe, %d already done (%s)", len(inputs), len(items), skipped_done, label)
    probed = (probe_ray if executor == "ray" else probe_serial)(items, probe_stage) if items else []
    fresh, early, n_done, n_dup = split_probed(probed, done_shas)
    total_hours = sum(i.probe.duration_s for i in fresh) / 3600
    with CurateProgress(len(fresh) + len(early), total_hours, show_progress) as progress:
        if early:
            progress.update(spec.commit(early))
        if fresh:
            runs = (run_ray(fresh, plans, spec, cfg.run.files_per_shard) if executor == "ray"
                    else run_serial(fresh, stages, spec, cfg.run.files_per_shard))
            for summary in runs:
                progress.update(summary)
    run_record = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t0)),
                  "wall_time_s": round(time.time() - t0, 3), "executor": label, "input": input_spec,
                  "new_files": len(fresh) + len(early), "skipped_done": skipped_done + n_done,
                  "duplicates": n_dup, "config_hash": cfg.hash()}
    manifest = write_manifest(store, cfg.to_dict(), cfg.hash(), run_record)
    if show_progress:
        print_summary(manifest, run_record)
    return manifest


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="omnitalker curate",
        description="Curate talking-head video and speech into Parquet shards (Ray Data job). "
                    "Re-running the same command resumes and duplicates nothing.")
    p.add_argument("--input", "-i", required=True,
                   help="a directory, a glob (quote it), a manifest (.txt/.csv/.tsv/.jsonl with paths) or a file; "
                        "local or s3:// gs:// URIs")
    p.add_argument("--output", "-o", required=True, help="output folder (local or URI): shards/, rejects/, "
                                                          "sources/, manifest.json")
    p.add_argument("--config", "-c", default=str(DEFAULT_CONFIG) if DEFAULT_CONFIG.exists() else None,
                   help="YAML config (default: configs/curate.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set dnsmos.min_dnsmos_ovrl=3.2 (repeatable)")
    p.add_argument("--executor", choices=("ray", "serial"), default="ray",
                   help="ray (default): Ray Data on RAY_ADDRESS or an embedded local Ray; "
                        "serial: the same stages in this process, for debugging and benchmarks")
    p.add_argument("--ray-address", default=None, help="Ray cluster address (default: $RAY_ADDRESS, else local)")
    p.add_argument("--limit", type=int, default=None, help="process at most this many new inputs")
    p.add_argument("--no-progress", action="store_true", help="no progress display and no summary table")
    p.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_config(args.config, args.overrides)
    if args.ray_address:
        cfg.run.ray_address = args.ray_address
    curate(args.input, args.output, cfg, executor=args.executor, show_progress=not args.no_progress,
           limit=args.limit)
    return 0



if __name__ == "__main__":
    sys.exit(main())
