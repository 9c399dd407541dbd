"""Progress display (files and audio hours) and the final summary table.

A terminal gets a live rich progress bar; logs (CI, ``ray job logs``) get one
plain line per commit.
"""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline.writer import CommitSummary


class CurateProgress:
    """Counts files and hours of audio as commits land."""

    def __init__(self, total_files: int, total_hours: float, enabled: bool = True) -> None:
        self.total_files, self.total_hours = total_files, total_hours
        self.files = 0
        self.hours = 0.0
        self.clips = 0
        self.console = Console(stderr=True)
        self.live = enabled and sys.stderr.isatty()
        self.enabled = enabled
        self._bar: Progress | None = None

    def __enter__(self) -> CurateProgress:
        if self.live:
            self._bar = Progress(TextColumn("[bold]curate"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("files · {task.fields[hours]:.3f}/{task.fields[total_hours]:.3f} h audio"
                                            " · {task.fields[clips]} clips"),
                                 TimeElapsedColumn(), console=self.console)
            self._bar.start()
            self._task = self._bar.add_task("curate", total=self.total_files, hours=0.0,
                                            total_hours=self.total_hours, clips=0)
        return self

    def update(self, s: CommitSummary) -> None:
        self.files += s.n_files
        self.hours += s.audio_s / 3600
        self.clips += s.n_clips
        if self._bar is not None:
            self._bar.update(self._task, completed=self.files, hours=self.hours, clips=self.clips)
        elif self.enabled:
            print(f"[curate] {self.files}/{self.total_files} files, {self.hours:.3f}/{self.total_hours:.3f} h audio, "
                  f"{self.clips} clips (+{s.n_clips} clips, +{s.n_rejects} ledger rows in part-{s.commit_id})",
                  file=sys.stderr, flush=True)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def print_summary(manifest: dict[str, Any], run: dict[str, Any], console: Console | None = None) -> None:
    """The final table: what was kept, what was rejected and why."""
    console = console or Console()
    t = Table(title=f"omnitalker curate: {manifest['inputs']} inputs, {manifest['hours_in']:.3f} h in")
    t.add_column("stage")
    t.add_column("outcome")
    t.add_column("count", justify="right")
    t.add_column("hours", justify="right")
    t.add_row("-", "kept clips", str(manifest["clips"]), f"{manifest['hours_kept']:.4f}")
    for r in manifest["rejects"]:
        label = r["reason"] + (f" ({r['whole_files']} whole files)" if r["whole_files"] else "")
        t.add_row(r["stage"], label, str(r["count"]), f"{r['hours']:.4f}")
    console.print(t)
    skipped = manifest.get("skipped") or {}
    for stage, whys in skipped.items():
        for why, n in whys.items():
            console.print(f"skipped {stage} on {n} file(s): {why}")
    console.print(f"this run: {run['new_files']} new files, {run['skipped_done']} already done, "
                  f"{run['duplicates']} duplicates, {run.get('errors', 0)} errors, wall {run['wall_time_s']:.1f} s "
                  f"({run['executor']})")
    if run.get("verify_ok") is not None:
        console.print("verify: " + ("OK (every input once, ids, lengths, page CRCs)" if run["verify_ok"]
                                    else "[red]PROBLEMS[/red]: see OUT/verify.json"))
    pending = (manifest.get("errors") or {}).get("pending_files", 0)
    if pending:
        console.print(f"[red]{pending} file(s) failed with an error and are not done[/red] (OUT/errors/ has "
                      "each attempt's traceback): run the same command again to retry them")
