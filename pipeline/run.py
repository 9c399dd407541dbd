"""``python -m pipeline.run`` (= ``omnitalker curate``): curate media into Parquet shards.

The same command runs on a laptop (embedded local Ray) and on a cluster
(``ray job submit ... -- python -m pipeline.run ...``, which sets RAY_ADDRESS).
Re-running it resumes: inputs already committed are skipped.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from core.overlay import ConfigError
from pipeline.commit import CommitSpec
from pipeline.config import CurateConfig, diff_configs, load_config
from pipeline.executors import (
    build_probe_stage,
    build_stages,
    count_ray_nodes,
    init_ray,
    needs_chunks,
    plan_operators,
    probe_ray,
    probe_threads,
    ray_is_initialized,
    run_ray,
    run_serial,
    single_machine_cpus,
    start_pool_per_core,
)
from pipeline.inputs import InputFile, list_inputs
from pipeline.manifest import write_manifest
from pipeline.progress import CurateProgress, print_summary
from pipeline.storage import CommitError, OutputStore
from shards.reader import MANIFEST, SOURCES
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
    attempts = store.count_attempts()
    items = [FileItem(source_path=f.path) for f in inputs if (f.path, f.size_bytes, f.mtime) not in done_stats]
    for item in items:  # a file that errored before is retried: this is its next attempt
        item.provenance["attempt"] = attempts.get(item.source_path, 0) + 1
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


class InputError(RuntimeError):
    """``--input`` or ``--output`` cannot be listed or written (missing, no credentials, offline)."""


def credentials_hint(uri: str) -> str:
    if uri.startswith("s3://"):
        return (" (S3: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, and AWS_REGION or "
                "AWS_ENDPOINT_URL for other stores; docs/cluster.md)")
    if uri.startswith("gs://"):
        return " (GCS: set GOOGLE_APPLICATION_CREDENTIALS, or run where default credentials exist; docs/cluster.md)"
    return ""


class ConfigChangeError(RuntimeError):
    """The output folder holds files curated with another config; the message lists the differences."""


def check_config_unchanged(store: OutputStore, cfg: CurateConfig, allow_change: bool) -> None:
    """Refuse to mix configs in one output unless ``allow_change`` (then new inputs use ``cfg``)."""
    manifest = store.read_json(MANIFEST) or {}
    hashes = set(manifest.get("configs", {})) | ({manifest["config_hash"]} if manifest.get("config_hash") else set())
    table = store.read_table(SOURCES, ["config_hash"])
    if table is not None:
        hashes |= {h for h in table.column("config_hash").to_pylist() if h}
    if not hashes or cfg.hash() in hashes or allow_change:
        return
    last = manifest.get("config") or {}
    changes = diff_configs(last, cfg.to_dict()) if last else []
    changes = [c for c in changes if not c.startswith(("resources.", "run."))] or changes
    raise ConfigChangeError(
        f"{store.root} was curated with config {', '.join(sorted(hashes))}; this config is {cfg.hash()}. "
        + (f"Changed: {'; '.join(changes[:12])}{' ...' if len(changes) > 12 else ''}. " if changes else "")
        + "Either curate into a new output folder, or pass --allow-config-change: files already done "
        "keep their rows, new inputs (and retried errors) use this config, and the sources index "
        "records which config produced each file.")


def curate(input_spec: str, output: str, cfg: CurateConfig, executor: str = "ray",
           show_progress: bool = True, limit: int | None = None, allow_config_change: bool = False,
           worker_logs: bool = False) -> dict[str, Any]:
    """Run the whole job; returns the manifest. Raises :class:`ConfigChangeError` before any work
    when ``output`` holds files of another config and ``allow_config_change`` is False."""
    t0 = time.time()
    try:  # both ends are reachable before anything is written
        inputs = list_inputs(input_spec)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot list --input {input_spec!r}: {exc}{credentials_hint(input_spec)}") from exc
    try:
        store = OutputStore(output)
        check_config_unchanged(store, cfg, allow_config_change)
        store.ensure_dirs()
    except OSError as exc:
        raise InputError(f"cannot use --output {output!r}: {exc}{credentials_hint(output)}") from exc
    store.clean_orphans()
    items, done_shas, skipped_done = plan_items(inputs, store)
    if limit is not None:
        items = items[:limit]
    stages = build_stages(cfg)
    probe_stage = build_probe_stage(cfg)
    stats = {f.path: (f.size_bytes, f.mtime) for f in inputs}
    spec = CommitSpec(out_root=output, config_hash=cfg.hash(), stats=stats,
                      row_group_size=cfg.run.rows_per_row_group, zstd_level=cfg.run.zstd_level,
                      flac_subtype=cfg.run.flac_subtype)
    chunks = cfg.chunk_plan() if cfg.run.max_chunk_s > 0 else None
    label = "serial"
    # A cluster (or a Ray the caller started) is joined first and, with several nodes, probes on Ray
    # (the sha256 reads spread over the nodes); on one machine the probe runs on threads here, before
    # Ray starts, so no Ray Data pass is paid for it and the local Ray is sized for the job it gets.
    joined = items and executor == "ray" and (ray_is_initialized() or bool(cfg.run.ray_address
                                                                         or os.environ.get("RAY_ADDRESS")))
    if joined:
        label = "ray " + init_ray(cfg, plan_operators(stages, cfg.run.fuse_stages, chunks), worker_logs)
    log.info("%d inputs: %d to probe, %d already done", len(inputs), len(items), skipped_done)
    probe = probe_ray if joined and count_ray_nodes() > 1 else probe_threads
    probed = probe(items, probe_stage) if items else []
    fresh, early, n_done, n_dup = split_probed(probed, done_shas)
    # Longest first: on a pool of actors the job then ends with short files in flight, not with one
    # long file on one actor while the others idle (the clips do not depend on the order).
    fresh.sort(key=lambda i: (-i.probe.duration_s, i.source_path))
    if chunks is not None and not needs_chunks(fresh, chunks):
        chunks = None  # no file is long enough to cut: one fused pool from decode to codes
    cores = single_machine_cpus(cfg, bool(joined)) if fresh and executor == "ray" else None
    chunk_actors = None
    if chunks is not None and not joined:  # a local Ray: every core works on the chunks (docs/performance.md)
        chunk_actors = cores
    plans = plan_operators(stages, cfg.run.fuse_stages, chunks, chunk_actors)
    if chunks is None and cores is not None:
        start_pool_per_core(plans, cores, len(fresh))
    if fresh and executor == "ray":
        if not joined:
            label = "ray " + init_ray(cfg, plans, worker_logs)
        log.info("Ray operators (%s): %s", label, " -> ".join(p.name for p in plans))
    total_hours = sum(i.probe.duration_s for i in fresh + early) / 3600  # what the commits will count
    errors = 0
    with CurateProgress(len(fresh) + len(early), total_hours, show_progress) as progress:
        if early:
            summary = spec.commit(early)
            errors += summary.n_errors
            progress.update(summary)
        if fresh:
            runs = (run_ray(fresh, plans, spec, cfg.run.files_per_shard, cfg.run.max_task_retries)
                    if executor == "ray"
                    else run_serial(fresh, stages, spec, cfg.run.files_per_shard, chunks))
            for summary in runs:
                errors += summary.n_errors
                progress.update(summary)
    run_record = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t0)),
                  "wall_time_s": round(time.time() - t0, 3), "executor": label, "input": input_spec,
                  "new_files": len(fresh) + len(early), "skipped_done": skipped_done + n_done,
                  "duplicates": n_dup, "errors": errors, "config_hash": cfg.hash()}
    if cfg.run.verify:  # the whole folder, as a reader will see it (page CRCs, ids, lengths, accounting)
        from pipeline.verify import verify_output, write_report

        report = write_report(output, verify_output(output, decode_audio=False))
        run_record["verify_ok"] = report["ok"]
        if not report["ok"]:
            log.error("verify found problems in %s: %s (OUT/verify.json lists them)", output,
                      {k: v["count"] for k, v in report["problems"].items()})
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
    p.add_argument("--allow-config-change", action="store_true",
                   help="curate into an output folder made with another config: done files keep their rows, "
                        "new inputs use this config (the sources index records each file's config)")
    p.add_argument("--log-level", default="INFO",
                   help="logging level (default INFO); DEBUG also shows the Ray workers' output (MediaPipe, "
                        "TFLite and glog lines), which otherwise stays in Ray's session logs")
    return p


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 when every file was processed, 1 when some failed with an error (they are
    in OUT/errors/ and the same command retries them), 2 for a bad command line or config."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config, args.overrides)
    except (ConfigError, OSError) as exc:
        print(f"omnitalker curate: {exc}", file=sys.stderr)
        return 2
    if args.ray_address:
        cfg.run.ray_address = args.ray_address
    try:
        manifest = curate(args.input, args.output, cfg, executor=args.executor,
                          show_progress=not args.no_progress, limit=args.limit,
                          allow_config_change=args.allow_config_change,
                          worker_logs=args.log_level.upper() == "DEBUG")
    except (ConfigChangeError, InputError) as exc:
        print(f"omnitalker curate: {exc}", file=sys.stderr)
        return 2
    except CommitError as exc:  # the output filled up mid-run: what was committed stays, the rest is redone
        print(f"omnitalker curate: {exc}", file=sys.stderr)
        return 1
    errors = manifest["runs"][-1]["errors"]
    if manifest["runs"][-1].get("verify_ok") is False:
        print(f"omnitalker curate: the output failed verification: {args.output}/verify.json lists the problems "
              f"(`omnitalker verify {args.output}` re-checks)", file=sys.stderr)
        return 1
    if errors:
        print(f"omnitalker curate: {errors} file(s) failed with an error (a fault, not a reject; details in "
              f"{args.output}/errors/). They are not marked done: run the same command again to retry them.",
              file=sys.stderr)
        return 1
    return 0



if __name__ == "__main__":
    sys.exit(main())
