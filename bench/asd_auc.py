"""Dubbing detection: ROC AUC of the ASD scorers over 3-s windows of the shared talking clips.

For every talking clip (MANIFEST kind talking_video) one face track is built from the
MediaPipe landmarker at 25 Hz over the whole clip. Windows of ``--window`` seconds
(hop ``--hop``) are scored three ways:

* true: the clip's own audio (positive);
* swapped: every other clip's audio (looped to length) under this video (negative);
* shifted: the clip's own audio shifted by ``--shift`` seconds (circularly) (negative).

Prints AUC overall, swapped-only and shifted-only per scorer, and the fraction of
windows each scorer would reject at its configured ``min_asd_score``. The learned
scorer runs only with ``--ckpt`` (a Light-ASD checkpoint).

    python bench/asd_auc.py [--media DIR] [--ckpt PATH] [--window 3] [--hop 1.5] [--shift 2]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from stages.item import MODEL_SR  # noqa: E402


def compute_auc(pos: list[float], neg: list[float]) -> float:
    """Probability that a random positive outscores a random negative (ties count half)."""
    p, n = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float(((p > n).sum() + 0.5 * (p == n).sum()) / (p.size * n.size))


def loop_to(audio: np.ndarray, n: int) -> np.ndarray:
    """``audio`` repeated to exactly ``n`` samples."""
    return np.tile(audio, int(np.ceil(n / max(len(audio), 1))))[:n]


def load_clips(media: Path) -> list[dict]:
    """Audio, VAD and one landmark face track for every talking clip."""
    from blendshape_fit.landmarker import FaceLandmarkExtractor
    from stages.asd import build_tracks_from_landmarks
    from stages.audio import AudioConfig, decode_mono, standardize
    from stages.vad import SileroVad

    with open(media / "MANIFEST.tsv", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if r["kind"] == "talking_video"]
    vad = SileroVad()
    clips = []
    with FaceLandmarkExtractor(fps=25.0, max_side_px=640) as ex:
        for r in rows:
            path = media / r["file"]
            samples, rate, _ = decode_mono(str(path))
            _, a16, _, _ = standardize(samples, rate, AudioConfig())
            duration = len(a16) / MODEL_SR
            tracks = build_tracks_from_landmarks(ex.extract(str(path), 0.0, duration))
            if tracks:
                clips.append({"name": r["file"], "path": str(path), "a16": a16, "track": tracks[0],
                              "duration": min(duration, tracks[0].end_s)})
    return clips, vad


def score_windows(scorer, clips: list[dict], vad, window: float, hop: float, shift: float) -> dict[str, list]:
    """Scores of true, swapped and shifted windows."""
    out: dict[str, list[float]] = {"true": [], "swapped": [], "shifted": []}
    for c in clips:
        n = len(c["a16"])
        audios = {"true": [c["a16"]], "shifted": [np.roll(c["a16"], -int(shift * MODEL_SR))],
                  "swapped": [loop_to(o["a16"], n) for o in clips if o is not c]}
        for kind, lst in audios.items():
            for audio in lst:
                probs = vad.compute_speech_probs(audio)
                s = 0.0
                while s + window <= c["duration"] + 1e-6:
                    res = scorer.score(c["track"], audio, 0.0, probs, s, s + window, c["path"])
                    out[kind].append(res.score)
                    s += hop
    return out


def main(argv: list[str] | None = None) -> int:
    from stages.asd import AsdConfig, make_scorer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--media", default=str(REPO.parent / "shared" / "data" / "media"))
    ap.add_argument("--ckpt", default=None, help="Light-ASD checkpoint: also bench the learned scorer")
    ap.add_argument("--window", type=float, default=3.0, help="seconds per window")
    ap.add_argument("--hop", type=float, default=1.5, help="seconds between window starts")
    ap.add_argument("--shift", type=float, default=2.0, help="seconds the shifted negatives are moved")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    clips, vad = load_clips(Path(args.media))
    print(f"{len(clips)} talking clips, tracks + VAD in {time.perf_counter() - t0:.1f} s")
    cfgs = [AsdConfig(scorer="classical")]
    if args.ckpt:
        cfgs.append(AsdConfig(scorer="learned", learned_ckpt_path=args.ckpt))
    print(f"{'scorer':34s} {'n_true':>6s} {'n_swap':>6s} {'n_shift':>7s} {'AUC all':>8s} {'AUC swap':>8s} "
          f"{'AUC shift':>9s} {'true<min':>8s} {'neg<min':>8s} {'s/window':>8s}")
    for cfg in cfgs:
        scorer = make_scorer(cfg)
        t1 = time.perf_counter()
        r = score_windows(scorer, clips, vad, args.window, args.hop, args.shift)
        n_win = sum(len(v) for v in r.values())
        neg = r["swapped"] + r["shifted"]
        limit = cfg.min_learned_score if cfg.scorer == "learned" else cfg.min_asd_score
        print(f"{scorer.name:34s} {len(r['true']):6d} {len(r['swapped']):6d} {len(r['shifted']):7d} "
              f"{compute_auc(r['true'], neg):8.3f} {compute_auc(r['true'], r['swapped']):8.3f} "
              f"{compute_auc(r['true'], r['shifted']):9.3f} {np.mean(np.array(r['true']) < limit):8.2f} "
              f"{np.mean(np.array(neg) < limit):8.2f} {(time.perf_counter() - t1) / max(n_win, 1):8.4f}")
    print("true<min / neg<min: fraction of windows below the configured minimum score (would be asd_low)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
