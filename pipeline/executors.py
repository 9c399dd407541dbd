"""Running the stages: on Ray Data (local or cluster) or serially in-process.

Both executors call the same ``Stage.setup()`` / ``Stage.process()`` and the
same :func:`pipeline.writer.commit_items`; they differ only in scheduling.
Rows of the Ray dataset are pickled :class:`~stages.item.FileItem` (one per
input file), so a file's segments never straddle two commits.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from pipeline.config import CurateConfig, StageResources
from pipeline.storage import OutputStore
from pipeline.writer import CommitSummary, commit_items
from stages.audio import StandardizeAudioStage
from stages.base import Stage
from stages.dnsmos import DnsmosStage
from stages.item import FileItem
from stages.mel import MelStage
from stages.probe import ProbeStage
from stages.scene import SceneCutStage
from stages.vad import VadSegmentStage

log = logging.getLogger(__name__)


def apply_resources(stage: Stage, override: StageResources | None) -> Stage:
    if override is None:
        return stage
    changes = {k: v for k, v in dataclasses.asdict(override).items() if v is not None}
    stage.resources = dataclasses.replace(stage.resources, **changes)
    return stage


def build_probe_stage(cfg: CurateConfig) -> ProbeStage:
    return apply_resources(ProbeStage(cfg=cfg.probe), cfg.resources.get("probe"))


def build_stages(cfg: CurateConfig) -> list[Stage]:
    """The per-file stages after probing, cheap to expensive."""
    stages: list[Stage] = [
        StandardizeAudioStage(cfg=cfg.audio),
        SceneCutStage(cfg=cfg.scene),
        VadSegmentStage(cfg=cfg.vad),
        DnsmosStage(cfg=cfg.dnsmos),
        MelStage(cfg=cfg.mel),
    ]
    return [apply_resources(s, cfg.resources.get(s.name)) for s in stages]


@dataclass
class CommitSpec:
    """Everything a commit task needs (picklable)."""

    out_root: str
    config_hash: str
    stats: dict[str, tuple[int, float]]
    row_group_size: int
    zstd_level: int
    flac_subtype: str

    def commit(self, items: list[FileItem]) -> CommitSummary:
        return commit_items(OutputStore(self.out_root), items, self.stats, self.config_hash,
                            self.row_group_size, self.zstd_level, self.flac_subtype)


# --------------------------------------------------------------------------- serial


def run_serial(items: list[FileItem], stages: list[Stage], spec: CommitSpec,
               files_per_commit: int) -> Iterator[CommitSummary]:
    """Process files one at a time in this process; commit every ``files_per_commit`` files."""
    for stage in stages:
        stage.setup()
    pending: list[FileItem] = []
    for item in items:
        for stage in stages:
            stage.process([item])
        pending.append(item)
        if len(pending) >= files_per_commit:
            yield spec.commit(pending)
            pending = []
    if pending:
        yield spec.commit(pending)


def probe_serial(items: list[FileItem], stage: ProbeStage) -> list[FileItem]:
    stage.setup()
    return stage.process(items)


# --------------------------------------------------------------------------- ray


def _unpack(batch: dict[str, np.ndarray]) -> list[FileItem]:
    return [pickle.loads(b) for b in batch["item"]]


def _pack(items: list[FileItem]) -> dict[str, np.ndarray]:
    out = np.empty(len(items), dtype=object)
    out[:] = [pickle.dumps(i, protocol=5) for i in items]
    return {"item": out}


class _StageTask:
    """A stateless stage as a Ray task function."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.stage.setup()
        return _pack(self.stage.process(_unpack(batch)))


class _StageActor:
    """A model stage as a Ray actor: ``setup()`` runs once, in the constructor."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        self.stage.setup()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return _pack(self.stage.process(_unpack(batch)))


class _CommitTask:
    def __init__(self, spec: CommitSpec) -> None:
        self.spec = spec

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        summary = self.spec.commit(_unpack(batch))
        return {"summary": np.array([json.dumps(dataclasses.asdict(summary))], dtype=object)}


def quiet_ray_data() -> None:
    """Our own progress display replaces Ray Data's per-operator log lines."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    for name in ("ray.data", "ray.data._internal.execution.streaming_executor"):
        logging.getLogger(name).setLevel(logging.WARNING)


def required_local_cpus(stages: list[Stage]) -> float:
    """Logical CPUs the actor pools hold at minimum, plus one for tasks."""
    return 1.0 + sum(s.resources.num_cpus * s.resources.min_actors for s in stages if s.uses_actor)


def init_ray(cfg: CurateConfig, stages: list[Stage]) -> str:
    """Connect to a cluster (``run.ray_address`` or ``RAY_ADDRESS``) or start a local Ray. Returns a label."""
    import ray

    quiet_ray_data()
    if ray.is_initialized():
        return "existing"
    address = cfg.run.ray_address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
        return f"cluster {address}"
    cores = cfg.run.local_num_cpus or os.cpu_count() or 1
    need = required_local_cpus(stages)
    num_cpus = max(cores, int(np.ceil(need)))
    if num_cpus > cores:
        log.info("local Ray: %d logical CPUs on %d cores so every actor pool can start", num_cpus, cores)
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=True,
             configure_logging=True, logging_level=logging.WARNING)
    return f"local ({num_cpus} logical CPUs)"


def _map_stage(ds, stage: Stage):
    from ray.data import ActorPoolStrategy

    r = stage.resources
    if stage.uses_actor:
        return ds.map_batches(_StageActor, fn_constructor_args=(stage,), batch_size=r.batch_size,
                              batch_format="numpy", num_cpus=r.num_cpus, num_gpus=r.num_gpus or None,
                              compute=ActorPoolStrategy(min_size=r.min_actors, max_size=r.max_actors),
                              zero_copy_batch=False)
    return ds.map_batches(_StageTask(stage), batch_size=r.batch_size, batch_format="numpy",
                          num_cpus=r.num_cpus, num_gpus=r.num_gpus or None, zero_copy_batch=False)


def _dataset_of(items: list[FileItem]):
    import ray.data

    rows = [{"item": pickle.dumps(i, protocol=5)} for i in items]
    return ray.data.from_items(rows, override_num_blocks=max(1, len(rows)))


def probe_ray(items: list[FileItem], stage: ProbeStage) -> list[FileItem]:
    ds = _map_stage(_dataset_of(items), stage)
    return [pickle.loads(r["item"]) for r in ds.iter_rows()]


def run_ray(items: list[FileItem], stages: list[Stage], spec: CommitSpec,
            files_per_commit: int) -> Iterator[CommitSummary]:
    """Stream the files through the stages on Ray Data; yield each commit as it lands."""
    ds = _dataset_of(items)
    for stage in stages:
        ds = _map_stage(ds, stage)
    ds = ds.map_batches(_CommitTask(spec), batch_size=files_per_commit, batch_format="numpy", num_cpus=1,
                        zero_copy_batch=False)
    for row in ds.iter_rows():
        yield CommitSummary(**json.loads(row["summary"]))


Executor = Callable[[list[FileItem], list[Stage], CommitSpec, int], Iterator[CommitSummary]]
