"""``omnitalker verify OUT``: check a curation output folder end to end; exit 1 on any problem.

Reads every part of ``shards/``, ``rejects/``, ``errors/`` and ``sources/`` with Parquet page CRCs
verified and checks:

* **format:** each shard part carries this code's schema version and the 93.75 Hz frame rate;
* **accounting:** every input has exactly one sources row (a file that errored has none until a
  retry commits it); every clip and every ledger row belongs to a committed source; each kept
  source's ``n_clips`` equals its clips in the shards;
* **ids:** clip ids are unique and equal :func:`stages.item.make_clip_id` of their source and span;
* **lengths:** ``n_frames`` equals the mel rows, the visual rows and the frame count of the 24 kHz
  sample span, and the FLAC audio decodes to exactly that span;
* **leftovers:** no temporary files and no parts of a commit that never finished.

The job runs it at the end of every run and writes the report to ``OUT/verify.json``, which the
dashboard shows. ``--no-audio`` skips decoding the FLAC (faster on large outputs).
"""

from __future__ import annotations

import argparse
import io
import json
import posixpath
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.storage import OutputStore
from shards.reader import ERRORS, PART_PREFIX, REJECTS, SHARDS, SOURCES, VERIFY_REPORT
from shards.schema import SCHEMA_VERSION
from shards.spec import FRAME_RATE_TEXT, count_mel_frames
from stages.item import make_clip_id

MAX_LISTED = 20  # problems listed per check in the report (all are counted)
SHARD_COLUMNS = ["clip_id", "source_path", "source_sha256", "start_sample", "end_sample", "n_frames", "mel",
                 "visual", "audio_flac"]


@dataclass
class Report:
    """Counts and problems, per check."""

    counts: Counter = field(default_factory=Counter)
    problems: dict[str, list[str]] = field(default_factory=dict)
    n_problems: Counter = field(default_factory=Counter)

    def fail(self, check: str, message: str) -> None:
        self.n_problems[check] += 1
        if len(self.problems.setdefault(check, [])) < MAX_LISTED:
            self.problems[check].append(message)

    @property
    def ok(self) -> bool:
        return not self.n_problems

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checked_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "counts": dict(self.counts),
                "problems": {k: {"count": self.n_problems[k], "examples": v} for k, v in self.problems.items()}}


def read_part(store: OutputStore, path: str, report: Report, columns: list[str] | None = None):
    """One part with its page CRCs verified, or None (and a ``corrupt_part`` problem)."""
    try:
        with store.fs.open_input_file(path) as fh:
            pf = pq.ParquetFile(fh, page_checksum_verification=True)
            return pf.read(columns=columns), pf.metadata.metadata or {}
    except Exception as exc:  # noqa: BLE001 - any failure to read is the problem being reported
        report.fail("corrupt_part", f"{path}: {type(exc).__name__}: {exc}")
        return None


def check_leftovers(store: OutputStore, report: Report) -> set[str]:
    """Temporary files and parts of unfinished commits; returns the committed commit ids."""
    committed = {store.commit_of(p) for p in store.list_parts(SOURCES)}
    for sub in (SHARDS, REJECTS, ERRORS, SOURCES):
        for info in store.fs.get_file_info(pafs.FileSelector(store.path(sub), allow_not_found=True)):
            name = posixpath.basename(info.path)
            if name.startswith("."):
                report.fail("leftover_files", f"{sub}/{name}: temporary file of an interrupted commit")
            elif name.startswith(PART_PREFIX) and store.commit_of(info.path) not in committed:
                report.fail("leftover_files", f"{sub}/{name}: part of a commit with no sources part")
    return committed


def decode_samples(flac: bytes) -> int:
    import soundfile as sf

    with sf.SoundFile(io.BytesIO(flac)) as fh:
        return fh.frames


def check_shard_part(table, meta: dict, path: str, report: Report, decode_audio: bool) -> list[tuple[str, str]]:
    """Format, id and length checks of one shard part; returns its ``(clip_id, source_sha256)`` pairs."""
    version = meta.get(b"omnitalker.schema_version", b"?").decode()
    if version != str(SCHEMA_VERSION):
        report.fail("schema_version", f"{path}: schema version {version}, this code writes {SCHEMA_VERSION}")
    if meta.get(b"omnitalker.frame_rate", b"").decode() != FRAME_RATE_TEXT:
        report.fail("schema_version", f"{path}: frame rate {meta.get(b'omnitalker.frame_rate')!r}")
    out = []
    for r in table.to_pylist():
        cid, span = r["clip_id"], r["end_sample"] - r["start_sample"]
        out.append((cid, r["source_sha256"]))
        if cid != make_clip_id(r["source_sha256"], r["start_sample"], r["end_sample"]):
            report.fail("clip_ids", f"{cid}: not the id of {r['source_sha256'][:12]} [{r['start_sample']}, "
                                    f"{r['end_sample']})")
        want = count_mel_frames(span)
        lengths = {"n_frames": r["n_frames"], "mel": len(r["mel"] or []),
                   "visual": None if r["visual"] is None else len(r["visual"])}
        bad = {k: v for k, v in lengths.items() if v is not None and v != want}
        if bad:
            report.fail("lengths", f"{cid}: {span} samples = {want} frames, but {bad}")
        if decode_audio:
            try:
                n = decode_samples(r["audio_flac"])
            except Exception as exc:  # noqa: BLE001
                report.fail("lengths", f"{cid}: audio does not decode ({exc})")
                continue
            if n != span:
                report.fail("lengths", f"{cid}: audio has {n} samples, the span {span}")
        report.counts["clips"] += 1
    return out


def verify_output(out: str, decode_audio: bool = True) -> Report:
    """Check the output folder ``out`` (local path or URI); see the module docstring."""
    store = OutputStore(out)
    report = Report()
    check_leftovers(store, report)
    sources: list[dict] = []
    for path in store.list_parts(SOURCES):
        got = read_part(store, path, report)
        if got is not None:
            sources += got[0].to_pylist()
    report.counts["sources"] = len(sources)
    by_path = Counter(r["source_path"] for r in sources)
    for p, n in by_path.items():
        if n > 1:
            report.fail("accounting", f"{p}: {n} sources rows (an input must be accounted for exactly once)")
    known_sha = {r["source_sha256"] for r in sources}
    clips_of: Counter = Counter()
    seen: Counter = Counter()
    for path in store.list_parts(SHARDS):
        got = read_part(store, path, report, SHARD_COLUMNS if decode_audio else SHARD_COLUMNS[:-1])
        if got is None:
            continue
        for cid, sha in check_shard_part(got[0], got[1], path, report, decode_audio):
            seen[cid] += 1
            clips_of[sha] += 1
            if sha not in known_sha:
                report.fail("accounting", f"clip {cid}: its source {sha[:12]} has no sources row")
    for cid, n in seen.items():
        if n > 1:
            report.fail("clip_ids", f"{cid}: {n} rows")
    for r in sources:
        if r["n_clips"] != clips_of.get(r["source_sha256"], 0) and r["status"] != "duplicate":
            report.fail("accounting", f"{r['source_path']}: n_clips {r['n_clips']} but "
                                      f"{clips_of.get(r['source_sha256'], 0)} clips in the shards")
    errored: set[str] = set()
    for sub in (REJECTS, ERRORS):
        for path in store.list_parts(sub):
            got = read_part(store, path, report, ["source_sha256", "source_path"])
            if got is None:
                continue
            report.counts[sub] += got[0].num_rows
            if sub == REJECTS:
                for sha in set(got[0].column("source_sha256").to_pylist()) - known_sha:
                    report.fail("accounting", f"{path}: ledger rows of {sha[:12]}, which has no sources row")
            else:
                errored |= set(got[0].column("source_path").to_pylist())
    report.counts["pending_errors"] = len(errored - set(by_path))  # failed attempts no later run committed
    return report


def write_report(out: str, report: Report) -> dict[str, Any]:
    data = report.to_dict()
    OutputStore(out).write_json_atomic(VERIFY_REPORT, data)
    return data


def format_report(data: dict[str, Any]) -> str:
    c = data["counts"]
    lines = [f"verify: {'OK' if data['ok'] else 'PROBLEMS'}: {c.get('sources', 0)} sources, {c.get('clips', 0)} clips, "
             f"{c.get('rejects', 0)} ledger rows, {c.get('errors', 0)} failed attempts "
             f"({c.get('pending_errors', 0)} files still pending)"]
    for check, p in data["problems"].items():
        lines.append(f"  {check}: {p['count']} problem(s)")
        lines += [f"    {m}" for m in p["examples"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None, prog: str = "python -m pipeline.verify") -> int:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    ap.add_argument("output", help="a curation output folder (local or URI)")
    ap.add_argument("--no-audio", action="store_true", help="do not decode each clip's FLAC to check its length")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    args = ap.parse_args(argv)
    data = write_report(args.output, verify_output(args.output, decode_audio=not args.no_audio))
    print(json.dumps(data, indent=2) if args.json else format_report(data))
    return 0 if data["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

