"""The evaluation run: test clips -> every system's outputs -> per-clip metrics -> one row per system.

:func:`run_eval` is what ``omnitalker eval`` (``evaluation/cli.py``) calls. Order:

1. test clips: ``split.json`` of the ``--ckpt`` run (``training/split.py``) for ``split="test"``, every
   clip of the shards for ``split="all"``; a second run (``--styletalker-ckpt``) whose training set holds a
   test clip is reported under ``leaks`` in ``results.json``;
2. items (``evaluation/tasks.py``): reference and target span per clip;
3. per item, every system (``evaluation/systems.py``), and per output the metrics: WER/CER and SIM-A
   (systems that make speech), Sync, style statistics against the reference, jaw-envelope correlation,
   pose diversity over seeds, RTF;
4. per system: the means of the per-clip metrics, E-FID and P-FID (``evaluation/frechet.py``, cross-fold
   against real clips), style consistency across clips (``evaluation/motion.py``);
5. with ``render``: Sync on the rendered video of the strip clips after re-detection
   (``evaluation/rendered_sync.py``), then the strips and ID-SIM;
6. ``results.json``, ``per_clip.parquet``, ``table.md`` (``evaluation/report.py``).
"""

from __future__ import annotations

import logging
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evaluation import frechet, motion, systems
from evaluation.report import write_outputs
from evaluation.scorers import AsrScorer, SyncScorer, VoiceScorer
from evaluation.tasks import EvalItem, build_item, load_clips
from model.styletalker.model import DEFAULT_TEMPERATURE
from shards.spec import FRAME_RATE_HZ
from training.split import read_split

log = logging.getLogger("omnitalker.eval")

SYSTEM_ORDER = ("ground_truth", "reconstruction", "dit_text", "dit_audio", "styletalker", "still_reference",
                "audio_swapped")


@dataclass
class EvalConfig:
    """What ``omnitalker eval`` runs (the CLI flags)."""

    ckpt: str | None  # DiT run (model="dit") or StyleTalker run (model="styletalker"); None: baselines only
    shards: str  # curated OUT/shards folder
    out: str  # EVAL_DIR
    model: str = "dit"  # dit | styletalker: what --ckpt is
    styletalker_ckpt: str | None = None  # with model="dit": also evaluate this StyleTalker run
    split: str = "test"  # test: the run's held-out clips; all: every clip (shards the model never saw)
    max_clips: int | None = None  # evaluate at most this many test clips (sorted by clip id)
    seeds: int = 3  # samples per stochastic system (seed 0 is scored; all give the pose diversity)
    steps: int = 16  # DiT Euler steps
    ref_max_s: float = 3.0  # seconds: longest reference span
    speaker_cos: float = 0.76  # GE2E cosine for a same-speaker reference from another source
    temperature: float = DEFAULT_TEMPERATURE  # StyleTalker prior temperature (model/styletalker)
    vocoder: str = "auto"  # auto | vocos | griffin_lim
    vocos_path: str | None = None
    sync_model_path: str | None = None  # None: the shipped lip-sync weights
    syncnet_path: str | None = None  # joonson's syncnet_v2.model: SyncNet's Sync-C/D on the rendered video (render)
    render: bool = False  # also render strips (reference, ground truth, generated frames)
    strips: int = 3  # clips with a comparison strip
    device: str = "cpu"


@dataclass
class Scorers:
    asr: Any
    voice: Any
    sync: Any


@dataclass
class ClipResult:
    """One system on one clip: a row of ``per_clip.parquet`` plus the codes the set metrics need."""

    row: dict[str, Any]
    codes: np.ndarray
    ref_codes: np.ndarray
    real_codes: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)


def describe_device(device: str) -> str:
    """The torch device and the CPU (or GPU) name, for the RTF column."""
    import torch

    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            name = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), name)
    except OSError:
        pass
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(torch.device(device))
    return f"{device} ({name}, {torch.get_num_threads()} torch threads)"


def select_test_ids(cfg: EvalConfig, clip_ids: list[str]) -> tuple[list[str], dict[str, Any]]:
    """The clip ids to evaluate and a description of the split used."""
    present = set(clip_ids)
    info: dict[str, Any] = {"split": cfg.split}
    if cfg.split == "all":
        ids = sorted(present)
    else:
        if cfg.ckpt is None:
            raise ValueError("--split test needs --ckpt (its split.json names the test clips); use --split all")
        split = read_split(cfg.ckpt)
        if split is None:
            raise ValueError(f"{cfg.ckpt} has no split.json (trained before held-out splits existed): "
                             "evaluate it with --split all on shards it never saw")
        ids = sorted(set(split.test_clip_ids) & present)
        info.update(test_sources=[split.source_names.get(s, s) for s in split.test_sources], note=split.note,
                    split_config=split.config)
        if not ids:
            raise ValueError(f"{cfg.ckpt}/split.json holds no test clip of these shards"
                             f"{' (' + split.note + ')' if split.note else ''}: use --split all for shards the "
                             "model never saw, or train with data.split.test_frac > 0")
    if cfg.max_clips is not None:
        ids = ids[:cfg.max_clips]
    leaks: dict[str, list[str]] = {}
    for run in (cfg.ckpt, cfg.styletalker_ckpt):
        other = read_split(run) if run else None
        if other is not None:
            bad = sorted(set(ids) & set(other.train_clip_ids))
            if bad:
                leaks[str(run)] = bad
                log.warning("eval: %d test clips were in the training set of %s", len(bad), run)
    info.update(n_test=len(ids), leaks=leaks)
    return ids, info


def score_output(out: systems.SystemOutput, item: EvalItem, scorers: Scorers) -> dict[str, Any]:
    """Per-clip metrics of one system's output (NaN where a metric does not apply)."""
    seconds = len(out.codes) / FRAME_RATE_HZ
    row: dict[str, Any] = {"system": out.system, "clip_id": item.clip.clip_id, "ref_clip_id": item.ref_clip_id,
                           "ref_mode": item.ref_mode, "language": item.clip.language, "target_text": item.target_text,
                           "output_s": seconds, "wer": math.nan, "asr_text": None, "sim_a": math.nan}
    if out.audio is not None and len(out.audio):
        row["wer"], row["asr_text"] = scorers.asr.score(out.audio, item.target_text, item.clip.language)
        row["sim_a"] = scorers.voice.similarity(item.ref_audio, out.audio)
    row.update(scorers.sync.score(out.mel, out.codes))
    gen, ref = motion.style_stats(out.codes), motion.style_stats(item.ref.codes)
    row.update(gen)
    row.update({f"{k}_ref": v for k, v in ref.items()})
    row["jaw_env_corr"] = motion.jaw_env_corr(out.codes, out.mel)
    row["pose_diversity_deg"] = motion.pose_diversity_deg(out.seed_codes) if out.seed_codes else math.nan
    row["rtf_model"] = out.model_s / seconds if seconds else math.nan
    row["rtf_e2e"] = out.total_s / seconds if seconds else math.nan
    return row


def aggregate(results: list[ClipResult], other_real: list[np.ndarray]) -> dict[str, Any]:
    """One system's table row from its per-clip results."""
    rows = [r.row for r in results]
    means = {}
    for key in ("wer", "sim_a", "sync_conf", "sync_dist", "sync_offset_s", "sync_conf_rendered", "sync_dist_rendered",
                "syncnet_c_rendered", "syncnet_d_rendered", "jaw_env_corr", "pose_diversity_deg", "rtf_model", "rtf_e2e", *motion.STYLE_STATS):
        vals = np.array([r.get(key, math.nan) for r in rows], np.float64)
        vals = vals[np.isfinite(vals)]
        means[key] = float(vals.mean()) if len(vals) else math.nan
    gen = [frechet.center_pose(r.codes, r.ref_codes) for r in results]
    real = [frechet.center_pose(r.real_codes, r.ref_codes) for r in results]
    means["e_fid"] = frechet.cross_fold_frechet(gen, real, other_real, "expression")
    means["p_fid"] = frechet.cross_fold_frechet(gen, real, other_real, "pose")
    style = motion.style_consistency([{k: r[k] for k in motion.STYLE_STATS} for r in rows],
                                     [{k: r[f"{k}_ref"] for k in motion.STYLE_STATS} for r in rows])
    means.update(style)
    corrs = [style[f"{k}_corr"] for k in motion.STYLE_STATS if math.isfinite(style[f"{k}_corr"])]
    means["style_corr"] = float(np.mean(corrs)) if corrs else math.nan
    means["n_clips"] = len(rows)
    return means


def load_models(cfg: EvalConfig) -> dict[str, Any]:
    """The DiT bundle and the StyleTalker model the config asks for."""
    out: dict[str, Any] = {}
    dit_ckpt = cfg.ckpt if cfg.model == "dit" else None
    st_ckpt = cfg.ckpt if cfg.model == "styletalker" else cfg.styletalker_ckpt
    if dit_ckpt:
        from inference.generate import load_checkpoint_for_generation
        from model.checkpoint import resolve_checkpoint

        model, model_cfg, vocab, scaler = load_checkpoint_for_generation(dit_ckpt, cfg.device)
        ck = resolve_checkpoint(dit_ckpt)
        out["dit"] = systems.DitBundle(model, model_cfg, vocab, scaler, f"{Path(dit_ckpt).name}/{ck.name}", cfg.steps)
    if st_ckpt:
        from inference.styletalker_generate import load_model

        out["styletalker"] = load_model(st_ckpt, cfg.device)
    return out


def run_eval(cfg: EvalConfig, scorers: Scorers | None = None) -> dict[str, Any]:
    """Evaluate, write EVAL_DIR, and return the ``results.json`` content."""
    from model.vocoder import VocoderConfig, load_vocoder
    from stages.mel import LogMel

    t_start = time.perf_counter()
    pool = load_clips(cfg.shards)
    test_ids, split_info = select_test_ids(cfg, sorted(pool))
    items: list[EvalItem] = []
    skipped: dict[str, str] = {}
    for cid in test_ids:
        item = build_item(pool[cid], pool, cfg.ref_max_s, cfg.speaker_cos)
        if isinstance(item, str):
            skipped[cid] = item
        else:
            items.append(item)
    if not items:
        raise ValueError(f"no test clip can be evaluated: {skipped or 'none selected'}")
    scorers = scorers or Scorers(AsrScorer(), VoiceScorer(), SyncScorer(cfg.sync_model_path))
    vocoder = load_vocoder(VocoderConfig(kind=cfg.vocoder, vocos_path=cfg.vocos_path, device=cfg.device))
    log_mel = LogMel()
    models = load_models(cfg)
    seeds = list(range(max(1, cfg.seeds)))
    per_system: dict[str, list[ClipResult]] = {}
    strips_data: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        other = items[(i + 1) % len(items)] if len(items) > 1 else None
        outs = [systems.ground_truth(item), systems.reconstruction(item, vocoder, log_mel)]
        if "dit" in models:
            outs += [systems.dit_text(item, models["dit"], vocoder, seeds), systems.dit_audio(item, models["dit"], seeds)]
        if "styletalker" in models:
            st_model, st_id = models["styletalker"]
            outs.append(systems.styletalker(item, st_model, st_id, seeds, cfg.temperature))
        outs.append(systems.still_reference(item))
        if other is not None:
            outs.append(systems.audio_swapped(item, other))
        for out in outs:
            row = score_output(out, item, scorers)
            per_system.setdefault(out.system, []).append(
                ClipResult(row, out.codes, item.ref.codes, item.target_codes))
        if cfg.render and len(strips_data) < cfg.strips:
            strips_data.append({"item": item, "ref_clip": pool[item.ref_clip_id],
                                "outputs": {o.system: o.codes for o in outs}, "mels": {o.system: o.mel for o in outs},
                                "audios": {o.system: o.audio if o.audio is not None else item.target_audio
                                           for o in outs}})
        log.info("eval: clip %d/%d %s done", i + 1, len(items), item.clip.clip_id)
    rendered_id = None
    if cfg.render and strips_data:  # Sync on the rendered video of the strip clips, after re-detection
        from evaluation.rendered_sync import score_rendered_sync

        rendered, rendered_id = score_rendered_sync(strips_data, scorers.sync, cfg.syncnet_path)
        for name, results_of in per_system.items():
            for r in results_of:
                r.row.update(rendered.get((name, r.row["clip_id"]), {}))
    tested = {it.clip.clip_id for it in items}
    ref_frames = int(round(cfg.ref_max_s * FRAME_RATE_HZ))  # real clips not tested: pose relative to their start
    other_real = [frechet.center_pose(c.codes, c.codes[:ref_frames]) for cid, c in sorted(pool.items())
                  if cid not in tested]
    table = {name: aggregate(per_system[name], other_real) for name in SYSTEM_ORDER if name in per_system}
    results = {
        "format": "omnitalker-eval-v1",
        "config": asdict(cfg),
        "split": split_info,
        "skipped": skipped,
        "device": describe_device(cfg.device),
        "models": {"asr": scorers.asr.model_id, "voice": scorers.voice.model_id, "sync": scorers.sync.model_id,
                   "vocoder": vocoder.name, "dit": models["dit"].model_id if "dit" in models else None,
                   "styletalker": models["styletalker"][1] if "styletalker" in models else None,
                   "rendered_sync": rendered_id,
                   "fid": f"window {frechet.WINDOW_FRAMES} frames, hop {frechet.HOP_FRAMES}, mean+std features"},
        "systems": table,
        "wall_s": time.perf_counter() - t_start,
    }
    rows = [r.row for name in SYSTEM_ORDER for r in per_system.get(name, [])]
    write_outputs(Path(cfg.out), results, rows, strips_data, cfg)
    return results
