"""Lip sync on held-out speakers: AUC of true against swapped and shifted audio, offset error, cost.

The held-out files are ``data.holdout`` of ``configs/sync.yaml`` (the speakers the shipped model
never saw), found in ../shared/data/talking and ../shared/data/media. Each file's mel and
visual codes are computed once over the whole file by the curation's own stages and path (``faces``
measures the landmarks of the longest track, ``visual`` fits them); then windows of
``--window`` seconds (hop ``--hop``) are scored:

* true: the file's own audio (positive);
* swapped: another held-out file's audio under this face (negative: dubbing);
* shifted by 0.2, 0.4, 1 and 2 s: the file's own audio moved later (negative: out of sync).

Rows: the learned model with three confidences (median distance minus the minimum over all lags,
within the correctable ±0.2 s, and within ±80 ms), the lip-sync score that curation gates on
(``shards.sync_score``: the confidence plus the cosine similarity at the best lag) within ±0.2 s and
±80 ms, and the classical active-speaker scorer.
Offset error: the same true windows with the audio delayed or advanced by 40-200 ms; the
measured offset minus that of the unshifted window should equal the delay. Cost: CPU seconds of
scoring per second of video, as a fraction of the visual stage's cost (its fit), and of the codes'
whole cost (``faces``, which decodes, detects, tracks and measures the landmarks, plus ``visual``).

With ``--clips SHARDS`` (the curated sync corpus) it also scores the held-out files' whole curated
clips, with their own audio and under every other held-out file's audio, and reports what
``sync.min_score`` keeps and drops: the calibration of the stage's threshold.

    python bench/sync_auc.py [--model PATH] [--window 3] [--hop 1.5] [--clips out/sync_corpus/shards]
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from bench.asd_auc import compute_auc  # noqa: E402
from shards.spec import AUDIO_SR, FRAME_RATE_HZ  # noqa: E402
from stages.item import MODEL_SR  # noqa: E402

SHIFTS_S = (0.2, 0.4, 1.0, 2.0)
DELAYS_MS = (-200, -120, -80, -40, 40, 80, 120, 200)
SHARED = REPO.parent / "shared" / "data"


def find_file(name: str) -> Path:
    for folder in ("talking", "media"):
        if (SHARED / folder / name).is_file():
            return SHARED / folder / name
    raise FileNotFoundError(name)


def load_heldout(names: list[str]) -> list[dict]:
    """mel, codes (whole file), 16 kHz audio, VAD probabilities and a 25 Hz face track per file."""
    import torch

    from blendshape_fit.landmarker import FaceLandmarkExtractor
    from stages.asd import build_tracks_from_landmarks
    from stages.audio import AudioConfig, decode_mono, standardize
    from stages.item import FileItem, Segment
    from stages.mel import LogMel
    from stages.vad import SileroVad
    from stages.visual import VisualCodesStage

    torch.set_num_threads(1)
    from stages.faces import FaceTrackStage

    vad, faces, visual, out = SileroVad(), FaceTrackStage(), VisualCodesStage(), []
    with FaceLandmarkExtractor(fps=25.0, max_side_px=640) as ex:
        for name in names:
            path = find_file(name)
            samples, rate, _ = decode_mono(str(path))
            a24, a16, _, _ = standardize(samples, rate, AudioConfig())
            item = FileItem(source_path=str(path))
            item.probe.has_video = True
            item.segments = [Segment(start_sample=0, end_sample=len(a24) - 1)]
            t0 = time.process_time()
            faces.process_item(item)
            if item.face_tracks:
                item.segments[0].track_id = max(item.face_tracks, key=lambda t: len(t.times_s)).track_id
            t1 = time.process_time()
            visual.process_item(item)
            visual_cpu, faces_cpu = time.process_time() - t1, t1 - t0
            if not item.segments:
                print(f"  {name}: no codes ({item.rejects[0].reason}); skipped")
                continue
            codes = item.segments[0].visual
            mel = LogMel()(a24[: item.segments[0].end_sample])
            tracks = build_tracks_from_landmarks(ex.extract(str(path), 0.0, len(a16) / MODEL_SR))
            out.append({"name": name, "path": str(path), "mel": mel, "codes": codes, "a16": a16,
                        "probs": vad.compute_speech_probs(a16), "track": tracks[0] if tracks else None,
                        "seconds": len(a24) / AUDIO_SR, "visual_cpu": visual_cpu, "faces_cpu": faces_cpu})
    return out


def learned_scores(model, clips: list[dict], window: float, hop: float) -> tuple[dict, dict, float]:
    """Per kind -> per statistic -> scores; offset errors (ms) per delay; CPU s per video s."""
    from model.sync.scoring import score_clip
    from shards.sync_score import combine_sync_score

    n_win, hop_f = int(round(window * FRAME_RATE_HZ)), int(round(hop * FRAME_RATE_HZ))
    kinds = ["true", "swapped"] + [f"shift {s:g}s" for s in SHIFTS_S]
    stats: dict[str, dict[str, list[float]]] = {
        k: {"all lags": [], "±0.2 s": [], "±80 ms": [], "score ±0.2 s": [], "score ±80 ms": []} for k in kinds}
    errors: dict[int, list[float]] = {d: [] for d in DELAYS_MS}
    cpu, scored_s = 0.0, 0.0

    def record(kind: str, mel: np.ndarray, codes: np.ndarray) -> float:
        nonlocal cpu, scored_s
        t0 = time.process_time()
        s = score_clip(model, mel, codes, max_lag_s=0.6, near_lag_s=0.2)
        cpu += time.process_time() - t0
        scored_s += len(mel) / FRAME_RATE_HZ
        near80 = np.abs(s.lags) <= round(0.08 * FRAME_RATE_HZ)
        finite = np.isfinite(s.dists)
        stats[kind]["all lags"].append(s.conf)
        stats[kind]["±0.2 s"].append(s.conf_near)
        i80 = int(np.argmin(np.where(near80 & finite, s.dists, np.inf)))
        min80 = float(s.dists[i80])
        stats[kind]["±80 ms"].append(float(np.median(s.dists[finite])) - min80)
        stats[kind]["score ±0.2 s"].append(s.score_near)
        stats[kind]["score ±80 ms"].append(
            float(combine_sync_score(stats[kind]["±80 ms"][-1], min80, s.lags[i80] / FRAME_RATE_HZ)))
        return s.offset_s

    for c in clips:
        others = [o for o in clips if o is not c]
        for k0 in range(0, len(c["mel"]) - n_win + 1, hop_f):
            codes = c["codes"][k0:k0 + n_win]
            base = record("true", c["mel"][k0:k0 + n_win], codes)
            for o in others:
                mel_o = np.resize(o["mel"], (max(len(o["mel"]), k0 + n_win), o["mel"].shape[1]))
                record("swapped", mel_o[k0:k0 + n_win], codes)
            for s in SHIFTS_S:
                rolled = np.roll(c["mel"], int(round(s * FRAME_RATE_HZ)), axis=0)
                record(f"shift {s:g}s", rolled[k0:k0 + n_win], codes)
            for d in DELAYS_MS:
                rolled = np.roll(c["mel"], int(round(d / 1000 * FRAME_RATE_HZ)), axis=0)
                measured = score_clip(model, rolled[k0:k0 + n_win], codes, max_lag_s=0.6).offset_s
                errors[d].append(1000 * (measured - base) - d)
    return stats, errors, cpu / max(scored_s, 1e-9)


def classical_scores(clips: list[dict], window: float, hop: float) -> dict[str, list[float]]:
    from stages.asd_classical import ClassicalScorer
    from stages.vad import SileroVad

    scorer, vad = ClassicalScorer(), SileroVad()
    out: dict[str, list[float]] = {"true": [], "swapped": []} | {f"shift {s:g}s": [] for s in SHIFTS_S}
    for c in clips:
        if c["track"] is None:
            continue
        n = len(c["a16"])
        audios = {"true": [c["a16"]], "swapped": [np.resize(o["a16"], n) for o in clips if o is not c]}
        for s in SHIFTS_S:
            audios[f"shift {s:g}s"] = [np.roll(c["a16"], int(s * MODEL_SR))]
        for kind, lst in audios.items():
            for audio in lst:
                probs = c["probs"] if kind == "true" else vad.compute_speech_probs(audio)
                t = 0.0
                while t + window <= min(c["seconds"], c["track"].end_s) + 1e-6:
                    out[kind].append(scorer.score(c["track"], audio, 0.0, probs, t, t + window, c["path"]).score)
                    t += hop
    return out


def whole_clip_scores(model, shards: str, names: list[str]) -> tuple[np.ndarray, np.ndarray, int]:
    """``(genuine (n, 2), dubbed (m, 2), files)``: ``(sync_conf, score)`` of every curated clip of a held-out
    file with its own audio, and under every other held-out file's audio (its mel repeated to length)."""
    import pyarrow.parquet as pq

    from model.sync.scoring import score_clip

    held = set(names)
    clips = []
    for part in sorted(Path(shards).glob("part-*.parquet")):
        for r in pq.read_table(part, columns=["source_path", "mel", "visual"]).to_pylist():
            if Path(r["source_path"]).name in held:
                clips.append((Path(r["source_path"]).name, np.asarray(r["mel"], np.float32),
                              np.asarray(r["visual"], np.float32)))
    genuine, dubbed = [], []
    for name, mel, codes in clips:
        try:
            s = score_clip(model, mel, codes)
        except ValueError:  # shorter than the model's windows: the stage ledgers it too_short_for_sync
            continue
        genuine.append((s.conf_near, s.score_near))
        for other, mel_o, _ in clips:
            if other != name:
                d = score_clip(model, np.resize(mel_o, mel.shape), codes)
                dubbed.append((d.conf_near, d.score_near))
    return np.array(genuine).reshape(-1, 2), np.array(dubbed).reshape(-1, 2), len({c[0] for c in clips})


def report_whole_clips(model, shards: str, names: list[str]) -> None:
    """AUC of genuine against dubbed whole clips, and what the stage's threshold keeps and drops."""
    from stages.sync import SyncConfig

    genuine, dubbed, files = whole_clip_scores(model, shards, names)
    if not len(genuine) or not len(dubbed):
        print(f"\nwhole clips: no held-out clips in {shards}")
        return
    min_score = SyncConfig().min_score
    print(f"\nwhole held-out clips ({shards}): {len(genuine)} genuine clips of {files} files, {len(dubbed)} dubbed "
          "(each face under every other held-out file's audio)")
    print(f"{'gate value':28s} {'AUC':>6s} {'genuine min':>12s} {'dubbed median':>14s} {'dubbed below the lowest genuine':>32s}")
    for col, label in ((0, "sync_conf"), (1, "score (sync.min_score)")):
        lo = float(genuine[:, col].min())
        print(f"{label:28s} {compute_auc(genuine[:, col], dubbed[:, col]):6.3f} {lo:12.3f} "
              f"{np.median(dubbed[:, col]):14.3f} {np.mean(dubbed[:, col] < lo):32.3f}")
    print(f"sync.min_score = {min_score}: genuine kept {np.mean(genuine[:, 1] >= min_score):.3f}, "
          f"dubbed rejected {np.mean(dubbed[:, 1] < min_score):.3f}")


def main(argv: list[str] | None = None) -> int:
    from model.sync.io import load_sync_model
    from training.sync_loop import load_sync_config

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="lip-sync weights (default: the shipped model)")
    ap.add_argument("--config", default=str(REPO / "configs" / "sync.yaml"), help="its training config (holdout)")
    ap.add_argument("--window", type=float, default=3.0, help="seconds per window")
    ap.add_argument("--hop", type=float, default=1.5, help="seconds between window starts")
    ap.add_argument("--no-classical", action="store_true", help="skip the classical scorer rows")
    ap.add_argument("--cache", default=None, help="pickle of the loaded held-out files: written once, then reused")
    ap.add_argument("--clips", default=None, help="curated shards of the sync corpus (make sync-model's first step, "
                    "out/sync_corpus/shards): also score its held-out whole clips, genuine and dubbed, against "
                    "sync.min_score")
    args = ap.parse_args(argv)
    names = load_sync_config(args.config).data.holdout
    t0 = time.perf_counter()
    cache = Path(args.cache) if args.cache else None
    if cache is not None and cache.is_file():
        clips = pickle.loads(cache.read_bytes())
    else:
        clips = load_heldout(names)
        if cache is not None:
            cache.write_bytes(pickle.dumps(clips))
    model, model_id = load_sync_model(args.model)
    print(f"{len(clips)} held-out files ({', '.join(c['name'] for c in clips)}), "
          f"{sum(c['seconds'] for c in clips):.0f} s, loaded in {time.perf_counter() - t0:.0f} s; model {model_id}")
    # One intra-op thread, as the sync stage scores (``sync.torch_threads: 1``) and as the visual cost
    # was measured: with torch's default (every core) the same scoring took 18.5 instead of 8.8 ms CPU
    # per s of video, the difference being thread synchronization, not work.
    import torch

    torch.set_num_threads(1)
    stats, errors, cpu_per_s = learned_scores(model, clips, args.window, args.hop)
    kinds = list(stats)
    print(f"\n{'scorer / confidence':28s} {'n_true':>6s} " + " ".join(f"{k:>11s}" for k in kinds[1:]))
    for stat in stats["true"]:
        aucs = [compute_auc(stats["true"][stat], stats[k][stat]) for k in kinds[1:]]
        print(f"{'learned, ' + stat:28s} {len(stats['true'][stat]):6d} " + " ".join(f"{a:11.3f}" for a in aucs))
    if not args.no_classical:
        cl = classical_scores(clips, args.window, args.hop)
        aucs = [compute_auc(cl["true"], cl[k]) for k in kinds[1:]]
        print(f"{'classical ASD score':28s} {len(cl['true']):6d} " + " ".join(f"{a:11.3f}" for a in aucs))
    print("\noffset error (measured - delay, ms), median |error| and 90th percentile over true windows:")
    for d, e in errors.items():
        e = np.abs(np.asarray(e))
        print(f"  audio {'late' if d > 0 else 'early'} by {abs(d):3d} ms: median {np.median(e):5.1f}  "
              f"p90 {np.percentile(e, 90):5.1f}  within 40 ms {np.mean(e <= 40):5.2f}")
    seconds = sum(c["seconds"] for c in clips)
    visual_cpu = sum(c["visual_cpu"] for c in clips) / seconds
    codes_cpu = visual_cpu + sum(c.get("faces_cpu", 0.0) for c in clips) / seconds
    print(f"\ncost: scoring {cpu_per_s * 1000:.1f} ms CPU per s of video; visual stage (the fit) {visual_cpu * 1000:.0f} "
          f"ms per s, ratio {cpu_per_s / max(visual_cpu, 1e-9):.3f}; faces + visual (decode, detection, tracking, "
          f"landmarks, fit) {codes_cpu * 1000:.0f} ms per s, ratio {cpu_per_s / max(codes_cpu, 1e-9):.3f} (goal <= 0.05)")
    if args.clips:
        report_whole_clips(model, args.clips, names)
    return 0


if __name__ == "__main__":
    sys.exit(main())
