"""Running the stages: on Ray Data (local or cluster) or serially in-process.

Both executors call the same ``Stage.setup()`` / ``Stage.process()`` and the
same :func:`pipeline.writer.commit_items`; they differ only in scheduling.
Rows of the Ray dataset are pickled :class:`~stages.item.FileItem` (one per
input file), so a file's segments never straddle two commits. A file longer than
``run.max_chunk_s`` becomes several rows after diarization (``stages/chunk.py``):
its chunks run the model stages on any worker and are merged before its one commit.
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

from pipeline.commit import CommitSpec, CommitTask, pack_items, unpack_items
from pipeline.config import CurateConfig, StageResources
from pipeline.writer import CommitSummary
from stages.asd import AsdStage
from stages.asr import AsrStage
from stages.audio import StandardizeAudioStage
from stages.base import Resources, Stage
from stages.chunk import ChunkPlan, merge_chunks
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


SPLIT_AFTER = "diarize"  # the last stage that needs the whole file; long files are cut into chunks after it


def count_whole_file_stages(stages: list[Stage]) -> int:
    """How many leading stages run on whole files (up to and including ``SPLIT_AFTER``)."""
    names = [s.name for s in stages]
    return names.index(SPLIT_AFTER) + 1 if SPLIT_AFTER in names else len(stages)


def needs_chunks(items: list[FileItem], plan: ChunkPlan) -> bool:
    """Whether any file is long enough to be cut (then the job gets a split point)."""
    return plan.max_chunk_s > 0 and any(i.probe.duration_s > plan.max_chunk_s for i in items)


def build_stages(cfg: CurateConfig) -> list[Stage]:
    """The per-file stages after probing, cheap to expensive."""
    stages: list[Stage] = [
        StandardizeAudioStage(cfg=cfg.audio),
        SceneCutStage(cfg=cfg.scene),
        VadSegmentStage(cfg=cfg.vad),
        DiarizeStage(cfg=cfg.diarize),
        AsrStage(cfg=cfg.asr, only_languages=None if cfg.asr.transcribe_all_languages or not
                 cfg.segment.allowed_languages else list(cfg.segment.allowed_languages)),
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


# --------------------------------------------------------------------------- serial


def run_serial(items: list[FileItem], stages: list[Stage], spec: CommitSpec,
               files_per_commit: int, chunks: ChunkPlan | None = None) -> Iterator[CommitSummary]:
    """Process files one at a time in this process; commit every ``files_per_commit`` files.

    With ``chunks``, a long file is cut after the whole-file stages and its chunks are processed one
    after another and merged, exactly as the Ray executor does on several workers.
    """
    for stage in stages:
        stage.setup()
    n_whole = count_whole_file_stages(stages)
    pending: list[FileItem] = []
    for item in items:
        for stage in stages[:n_whole]:
            stage.process([item])
        parts = chunks.split([item]) if chunks is not None else [item]
        for part in parts:
            for stage in stages[n_whole:]:
                stage.process([part])
        pending.append(merge_chunks(parts) if len(parts) > 1 else parts[0])
        if len(pending) >= files_per_commit:
            yield spec.commit(pending)
            pending = []
    if pending:
        yield spec.commit(pending)


def probe_threads(items: list[FileItem], stage: ProbeStage, n_threads: int = 8) -> list[FileItem]:
    """Probe in this process on ``n_threads`` threads (hashing and container reads release the GIL).

    On one machine this replaces a Ray Data pass whose start-up alone took 3.6 s for the shared media
    (the probing itself: 0.09 s); on a multi-node cluster :func:`probe_ray` spreads the sha256 reads.
    """
    from concurrent.futures import ThreadPoolExecutor

    stage.setup()
    with ThreadPoolExecutor(max_workers=max(1, n_threads)) as pool:
        list(pool.map(stage.process_one, items))
    return items


# --------------------------------------------------------------------------- ray


class _StageTask:
    """Stateless stages as a Ray task function; ``split`` cuts long files into chunk rows at the end."""

    def __init__(self, stages: list[Stage], split: ChunkPlan | None = None) -> None:
        self.stages = stages
        self.split = split

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = unpack_items(batch)
        for stage in self.stages:
            stage.setup()
            items = stage.process(items)
        return pack_items(self.split.split(items) if self.split is not None else items)


class _StageActor:
    """Stages with models as a Ray actor: every ``setup()`` runs once, in the constructor."""

    def __init__(self, stages: list[Stage], split: ChunkPlan | None = None) -> None:
        self.stages = stages
        self.split = split
        for stage in self.stages:
            stage.setup()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = unpack_items(batch)
        for stage in self.stages:
            items = stage.process(items)
        return pack_items(self.split.split(items) if self.split is not None else items)


@dataclass
class OperatorPlan:
    """Consecutive stages that run as one Ray operator."""

    stages: list[Stage]
    split: ChunkPlan | None = None  # cut long files into chunk rows after these stages
    min_actors: int | None = None  # overrides the stages' min_actors (the chunk pool on a local Ray)
    # A pool of exactly this many actors, each given one batch at a time: a chunk then waits for the
    # first free actor instead of queueing behind a busy one (Ray Data queues 2 per actor by default).
    fixed_actors: int | None = None

    @property
    def name(self) -> str:
        return "+".join(s.name for s in self.stages) + (" | split" if self.split is not None else "")

    @property
    def uses_actor(self) -> bool:
        return any(s.uses_actor for s in self.stages)

    @property
    def resources(self) -> Resources:
        rs = [s.resources for s in self.stages]
        maxes = [r.max_actors for r in rs if r.max_actors is not None]
        min_actors = max([r.min_actors for r in rs] + [self.min_actors or 0])
        if maxes:
            min_actors = min(min_actors, min(maxes))
        return Resources(num_cpus=max(r.num_cpus for r in rs), num_gpus=max(r.num_gpus for r in rs),
                         min_actors=min_actors, max_actors=min(maxes) if maxes else None,
                         batch_size=min(r.batch_size for r in rs))


def plan_operators(stages: list[Stage], fuse: bool, split: ChunkPlan | None = None,
                   chunk_actors: int | None = None) -> list[OperatorPlan]:
    """Group consecutive stages with the same accelerator needs into one operator.

    Ray Data fuses consecutive task operators itself but never actor pools; a
    file then crosses the object store once per pool and each pool holds its
    own CPUs. Fusing CPU stages into one pool keeps every file in one worker
    from decode to mel, and one actor per core keeps the cores busy. A stage
    that asks for a GPU always gets its own pool.

    With ``split`` (some file is longer than ``run.max_chunk_s``), the whole-file stages and the
    chunk stages are planned apart: the operator ending at ``SPLIT_AFTER`` emits the chunk rows.
    ``chunk_actors`` gives the chunk stages' CPU pools exactly that many actors, one batch each at a
    time. On a local Ray this is the core count: Ray Data's autoscaler does not grow a pool while
    another holds its CPUs, and it queues two batches per actor, so without it a long file's chunks
    ran on one actor (measured: one actor throughout; then 2 actors, but 3 of 4 chunks on one).
    """
    if split is not None:
        n_whole = count_whole_file_stages(stages)
        if 0 < n_whole < len(stages):
            head = plan_operators(stages[:n_whole], fuse)
            head[-1].split = split
            tail = plan_operators(stages[n_whole:], fuse)
            for plan in tail:
                if chunk_actors and plan.uses_actor and plan.resources.num_gpus == 0:
                    plan.min_actors = plan.fixed_actors = chunk_actors
            return head + tail
    plans: list[OperatorPlan] = []
    for stage in stages:
        if (fuse and plans and stage.resources.num_gpus == 0
                and plans[-1].resources.num_gpus == 0):
            plans[-1].stages.append(stage)
        else:
            plans.append(OperatorPlan([stage]))
    return plans


def start_pool_per_core(plans: list[OperatorPlan], cores: int, n_files: int) -> None:
    """On one machine, start a job's one CPU actor pool with an actor per core (at most one per file).

    Ray Data starts a pool with ``min_actors`` (1 by default) and its autoscaler adds the next actor
    only once the first is busy: on 2 cores the second actor then began importing and loading its
    models about 6 s after the first, with a core idle meanwhile. Starting both at once took about
    2 s (3 %) off the Ray job of ``bench/curate.py --repeat 3``'s inputs (docs/performance.md, "Ray's
    own processes"). Ray Data does not wait for the minimum (``wait_for_min_actors_s`` is -1), so on
    a busy node the job starts with the actors that fit. Only a plan with exactly one CPU pool is
    changed (the default, fused plan); chunk pools are sized by ``plan_operators``, and a GPU preset's
    two CPU pools keep their own bounds so together they do not ask for more actors than cores.
    """
    pools = [p for p in plans if p.uses_actor and p.resources.num_gpus == 0]
    if len(pools) != 1 or pools[0].fixed_actors is not None:
        return
    pool = pools[0]
    pool.min_actors = max(1, min(int(cores // max(pool.resources.num_cpus, 1e-9)), n_files))


def single_machine_cpus(cfg: CurateConfig, joined: bool) -> int | None:
    """CPUs of the one machine the job runs on: the local Ray it starts, or a one-node Ray it joined.
    None on a multi-node cluster, where the autoscaler sizes the pools."""
    if not joined:
        return cfg.run.local_num_cpus or os.cpu_count() or 1
    import ray

    if count_ray_nodes() != 1:
        return None
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


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


def ray_is_initialized() -> bool:
    """Whether this process is already connected to a Ray (without importing Ray when it is not)."""
    import sys

    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


def count_ray_nodes() -> int:
    """Alive nodes of the connected Ray cluster."""
    import ray

    return sum(1 for n in ray.nodes() if n.get("Alive"))


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
    cores = single_machine_cpus(cfg, joined=False)
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
    ever; :func:`run_ray` records it in errors/ and the next run tries again. An actor holds one
    batch at a time (``max_tasks_in_flight_per_actor=1``): a batch queued behind the one that kills
    its process would die with it and be charged a retry it did not cause (measured: an innocent
    file given up with the poisoned one in 3 of 12 runs of tests/pipeline/test_faults.py)."""
    from ray.data import ActorPoolStrategy

    r = plan.resources
    common = dict(batch_size=r.batch_size, batch_format="numpy", num_cpus=r.num_cpus,
                  num_gpus=r.num_gpus or None, zero_copy_batch=False)
    with quiet_remote_args_warning():
        if plan.uses_actor:
            pool = (ActorPoolStrategy(size=plan.fixed_actors, max_tasks_in_flight_per_actor=1) if plan.fixed_actors
                    else ActorPoolStrategy(min_size=r.min_actors, max_size=r.max_actors, max_tasks_in_flight_per_actor=1))
            return ds.map_batches(_StageActor, fn_constructor_args=(plan.stages, plan.split), compute=pool,
                                  max_restarts=-1, max_task_retries=retries, **common)
        return ds.map_batches(_StageTask(plan.stages, plan.split), max_retries=retries, **common)


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

    ctx = DataContext.get_current()
    ctx.max_errored_blocks = -1
    # One batch in flight per actor (see _map_plan) caps a pool's utilization at 100 %; Ray Data's
    # default threshold (175 %) would then never add an actor: grow when every actor is busy.
    ctx.autoscaling_config.actor_pool_util_upscaling_threshold = 1.0
    ds = _dataset_of(items)
    for plan in plans:
        ds = _map_plan(ds, plan, retries)
        if plan.split is not None:
            # The chunks of a file leave the split as one block, and Ray Data hands a block to one
            # task: one row per block (streaming, no shuffle) lets each chunk go to its own actor.
            ds = ds.repartition(target_num_rows_per_block=1, strict=True)
    # Committing is light I/O (FLAC, Parquet): it must not wait for a core the actor pools hold.
    with quiet_remote_args_warning():
        ds = ds.map_batches(CommitTask(spec), batch_size=files_per_commit, batch_format="numpy", num_cpus=0,
                            zero_copy_batch=False, max_retries=retries)
    done: set[str] = set()
    parts: dict[str, dict[int, FileItem]] = {}
    for row in ds.iter_rows():
        if row["chunk"]:  # a chunk of a long file: its file is committed here once every chunk is back
            part: FileItem = pickle.loads(row["chunk"])
            assert part.chunk is not None
            have = parts.setdefault(part.source_path, {})
            have[part.chunk.index] = part  # keyed: a retried chunk replaces, never duplicates
            if len(have) < part.chunk.count:
                continue
            del parts[part.source_path]
            summary = spec.commit([merge_chunks(list(have.values()))])
        else:
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


