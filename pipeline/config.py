"""Curation config: dataclasses composed from each stage's own config.

``configs/curate.yaml`` is the commented default; ``load_config`` overlays a
YAML file (and ``key.sub=value`` overrides) on these defaults and rejects
unknown keys, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.overlay import load_layered_config
from stages.asd import AsdConfig
from stages.asr import AsrConfig
from stages.audio import AudioConfig
from stages.chunk import ChunkPlan, required_gap_s
from stages.diarize import DiarizeConfig
from stages.dnsmos import DnsmosConfig
from stages.faces import FacesConfig
from stages.framing import FramingConfig
from stages.mel import MelConfig
from stages.probe import ProbeConfig
from stages.scene import SceneConfig
from stages.segment import SegmentConfig
from stages.sync import SyncConfig
from stages.vad import VadConfig
from stages.visual import VisualConfig
from stages.voiceover import VoiceoverConfig


@dataclass
class StageResources:
    """Scheduling for one stage; unset fields keep the stage's declaration."""

    num_cpus: float | None = None
    num_gpus: float | None = None
    min_actors: int | None = None
    max_actors: int | None = None
    batch_size: int | None = None


@dataclass
class RunConfig:
    files_per_shard: int = 16  # input files whose clips share one shard part
    rows_per_row_group: int = 32  # clips per Parquet row group (the training loader's read unit)
    zstd_level: int = 3  # Parquet zstd compression level
    flac_subtype: str = "PCM_16"  # audio_flac sample format (the mel is computed from exactly this)
    ray_address: str | None = None  # None: join RAY_ADDRESS if set, else start an embedded local Ray
    local_num_cpus: int | None = None  # CPUs for the embedded local Ray (default: all)
    fuse_stages: bool = True  # run consecutive CPU stages as one Ray operator (one actor pool)
    max_task_retries: int = 2  # retries of a batch whose Ray worker died (crash, OOM, lost node); then errors/
    verify: bool = True  # end every run with `omnitalker verify OUT` (without FLAC decoding) -> OUT/verify.json
    max_chunk_s: float = 60.0  # seconds: a longer file is cut after diarization into chunks of about this
    # length that run on different workers and are committed together (stages/chunk.py); 0 = never cut
    chunk_min_gap_s: float = 2.0  # seconds: shortest pause a cut inside a shot may use (raised to the longest
    # join of asr, segment and faces when that is longer)
    chunk_pad_s: float = 2.0  # seconds of audio a chunk carries beyond its speech (raised to asd.context_s + 0.1)


@dataclass
class CurateConfig:
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    scene: SceneConfig = field(default_factory=SceneConfig)
    vad: VadConfig = field(default_factory=VadConfig)
    diarize: DiarizeConfig = field(default_factory=DiarizeConfig)
    asr: AsrConfig = field(default_factory=AsrConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    dnsmos: DnsmosConfig = field(default_factory=DnsmosConfig)
    faces: FacesConfig = field(default_factory=FacesConfig)
    asd: AsdConfig = field(default_factory=AsdConfig)
    framing: FramingConfig = field(default_factory=FramingConfig)
    voiceover: VoiceoverConfig = field(default_factory=VoiceoverConfig)
    mel: MelConfig = field(default_factory=MelConfig)
    visual: VisualConfig = field(default_factory=VisualConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    run: RunConfig = field(default_factory=RunConfig)
    resources: dict[str, StageResources] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def chunk_plan(self) -> ChunkPlan:
        """How long files are cut (``run.max_chunk_s``), with the gap and padding the stages need."""
        gap = required_gap_s([self.asr.join_gap_s, self.segment.max_join_gap_s], self.faces.merge_gap_s,
                             self.faces.margin_s)
        return ChunkPlan(max_chunk_s=self.run.max_chunk_s, min_gap_s=max(self.run.chunk_min_gap_s, gap + 0.05),
                         pad_s=max(self.run.chunk_pad_s, self.asd.context_s + 0.1))

    def hash(self) -> str:
        """Hash of every setting that changes what lands in the shards (not scheduling)."""
        d = self.to_dict()
        d.pop("resources", None)
        d["run"] = {k: d["run"][k] for k in ("flac_subtype",)}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def diff_configs(old: dict[str, Any], new: dict[str, Any], where: str = "") -> list[str]:
    """``["key: old -> new", ...]`` for every setting that differs (nested dicts walked)."""
    out: list[str] = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += diff_configs(a, b, f"{where}{key}.")
        elif a != b:
            out.append(f"{where}{key}: {a!r} -> {b!r}")
    return out


MAPPING_FIELDS = {"resources": StageResources}  # dict[str, StageResources] fields


NOT_STAGES = ("run", "resources")  # every other section of CurateConfig is one stage's, named as the stage


def stage_sections() -> list[str]:
    """The stage names, in job order: a stage's name, its config section and its ``resources:`` key are one word."""
    return [f.name for f in dataclasses.fields(CurateConfig) if f.name not in NOT_STAGES]


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> CurateConfig:
    """Defaults, then the YAML file, then ``key=value`` overrides; a ``resources`` key must name a stage."""
    cfg = load_layered_config(CurateConfig(), path, overrides, mapping_fields=MAPPING_FIELDS)
    unknown = sorted(set(cfg.resources) - set(stage_sections()))
    if unknown:
        raise ValueError(f"unknown stage name(s) under resources: {', '.join(unknown)} "
                         f"(stages: {', '.join(stage_sections())})")
    return cfg
