"""Running the stages: on Ray Data (local or cluster) or serially in-process.

Both executors call the same ``Stage.setup()`` / ``Stage.process()`` and the
same :func:`pipeline.writer.commit_items`; they differ only in scheduling.
Rows of the Ray dataset are pickled :class:`~stages.item.FileItem` (one per
input file), so a file's segments never straddle two commits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import pickle
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from pipeline.config import CurateConfig, StageResources
from pipeline.storage import OutputStore
from pipeline.writer import CommitSummary, commit_items
from stages.asd import AsdStage
from stages.asr import AsrStage
from stages.audio import StandardizeAudioStage
from stages.base import Resources, Stage
from stages.diarize import DiarizeStage
from stages.dnsmos import DnsmosStage
from stages.faces import FaceTrackStage
from stages.framing import FramingStage
from stages.item import FileItem, Reject
from stages.mel import MelStage
from stages.probe import ProbeStage
from stages.scene import SceneCutStage
from stages.segment import FineSegmentStage
from stages.sync import SyncStage
from stages.vad import VadSegmentStage
from stages.visual import VisualCodesStage
from stages.voiceover import VoiceoverStage

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
        DiarizeStage(cfg=cfg.diarize),
        AsrStage(cfg=cfg.asr),
        FineSegmentStage(cfg=cfg.segment),
        DnsmosStage(cfg=cfg.dnsmos),
        FaceTrackStage(cfg=cfg.faces),
        AsdStage(cfg=cfg.asd),
        FramingStage(cfg=cfg.framing),
        VoiceoverStage(cfg=cfg.voiceover),
        MelStage(cfg=cfg.mel),
        VisualCodesStage(cfg=cfg.visual),
        SyncStage(cfg=cfg.sync),
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
    """Stateless stages as a Ray task function."""

    def __init__(self, stages: list[Stage]) -> None:
        self.stages = stages

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = _unpack(batch)
        for stage in self.stages:
            stage.setup()
            items = stage.process(items)
        return _pack(items)


class _StageActor:
    """Stages with models as a Ray actor: every ``setup()`` runs once, in the constructor."""

    def __init__(self, stages: list[Stage]) -> None:
        self.stages = stages
        for stage in self.stages:
            stage.setup()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = _unpack(batch)
        for stage in self.stages:
            items = stage.process(items)
        return _pack(items)


class _CommitTask:
    def __init__(self, spec: CommitSpec) -> None:
        self.spec = spec

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        summary = self.spec.commit(_unpack(batch))
        return {"summary": np.array([json.dumps(dataclasses.asdict(summary))], dtype=object)}


@dataclass
class OperatorPlan:
    """Consecutive stages that run as one Ray operator."""

    stages: list[Stage]

    @property
    def name(self) -> str:
        return "+".join(s.name for s in self.stages)

    @property
    def uses_actor(self) -> bool:
        return any(s.uses_actor for s in self.stages)

    @property
    def resources(self) -> Resources:
        rs = [s.resources for s in self.stages]
        maxes = [r.max_actors for r in rs if r.max_actors is not None]
        return Resources(num_cpus=max(r.num_cpus for r in rs), num_gpus=max(r.num_gpus for r in rs),
                         min_actors=max(r.min_actors for r in rs), max_actors=min(maxes) if maxes else None,
                         batch_size=min(r.batch_size for r in rs))


def plan_operators(stages: list[Stage], fuse: bool) -> list[OperatorPlan]:
    """Group consecutive stages with the same accelerator needs into one operator.

    Ray Data fuses consecutive task operators itself but never actor pools; a
    file then crosses the object store once per pool and each pool holds its
    own CPUs. Fusing CPU stages into one pool keeps every file in one worker
    from decode to mel, and one actor per core keeps the cores busy. A stage
    that asks for a GPU always gets its own pool.
    """
    plans: list[OperatorPlan] = []
    for stage in stages:
        if (fuse and plans and stage.resources.num_gpus == 0
                and plans[-1].resources.num_gpus == 0):
            plans[-1].stages.append(stage)
        else:
            plans.append(OperatorPlan([stage]))
    return plans


def quiet_ray_data() -> None:
    """Our own progress display replaces Ray Data's per-operator log lines."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    for name in ("ray.data", "ray.data._internal.execution.streaming_executor"):
        logging.getLogger(name).setLevel(logging.WARNING)


def required_local_cpus(plans: list[OperatorPlan]) -> float:
    """Logical CPUs the actor pools hold at minimum."""
    return sum(p.resources.num_cpus * p.resources.min_actors for p in plans if p.uses_actor)


def init_ray(cfg: CurateConfig, plans: list[OperatorPlan], worker_logs: bool = False) -> str:
    """Connect to a cluster (``run.ray_address`` or ``RAY_ADDRESS``) or start a local Ray. Returns a label.

    ``worker_logs`` False (the default, and ``--log-level`` above DEBUG): the actors' output stays in
    Ray's session logs instead of the driver's terminal. MediaPipe, TFLite and glog print pages of
    native lines that no environment variable silences (absl logs before InitGoogle), and they would
    bury the progress display; failures still reach the driver as errors/ rows and the summary.
    """
    import ray

    quiet_ray_data()
    if ray.is_initialized():
        return "existing"
    address = cfg.run.ray_address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=worker_logs)
        return f"cluster {address}"
    cores = cfg.run.local_num_cpus or os.cpu_count() or 1
    num_cpus = max(cores, int(np.ceil(required_local_cpus(plans))))
    if num_cpus > cores:
        log.info("local Ray: %d logical CPUs on %d cores so every actor pool can start", num_cpus, cores)
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=worker_logs,
             configure_logging=True, logging_level=logging.WARNING)
    return f"local ({num_cpus} logical CPUs)"


def _map_plan(ds, plan: OperatorPlan, retries: int = 2):
    """One operator. Fault tolerance, set deliberately (docs/cluster.md): an actor whose process or
    node dies is always recreated (``max_restarts=-1``), and the batch it held is retried ``retries``
    more times on a live one (``max_task_retries``; ``max_retries`` for tasks). A file that kills its
    worker every time is therefore given up after ``retries + 1`` attempts instead of looping for
    ever; :func:`run_ray` records it in errors/ and the next run tries again."""
    from ray.data import ActorPoolStrategy

    r = plan.resources
    common = dict(batch_size=r.batch_size, batch_format="numpy", num_cpus=r.num_cpus,
                  num_gpus=r.num_gpus or None, zero_copy_batch=False)
    with quiet_remote_args_warning():
        if plan.uses_actor:
            return ds.map_batches(_StageActor, fn_constructor_args=(plan.stages,),
                                  compute=ActorPoolStrategy(min_size=r.min_actors, max_size=r.max_actors),
                                  max_restarts=-1, max_task_retries=retries, **common)
        return ds.map_batches(_StageTask(plan.stages), max_retries=retries, **common)


@contextlib.contextmanager
def quiet_remote_args_warning() -> Iterator[None]:
    """Ray 2.60 warns that extra ``map_batches`` kwargs (``ray_remote_args``) are deprecated, but it
    has no named parameter for the retry settings: the warning would only clutter the terminal."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`ray_remote_args` is deprecated")
        yield


def _dataset_of(items: list[FileItem]):
    import ray.data

    rows = [{"item": pickle.dumps(i, protocol=5)} for i in items]
    return ray.data.from_items(rows, override_num_blocks=max(1, len(rows)))


def probe_ray(items: list[FileItem], stage: ProbeStage) -> list[FileItem]:
    ds = _map_plan(_dataset_of(items), OperatorPlan([stage]))
    return [pickle.loads(r["item"]) for r in ds.iter_rows()]


def run_ray(items: list[FileItem], plans: list[OperatorPlan], spec: CommitSpec,
            files_per_commit: int, retries: int = 2) -> Iterator[CommitSummary]:
    """Stream the files through the operators on Ray Data; yield each commit as it lands.

    A file whose batch failed past its retries (its worker process or node died each time) is a
    lost block: Ray Data goes on with the others (``max_errored_blocks=-1``), and the file is
    committed here, at the end, as an error attempt (errors/), so it is retried by the next run.
    """
    from ray.data import DataContext

    DataContext.get_current().max_errored_blocks = -1
    ds = _dataset_of(items)
    for plan in plans:
        ds = _map_plan(ds, plan, retries)
    # Committing is light I/O (FLAC, Parquet): it must not wait for a core the actor pools hold.
    with quiet_remote_args_warning():
        ds = ds.map_batches(_CommitTask(spec), batch_size=files_per_commit, batch_format="numpy", num_cpus=0,
                            zero_copy_batch=False, max_retries=retries)
    done: set[str] = set()
    for row in ds.iter_rows():
        summary = CommitSummary(**json.loads(row["summary"]))
        done.update(summary.paths)
        yield summary
    lost = [i for i in items if i.source_path not in done]
    if lost:
        log.error("%d file(s) lost their worker %d times (a crash or a lost node): recorded in errors/",
                  len(lost), retries + 1)
        for item in lost:
            item.reject_file(Reject(stage="worker", reason="error",
                                    detail=f"the worker processing this file died {retries + 1} times (process "
                                           "crash, out of memory, or a lost node); the next run retries it"))
        yield spec.commit(lost)


