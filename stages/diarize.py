"""diarize: keep single-speaker segments, by pyannote.audio or, offline, by GE2E voice clustering.

Backends (``backend``): ``pyannote`` when a pipeline is configured (below), else ``voice``: the
GE2E voice encoder that ships in resemblyzer, windows over the speech, clustering and refined
change points (``stages/voice_diarizer.py``). ``auto`` (the default) picks pyannote when
``model_path`` or ``hub_name`` (with ``HF_TOKEN``) is set and the voice encoder otherwise;
provenance records which ran. A ``model_path`` that cannot be used (missing, or pyannote not
importable) is an error, never a quiet fallback. The voice backend also leaves its window embeddings on the item
(``FileItem.voice_windows``) for the clips' voice embeddings.

The pipeline runs once per file on the in-memory 16 kHz waveform (never a
path: pyannote's file decoding needs torchcodec, which we do not install) and
yields speaker turns in source seconds. Each segment is then measured on a
10 ms grid: its dominant speaker (most speech inside it), the seconds where
any other speaker talks (``other_s``) and the seconds where two or more talk
at once (``overlap_s``). A segment is multi-speaker when
``other_s >= min_other_speaker_s`` or ``overlap_s > max_speaker_overlap_s``.
``mode="reject"`` ledgers it (reason ``multi_speaker``, value ``other_s``);
``mode="split"`` cuts it at speaker changes, drops overlapped speech and
ledgers pieces shorter than ``min_piece_s``. Kept segments get
``seg.speaker`` (the pipeline's label, unique within the file).

Models: ``model_path`` is a local pipeline directory holding ``config.yaml``
(e.g. a copy of pyannote/speaker-diarization-community-1), a ``config.yaml``
file, or a segmentation checkpoint (``pytorch_model.bin``/``.ckpt``). A bare
checkpoint has no speaker embedding, so it only counts local speakers per
model window: segments are checked but get no label, and split mode is not
available. ``hub_name`` downloads from the Hugging Face hub and is used only
when ``HF_TOKEN`` is set. With neither, or without pyannote installed, the
stage records why in ``provenance["skipped"]["diarize"]`` and passes segments
through untouched.

torchaudio: PyPI's torchaudio wheels are CUDA builds whose native ops cannot
load next to our CPU torch. pyannote only uses torchaudio's pure-torch parts
(resample, kaldi fbank, MFCC), so :func:`allow_torchaudio_without_native_ops`
lets torchaudio import in the pure-Python mode it already has for installs
without its libraries. See docs/diarization.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shards.spec import AUDIO_SR
from stages.base import Resources, Stage
from stages.item import MODEL_SR, FileItem, Reject, Segment

log = logging.getLogger(__name__)

STAGE = "diarize"
GRID_S = 0.01  # seconds per cell of the grid segments are measured on
PIPELINE_CONFIG = "config.yaml"
INSTALL_HINT = ("install pyannote-audio==4.0.7 as docs/diarization.md describes "
                "(make setup does it)")
# lib -> why torchaudio's native library did not load (empty when it loaded or was never tried)
TORCHAUDIO_NATIVE_ERRORS: dict[str, str] = {}

Turn = tuple[float, float, str]  # (start_s, end_s, speaker label), source seconds


BACKENDS = ("auto", "pyannote", "voice")


@dataclass
class DiarizeConfig:
    backend: str = "auto"  # "auto": pyannote when configured, else "voice" (GE2E clustering, offline) | "pyannote" | "voice"
    model_path: str | None = None  # local pipeline dir with config.yaml, a config.yaml, or a segmentation checkpoint
    hub_name: str | None = None  # e.g. "pyannote/speaker-diarization-community-1"; used only when HF_TOKEN is set
    hub_revision: str | None = None  # hub commit/tag to pin the download to
    mode: str = "reject"  # "reject": drop multi-speaker segments; "split": cut them at speaker changes
    min_other_speaker_s: float = 0.5  # seconds: this much speech of another speaker makes a segment multi-speaker
    max_speaker_overlap_s: float = 0.2  # seconds: more simultaneous speech than this makes it multi-speaker
    min_piece_s: float = 1.0  # seconds: split pieces shorter than this are ledgered (too_short)
    activity_threshold: float = 0.5  # checkpoint mode: local-speaker probability counted as speech
    num_threads: int = 1  # torch intra-op threads per actor
    # The voice backend (stages/voice_diarizer.py); thresholds measured in docs/diarization.md.
    voice_model_path: str | None = None  # local GE2E pretrained.pt; None: the resemblyzer wheel's copy (sha256-pinned)
    voice_hop_s: float = 0.8  # seconds between the centres of the 1.6-s voice windows
    voice_min_cluster_cos: float = 0.62  # cosine: groups of windows are one speaker while their mean cosine is at least this
    voice_min_speaker_windows: int = 1  # windows: a cluster with fewer is folded into the nearest speaker
    voice_refine_hop_s: float = 0.1  # seconds between the windows that place a speaker change
    voice_refine_window_s: float = 0.8  # seconds: length of those windows


# --------------------------------------------------------------------------- importing pyannote


def allow_torchaudio_without_native_ops(package: str = "torchaudio") -> None:
    """Make ``import torchaudio`` fall back to pure-Python mode when its native ops cannot load.

    torchaudio loads ``lib/_torchaudio*.so`` at import. If the file is absent it
    runs without compiled ops (``_IS_TORCHAUDIO_EXT_AVAILABLE = False``), but a
    file that is present and fails to load (PyPI's CUDA build against our CPU
    torch: ``libc10_cuda.so: cannot open shared object file``) raises. This
    pre-loads torchaudio's own ``_extension/utils.py`` with ``_load_lib``
    wrapped to turn that ``OSError`` into the "absent" answer; everything else
    is torchaudio's own code. A native library that loads is still used.
    Must run before torchaudio is first imported; a no-op after.
    """
    if package in sys.modules:
        return
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ImportError(f"{package} is not installed: {INSTALL_HINT}")
    name = f"{package}._extension.utils"
    path = Path(spec.origin).parent / "_extension" / "utils.py"
    utils_spec = importlib.util.spec_from_file_location(name, path)
    if utils_spec is None or utils_spec.loader is None or not path.is_file():
        raise ImportError(f"unexpected {package} layout: {path} is missing")
    utils = importlib.util.module_from_spec(utils_spec)
    utils_spec.loader.exec_module(utils)
    load_native = utils._load_lib

    def _load_lib(lib: str) -> bool:
        try:
            return load_native(lib)
        except OSError as exc:
            TORCHAUDIO_NATIVE_ERRORS[lib] = str(exc.__cause__ or exc)
            log.info("%s native library %s unavailable, using pure-Python ops: %s", package, lib,
                     TORCHAUDIO_NATIVE_ERRORS[lib])
            return False

    utils._load_lib = _load_lib
    sys.modules[name] = utils


def import_pyannote() -> tuple[Any, Any]:
    """Return pyannote.audio's ``(Pipeline, Model)`` classes, importing it the way this stage needs.

    Telemetry is off unless ``PYANNOTE_METRICS_ENABLED`` is set (workers are
    offline), and the torchcodec warning is silenced: we pass waveforms.
    """
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")
    allow_torchaudio_without_native_ops()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\s*torchcodec is not installed correctly")
        from pyannote.audio import Model, Pipeline
    return Pipeline, Model


# --------------------------------------------------------------------------- measuring segments


def build_activity(turns: list[Turn], start_s: float, end_s: float) -> tuple[list[str], np.ndarray]:
    """Speaker labels and a (n_speakers, n_cells) bool grid of who talks in ``[start_s, end_s)``."""
    n = max(1, int(round((end_s - start_s) / GRID_S)))
    labels = sorted({lab for s, e, lab in turns if e > start_s and s < end_s})
    grid = np.zeros((len(labels), n), dtype=bool)
    for s, e, lab in turns:
        a = int(round((max(s, start_s) - start_s) / GRID_S))
        b = int(round((min(e, end_s) - start_s) / GRID_S))
        if b > a:
            grid[labels.index(lab), max(0, a):min(n, b)] = True
    return labels, grid


def measure_speakers(labels: list[str], grid: np.ndarray) -> tuple[str | None, float, float]:
    """``(dominant label, other_s, overlap_s)``: seconds of other speakers and of simultaneous speech."""
    if not labels:
        return None, 0.0, 0.0
    dom = int(np.argmax(grid.sum(axis=1)))
    others = np.delete(grid, dom, axis=0)
    other_s = float(others.any(axis=0).sum()) * GRID_S if len(others) else 0.0
    overlap_s = float((grid.sum(axis=0) >= 2).sum()) * GRID_S
    return labels[dom], other_s, overlap_s


def measure_per_window(labels: list[str], grid: np.ndarray) -> tuple[None, float, float]:
    """Checkpoint mode: like :func:`measure_speakers`, summed over model windows.

    Labels are ``"<segment>+window<k>:local<j>"``; local speakers of different
    windows are unrelated, so each window has its own dominant speaker.
    """
    other_s = overlap_s = 0.0
    for window in sorted({lab.split(":")[0] for lab in labels}):
        rows = [i for i, lab in enumerate(labels) if lab.split(":")[0] == window]
        _, o, v = measure_speakers([labels[i] for i in rows], grid[rows])
        other_s, overlap_s = other_s + o, overlap_s + v
    return None, other_s, overlap_s


def is_multi_speaker(other_s: float, overlap_s: float, cfg: DiarizeConfig) -> bool:
    return other_s >= cfg.min_other_speaker_s or overlap_s > cfg.max_speaker_overlap_s


def split_by_speaker(labels: list[str], grid: np.ndarray) -> list[tuple[int, int, str | None]]:
    """Runs ``[(first_cell, end_cell, label)]`` of one speaker each; label None marks overlapped speech.

    Silent cells go to the nearest speech cell, so cuts fall mid-pause.
    """
    n = grid.shape[1]
    count = grid.sum(axis=0)
    code = np.where(count >= 2, -2, np.where(count == 1, np.argmax(grid, axis=0), -1))
    voiced = np.flatnonzero(code != -1)
    if len(voiced) == 0:
        return [(0, n, None)]
    cells = np.arange(n)
    idx = np.searchsorted(voiced, cells)
    right = voiced[np.clip(idx, 0, len(voiced) - 1)]
    left = voiced[np.clip(idx - 1, 0, len(voiced) - 1)]
    pick = np.where(np.abs(cells - left) <= np.abs(right - cells), left, right)
    code = code[pick]
    cuts = np.flatnonzero(np.diff(code)) + 1
    bounds = [0, *cuts.tolist(), n]
    return [(a, b, None if code[a] == -2 else labels[code[a]]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def apply_speakers(segments: list[Segment], turns: list[Turn], cfg: DiarizeConfig,
                   labelled: bool = True) -> tuple[list[Segment], list[Reject]]:
    """Check every segment against the speaker turns; return ``(keep, dropped)``.

    ``labelled`` False (checkpoint mode) leaves ``seg.speaker`` unset.
    """
    keep: list[Segment] = []
    dropped: list[Reject] = []
    for seg in segments:
        labels, grid = build_activity(turns, seg.start_s, seg.end_s)
        if labelled:
            dom, other_s, overlap_s = measure_speakers(labels, grid)
        else:
            dom, other_s, overlap_s = measure_per_window(labels, grid)
        seg.extra["diarize"] = {"other_speaker_s": round(other_s, 3), "overlap_s": round(overlap_s, 3),
                                "n_speakers": len(labels)}
        if not is_multi_speaker(other_s, overlap_s, cfg):
            seg.speaker = dom if labelled else None
            keep.append(seg)
            continue
        detail = f"{len(labels)} speakers ({', '.join(labels)}); overlapped speech {overlap_s:.2f} s"
        if cfg.mode != "split":
            dropped.append(seg.reject(STAGE, "multi_speaker", other_s, cfg.min_other_speaker_s, detail))
            continue
        pieces, rejects = cut_segment(seg, labels, grid, cfg)
        keep.extend(pieces)
        dropped.extend(rejects)
    return keep, dropped


def cut_segment(seg: Segment, labels: list[str], grid: np.ndarray,
                cfg: DiarizeConfig) -> tuple[list[Segment], list[Reject]]:
    """Split one multi-speaker segment into single-speaker pieces (24 kHz sample bounds)."""
    keep: list[Segment] = []
    dropped: list[Reject] = []
    step = GRID_S * AUDIO_SR
    for a, b, lab in split_by_speaker(labels, grid):
        s = seg.start_sample + int(round(a * step))
        e = min(seg.end_sample, seg.start_sample + int(round(b * step)))
        if e <= s:
            continue
        piece = Segment(start_sample=s, end_sample=e, shot_index=seg.shot_index, speaker=lab,
                        extra={**seg.extra, "split_from": [seg.start_s, seg.end_s]})
        if lab is None:
            dropped.append(piece.reject(STAGE, "multi_speaker", piece.duration_s, cfg.max_speaker_overlap_s,
                                        "overlapped speech cut out while splitting"))
        elif piece.duration_s < cfg.min_piece_s:
            dropped.append(piece.reject(STAGE, "too_short", piece.duration_s, cfg.min_piece_s,
                                        f"piece of {lab} after splitting at speaker changes"))
        else:
            keep.append(piece)
    return keep, dropped


# --------------------------------------------------------------------------- models


class PyannoteDiarizer:
    """A pyannote speaker-diarization pipeline (or a bare segmentation model), loaded once."""

    def __init__(self, cfg: DiarizeConfig, token: str | None = None) -> None:
        import torch

        Pipeline, Model = import_pyannote()
        torch.set_num_threads(max(1, cfg.num_threads))
        self.cfg = cfg
        self.pipeline: Any = None
        self.model: Any = None
        if cfg.model_path:
            path = Path(cfg.model_path).expanduser()
            if not path.exists():
                raise FileNotFoundError(f"diarize.model_path={cfg.model_path!r} does not exist")
            if path.is_dir() or path.name.endswith((".yaml", ".yml")):
                if path.is_dir() and not (path / PIPELINE_CONFIG).is_file():
                    raise FileNotFoundError(f"diarize.model_path={cfg.model_path!r} has no {PIPELINE_CONFIG}")
                self.pipeline = Pipeline.from_pretrained(str(path))
                self.name = f"pyannote.audio-pipeline:{path.resolve()}"
            else:
                self.model = Model.from_pretrained(str(path), strict=False)
                self.model.eval()
                self.name = f"pyannote.audio-segmentation:{path.resolve()}"
        elif cfg.hub_name:
            self.pipeline = Pipeline.from_pretrained(cfg.hub_name, token=token, revision=cfg.hub_revision)
            self.name = f"pyannote.audio-pipeline:{cfg.hub_name}@{cfg.hub_revision or 'main'}"
        else:
            raise ValueError("diarize needs model_path or hub_name")
        if self.pipeline is None and self.model is None:
            raise RuntimeError(f"pyannote could not load {cfg.model_path or cfg.hub_name}")
        if self.model is not None and cfg.mode == "split":
            raise ValueError("diarize.mode=split needs a full pipeline (config.yaml), not a bare checkpoint")

    @property
    def labelled(self) -> bool:
        """True when turns carry file-wide speaker labels (a full pipeline)."""
        return self.pipeline is not None

    def diarize(self, audio_16k: np.ndarray) -> list[Turn]:
        """Speaker turns ``[(start_s, end_s, label)]`` of a whole file's 16 kHz mono audio."""
        import torch

        waveform = torch.from_numpy(np.ascontiguousarray(audio_16k, dtype=np.float32))[None]
        with torch.inference_mode():
            out = self.pipeline({"waveform": waveform, "sample_rate": MODEL_SR, "uri": "item"})
        annotation = getattr(out, "speaker_diarization", out)  # pyannote 4: DiarizeOutput; 3.x: Annotation
        duration_s = len(audio_16k) / MODEL_SR
        turns = [(max(0.0, float(s.start)), min(duration_s, float(s.end)), str(lab))
                 for s, _, lab in annotation.itertracks(yield_label=True)]
        return [t for t in turns if t[1] > t[0]]  # the last model window is padded past the end: clip to it

    def local_turns(self, audio_16k: np.ndarray, start_s: float, end_s: float) -> list[Turn]:
        """Checkpoint mode: local-speaker turns of ``[start_s, end_s)``, labels valid per model window."""
        import torch

        win_s = float(self.model.specifications.duration)
        turns: list[Turn] = []
        t = start_s
        while t < end_s - 1e-6:
            a, b = int(t * MODEL_SR), int(min(end_s, t + win_s) * MODEL_SR)
            chunk = np.zeros(int(win_s * MODEL_SR), dtype=np.float32)
            chunk[:b - a] = audio_16k[a:b]
            with torch.inference_mode():
                scores = self.model(torch.from_numpy(chunk)[None, None])
            active = self.to_multilabel(scores)[0].numpy() >= self.cfg.activity_threshold  # (frames, speakers)
            frame_s = win_s / active.shape[0]
            n_valid = int(np.ceil((b - a) / MODEL_SR / frame_s))
            for j in range(active.shape[1]):
                for fs, fe in find_runs(active[:n_valid, j]):
                    label = f"{start_s:.3f}s+window{int(round((t - start_s) / win_s))}:local{j}"
                    turns.append((t + fs * frame_s, min(end_s, t + fe * frame_s), label))
            t += win_s
        return turns

    def to_multilabel(self, scores: Any) -> Any:
        """(batch, frames, speakers) probabilities from a powerset or multilabel output."""
        specs = self.model.specifications
        if getattr(specs, "powerset", False):
            from pyannote.audio.utils.powerset import Powerset

            ps = Powerset(len(specs.classes), specs.powerset_max_classes)
            return ps.to_multilabel(scores)
        return scores


def find_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[(start, end)]`` index runs where ``mask`` is True."""
    padded = np.concatenate([[False], mask.astype(bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


# --------------------------------------------------------------------------- stage


def find_skip_reason(cfg: DiarizeConfig) -> str | None:
    """Why the stage cannot run with this config and environment, or None when it can."""
    if not cfg.model_path and not cfg.hub_name:
        return "no diarize.model_path or diarize.hub_name configured"
    if not cfg.model_path and not os.environ.get("HF_TOKEN"):
        return f"diarize.hub_name={cfg.hub_name!r} needs HF_TOKEN (gated Hugging Face model) and none is set"
    if importlib.util.find_spec("pyannote") is None or importlib.util.find_spec("pyannote.audio") is None:
        return f"pyannote.audio is not installed: {INSTALL_HINT}"
    return None


def choose_backend(cfg: DiarizeConfig) -> tuple[str, str | None]:
    """``(backend, note)``: the backend ``cfg`` asks for, and why ``auto`` did not pick pyannote (or None)."""
    if cfg.backend not in BACKENDS:
        raise ValueError(f"diarize.backend must be one of {', '.join(BACKENDS)}, got {cfg.backend!r}")
    if cfg.backend != "auto":
        return cfg.backend, None
    if cfg.model_path:  # a local pipeline the user gave: pyannote, and an error if it cannot load
        return "pyannote", None
    why = find_skip_reason(cfg)
    return ("voice", f"pyannote not used: {why}") if why else ("pyannote", None)


@dataclass
class DiarizeStage(Stage):
    name: str = STAGE
    cfg: DiarizeConfig = field(default_factory=DiarizeConfig)
    uses_actor: bool = True
    resources: Resources = field(default_factory=lambda: Resources(num_cpus=1, batch_size=1))
    _diarizer: PyannoteDiarizer | None = field(default=None, repr=False)
    _voice: Any = field(default=None, repr=False)  # VoiceDiarizer
    _skip: str | None = field(default=None, repr=False)
    _note: str | None = field(default=None, repr=False)
    _ready: bool = field(default=False, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_diarizer=None, _voice=None, _ready=False)
        return state

    def setup(self) -> None:
        """Load the chosen backend once, or settle why pyannote is skipped. Bad config raises."""
        if self._ready:
            return
        if self.cfg.mode not in ("reject", "split"):
            raise ValueError(f"diarize.mode must be 'reject' or 'split', got {self.cfg.mode!r}")
        if self.cfg.model_path and not Path(self.cfg.model_path).expanduser().exists():
            raise FileNotFoundError(f"diarize.model_path={self.cfg.model_path!r} does not exist")
        backend, self._note = choose_backend(self.cfg)
        if backend == "voice":
            self._voice = build_voice_diarizer(self.cfg)
        else:
            self._skip = find_skip_reason(self.cfg)
            if self._skip is None:
                try:
                    self._diarizer = PyannoteDiarizer(self.cfg, token=os.environ.get("HF_TOKEN"))
                except ImportError as exc:
                    self._skip = f"pyannote.audio is not importable ({exc}): {INSTALL_HINT}"
            if self._skip and self.cfg.model_path:  # a model the user gave that cannot be used is an error
                raise RuntimeError(f"diarize.model_path={self.cfg.model_path!r} cannot be used: {self._skip}")
            if self._skip:
                log.warning("diarize skipped: %s", self._skip)
        self._ready = True

    def process_item(self, item: FileItem) -> None:
        self.setup()
        if self._voice is not None:
            self.diarize_by_voice(item)
            return
        if self._diarizer is None:
            item.record_skip(self.name, self._skip or "not loaded")
            return
        if not item.segments:
            return
        assert item.audio_16k is not None
        d = self._diarizer
        if d.labelled:
            turns = d.diarize(item.audio_16k)
        else:
            turns = [t for seg in item.segments for t in d.local_turns(item.audio_16k, seg.start_s, seg.end_s)]
        item.provenance["diarize_speakers"] = len({lab for _, _, lab in turns}) if d.labelled else None
        keep, dropped = apply_speakers(item.segments, turns, self.cfg, labelled=d.labelled)
        item.record_model(self.name, d.name)
        item.drop_segments(keep, dropped)

    def diarize_by_voice(self, item: FileItem) -> None:
        """The offline backend: GE2E clustering over the file's speech segments."""
        item.record_model(self.name, self._voice.model_id)
        if self._note:
            item.provenance.setdefault("notes", {})[self.name] = self._note
        if not item.segments:
            return
        assert item.audio_16k is not None
        turns, windows = self._voice.diarize(item.audio_16k, [(s.start_s, s.end_s) for s in item.segments])
        item.voice_windows = windows
        item.provenance["diarize_speakers"] = len({lab for _, _, lab in turns})
        keep, dropped = apply_speakers(item.segments, turns, self.cfg, labelled=True)
        item.drop_segments(keep, dropped)


def build_voice_diarizer(cfg: DiarizeConfig) -> Any:
    """The GE2E clustering diarizer with ``cfg``'s voice settings (the encoder loads here, once)."""
    from stages.voice import VoiceEncoder
    from stages.voice_diarizer import VoiceDiarizer

    if min(cfg.voice_hop_s, cfg.voice_refine_hop_s, cfg.voice_refine_window_s) <= 0:
        raise ValueError("diarize.voice_hop_s, voice_refine_hop_s and voice_refine_window_s must be > 0 seconds")
    enc = VoiceEncoder(cfg.voice_model_path, num_threads=cfg.num_threads)
    return VoiceDiarizer(enc, hop_s=cfg.voice_hop_s, min_cluster_cos=cfg.voice_min_cluster_cos,
                         min_speaker_windows=cfg.voice_min_speaker_windows, refine_hop_s=cfg.voice_refine_hop_s,
                         refine_window_s=cfg.voice_refine_window_s)


def main(argv: list[str] | None = None) -> None:
    """``python -m stages.diarize FILE [--model-path P]``: VAD segments of one file, diarized, as JSON."""
    from stages.audio import AudioConfig, decode_mono, standardize
    from stages.vad import VadSegmentStage

    ap = argparse.ArgumentParser(prog="python -m stages.diarize")
    ap.add_argument("file")
    ap.add_argument("--model-path", default=None)
    ap.add_argument("--hub-name", default=None)
    ap.add_argument("--mode", default="reject", choices=["reject", "split"])
    ap.add_argument("--backend", default="auto", choices=list(BACKENDS))
    args = ap.parse_args(argv)
    samples, rate, _ = decode_mono(args.file)
    a24, a16, _, _ = standardize(samples, rate, AudioConfig())
    item = FileItem(source_path=args.file, audio_24k=a24, audio_16k=a16)
    VadSegmentStage().process([item])
    DiarizeStage(cfg=DiarizeConfig(model_path=args.model_path, hub_name=args.hub_name, mode=args.mode,
                                   backend=args.backend)).process([item])
    voice = item.voice_windows
    print(json.dumps({
        "segments": [{"start_s": round(s.start_s, 3), "end_s": round(s.end_s, 3), "speaker": s.speaker,
                      **s.extra.get("diarize", {})} for s in item.segments],
        "rejects": [{"reason": r.reason, "value": r.value, "start_s": r.start_s, "end_s": r.end_s,
                     "detail": r.detail} for r in item.rejects],
        "speakers": summarize_speakers(voice) if voice is not None else None,
        "provenance": item.provenance,
        "torchaudio_native_errors": TORCHAUDIO_NATIVE_ERRORS,
    }, indent=2, default=str))


def summarize_speakers(voice: Any) -> list[dict[str, Any]]:
    """Per speaker of the voice backend: seconds of speech it labels and its turns."""
    out: dict[str, dict[str, Any]] = {}
    for lab, (s, e) in zip(voice.labels, voice.owned.tolist(), strict=True):
        d = out.setdefault(lab, {"speaker": lab, "speech_s": 0.0, "windows": 0})
        d["speech_s"] = round(d["speech_s"] + e - s, 2)
        d["windows"] += 1
    return list(out.values())


if __name__ == "__main__":
    main()
