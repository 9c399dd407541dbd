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
import time
import traceback
from dataclasses import dataclass, field

from stages.item import FileItem, Reject

log = logging.getLogger(__name__)


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
        for item in batch:
            if item.rejected:
                continue
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
        return batch
