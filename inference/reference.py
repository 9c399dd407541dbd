"""The generation reference: log-mel, 61-d visual codes and transcript of one short clip.

Two sources:

* a ``clip_id`` of curated shards (``OUT/shards/part-*.parquet``, schema v2, ``docs/shards.md``):
  the row's ``mel``, ``visual``, ``text`` and ``text_model`` are used as stored; only the
  ``clip_id`` column is scanned until the row is found, then that one row group is read;
* a short video file: the curation stages run on it in-process, in the order of
  ``pipeline.executors.build_stages`` -- probe, audio, vad, asr, mel, visual (scene
  cuts, diarization, face tracking and ASD are skipped: the reference is one speaker in one shot).
  The reference is one segment from the first VAD speech onset to the end of the last VAD
  segment that still fits in ``max_ref_s`` seconds (cut at ``max_ref_s`` if the first segment is
  longer); ASR then transcribes exactly that span, so text and audio agree.

Frames: 93.75 Hz (24000 / 256); ``mel`` ``(N_ref, 100)`` and ``codes`` ``(N_ref, 61)`` have the
same length. CLI: ``python -m inference.reference REF [--shards DIR]`` prints a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.config import CurateConfig, load_config
from shards.codes import CODE_DIM
from shards.reader import find_clip
from shards.spec import AUDIO_SR, N_MELS
from stages.item import FileItem, Segment

log = logging.getLogger(__name__)

REFERENCE_COLUMNS = ["clip_id", "n_frames", "mel", "visual", "text", "text_model", "language", "start_s", "end_s"]


class ReferenceError(RuntimeError):
    """The reference could not be found or built."""


@dataclass
class ReferenceConfig:
    max_ref_s: float = 10.0  # seconds: longest reference cut from a video (longer speech is cut)
    curate_config: str | None = None  # curate YAML whose stage settings build a video reference; None = defaults
    language: str | None = None  # ISO 639-1 to force for the reference's ASR; None = detect


@dataclass
class Reference:
    """One reference clip on the 93.75 Hz frame grid."""

    name: str  # clip_id, or the video file's stem
    mel: np.ndarray  # (N_ref, 100) float32 log-mel
    codes: np.ndarray  # (N_ref, 61) float32 visual codes
    text: str  # raw transcript
    text_model: str  # normalized model text (characters, or tone pinyin for Chinese)
    language: str | None  # ISO 639-1
    source: str  # the shard file or the video path it came from
    start_s: float = 0.0  # seconds: span in the source
    end_s: float = 0.0
    provenance: dict = field(default_factory=dict)  # models that ran (video references)

    @property
    def n_frames(self) -> int:
        return int(self.mel.shape[0])

    def summary(self) -> dict:
        return {"name": self.name, "source": self.source, "n_frames": self.n_frames,
                "start_s": round(self.start_s, 3), "end_s": round(self.end_s, 3), "text": self.text,
                "text_model": self.text_model, "language": self.language, "provenance": self.provenance}


# --------------------------------------------------------------------------- shards


def stack_frames(values: list | None, dim: int, what: str, path: str) -> np.ndarray:
    if values is None:
        raise ReferenceError(f"{path}: the reference row has no {what} (null)")
    arr = np.asarray(values, dtype=np.float32).reshape(-1, dim)
    return arr


def load_reference_from_shards(shards_dir: str, clip_id: str) -> Reference:
    """Find ``clip_id`` in the shards and return its row as a :class:`Reference`."""
    try:
        path, row = find_clip(shards_dir, clip_id, REFERENCE_COLUMNS)
    except (KeyError, FileNotFoundError) as e:
        raise ReferenceError(str(e).strip("'\"")) from e
    mel = stack_frames(row["mel"], N_MELS, "mel", path)
    codes = stack_frames(row["visual"], CODE_DIM, "visual codes", path)
    if mel.shape[0] != codes.shape[0] or mel.shape[0] != row["n_frames"]:
        raise ReferenceError(f"{path}: clip {clip_id} has {mel.shape[0]} mel and {codes.shape[0]} "
                             f"visual frames, n_frames {row['n_frames']}")
    if not row["text_model"]:
        raise ReferenceError(f"{path}: clip {clip_id} has no text_model (ASR was skipped)")
    return Reference(name=clip_id, mel=mel, codes=codes, text=row["text"] or row["text_model"],
                     text_model=row["text_model"], language=row["language"], source=path,
                     start_s=float(row["start_s"]), end_s=float(row["end_s"]))


# --------------------------------------------------------------------------- video


def choose_reference_span(segments: list[Segment], max_ref_s: float) -> Segment:
    """One span: first VAD onset to the end of the last segment that fits in ``max_ref_s`` seconds."""
    if not segments:
        raise ReferenceError("no speech segment to use as reference")
    first = segments[0]
    limit = first.start_sample + int(round(max_ref_s * AUDIO_SR))
    end = min(first.end_sample, limit)
    for seg in segments[1:]:
        if seg.end_sample <= limit:
            end = seg.end_sample
    return Segment(start_sample=first.start_sample, end_sample=end, shot_index=first.shot_index)


def describe_failure(item: FileItem, stage: str) -> str:
    rows = [f"{r.stage}:{r.reason} ({r.detail})" if r.detail else f"{r.stage}:{r.reason}" for r in item.rejects]
    return f"{item.source_path}: reference dropped at {stage}: " + ("; ".join(rows) or "no segment left")


def build_reference_from_video(path: str, cfg: ReferenceConfig | None = None) -> Reference:
    """Run probe -> audio -> vad -> asr -> mel -> visual on ``path`` as one reference segment."""
    from stages.asr import AsrStage
    from stages.audio import StandardizeAudioStage
    from stages.mel import MelStage
    from stages.probe import ProbeStage
    from stages.vad import VadSegmentStage
    from stages.visual import VisualCodesStage

    cfg = cfg or ReferenceConfig()
    curate: CurateConfig = load_config(cfg.curate_config)
    if cfg.language:
        curate.asr.language = cfg.language
    item = FileItem(source_path=path)
    before = [ProbeStage(cfg=curate.probe), StandardizeAudioStage(cfg=curate.audio), VadSegmentStage(cfg=curate.vad)]
    after = [AsrStage(cfg=curate.asr), MelStage(cfg=curate.mel), VisualCodesStage(cfg=curate.visual)]
    for stage in before:
        stage.process([item])
        if item.rejected:
            raise ReferenceError(describe_failure(item, stage.name))
    item.segments = [choose_reference_span(item.segments, cfg.max_ref_s)]
    for stage in after:
        stage.process([item])
        if item.rejected or not item.segments:
            raise ReferenceError(describe_failure(item, stage.name))
    seg = item.segments[0]
    if seg.mel is None or seg.visual is None:
        raise ReferenceError(f"{path}: the reference has no {'mel' if seg.mel is None else 'visual codes'}")
    return Reference(name=Path(path).stem, mel=seg.mel.astype(np.float32), codes=seg.visual.astype(np.float32),
                     text=seg.text or "", text_model=seg.text_model or "", language=seg.language, source=path,
                     start_s=seg.start_s, end_s=seg.end_s, provenance=dict(item.provenance.get("models", {})))


def load_reference(ref: str, shards_dir: str | None = None, cfg: ReferenceConfig | None = None) -> Reference:
    """A video file when ``ref`` is an existing path, else a ``clip_id`` looked up in ``shards_dir``."""
    if os.path.isfile(ref):
        return build_reference_from_video(ref, cfg)
    if shards_dir is None:
        raise ReferenceError(f"reference {ref!r} is not a file; to use a clip_id, give the shards folder (--shards)")
    return load_reference_from_shards(shards_dir, ref)


def main(argv: list[str] | None = None) -> int:
    """``python -m inference.reference REF [--shards DIR]``: print the reference as JSON."""
    ap = argparse.ArgumentParser(description="build a generation reference (clip_id in shards, or a video)")
    ap.add_argument("ref", help="clip_id (with --shards) or a short video file")
    ap.add_argument("--shards", default=None, help="OUT/shards folder holding the clip_id")
    ap.add_argument("--max-ref-s", type=float, default=ReferenceConfig.max_ref_s, help="seconds (video refs)")
    ap.add_argument("--curate-config", default=None, help="curate YAML for the video stages (default: defaults)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    ref = load_reference(args.ref, args.shards, ReferenceConfig(max_ref_s=args.max_ref_s,
                                                                curate_config=args.curate_config))
    print(json.dumps(ref.summary(), indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
