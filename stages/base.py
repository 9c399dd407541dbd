"""The stage contract: small typed dataclasses that know nothing of Ray.

A stage declares its resources, loads its models once in ``setup()`` and does
its work in ``process(batch)``, where a batch is a list of :class:`FileItem`
(one per input file; see ``stages/item.py``). ``pipeline/`` wraps each stage in
Ray Data's ``map_batches`` (an actor pool when ``uses_actor``); the serial
executor calls the very same methods in-process.

Bad input never raises out of ``process``: an exception while handling one
file turns into a ledger row for that file (stage, reason, message) and the
rest of the batch goes on.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from stages.item import FileItem, Reject

log = logging.getLogger(__name__)


@contextmanager
def limit_threads(n: int) -> Iterator[None]:
    """Run with ``n`` BLAS/OpenMP threads (and torch intra-op threads, if torch is loaded).

    A Ray actor with ``num_cpus=n`` gets ``OMP_NUM_THREADS=n``; the serial executor runs in a
    process with every core. Thread counts change float summation order, and borderline
    decisions (a DNSMOS of 3.0008 against 3.0, a word boundary) with them, so every stage runs
    under the same limit whatever the executor: the same input gives the same clips.
    """
    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        if torch is not None and before is not None:
            torch.set_num_threads(before)


@dataclass
class Resources:
    """What one copy of a stage needs from the scheduler."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    # Actor-pool size bounds for model stages (ignored for task stages);
    # max_actors None lets the pool grow to what the cluster can hold.
    min_actors: int = 1
    max_actors: int | None = None
    # Files per map_batches call.
    batch_size: int = 1


@dataclass
class Stage:
    """Base class. Subclasses set ``name`` and implement ``process_item``."""

    name: str = "stage"
    resources: Resources = field(default_factory=Resources)
    # True for stages that hold a model: they run as an actor pool so the
    # model is loaded once per actor, not once per call.
    uses_actor: bool = False

    def setup(self) -> None:
        """Load models once. Idempotent."""

    def process_item(self, item: FileItem) -> None:
        """Work on one file in place. Raise to reject the whole file."""
        raise NotImplementedError

    def process(self, batch: list[FileItem]) -> list[FileItem]:
        """Run ``process_item`` over the files that are still alive.

        Files already rejected pass through untouched. Timing per stage is
        accumulated in ``item.timings`` (seconds of wall time).
        """
        with limit_threads(max(1, int(self.resources.num_cpus))):
            for item in batch:
                self.process_one(item)
        return batch

    def process_one(self, item: FileItem) -> None:
        """``process_item`` with the failure and timing bookkeeping of :meth:`process`."""
        if item.rejected:
            return
        t0 = time.perf_counter()
        try:
            self.process_item(item)
        except Exception as exc:  # noqa: BLE001 - a bad file must never stop the job
            log.warning("%s failed on %s: %s", self.name, item.source_path, exc)
            item.reject_file(
                Reject(
                    stage=self.name,
                    reason="error",
                    detail=f"{type(exc).__name__}: {exc}",
                    traceback=traceback.format_exc(limit=4),
                )
            )
        finally:
            item.timings[self.name] = item.timings.get(self.name, 0.0) + time.perf_counter() - t0
