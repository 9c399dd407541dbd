"""StyleTalker's motion-controllable mode on real media: head pose follows the driver, the mouth follows the audio.

    python bench/styletalker_drive.py [--shards OUT/shards] [--ckpt RUN] [--train-steps 1500] [--holdout NAME]
        [--train-set KEY=VALUE]
        [--refine-steps N] [--drive-pose-weight W] [--driver VIDEO] [--audio FILE] [--ref VIDEO|CLIP_ID] [--fps 25] [--work DIR]

Without ``--shards`` the shared media are curated into ``WORK/curated`` (serial executor, ~1 min); without
``--ckpt`` a tiny model (``configs/styletalker_tiny.yaml``) is trained ``--train-steps`` steps on them into
``WORK/run`` (``--holdout`` keeps a source file out of training, e.g. the driver's). Then, as ``omnitalker generate
--model styletalker --drive DRIVER --audio AUDIO --ref REF --render`` does (same library calls):

* driver: the driving video as a generation reference (probe, audio, VAD, ASR, mel, visual stages): its codes
  ``(N', 61)`` and log-mel from its first speech onset;
* codes ``(N, 61)`` at 93.75 Hz for the speech of ``--audio`` (the speech of another clip): lips from the audio,
  motion from the posterior on the driver; rendered onto ``--ref`` (a third identity) with the baseline renderer
  at ``--fps``;
* re-detection: MediaPipe FaceLandmarker + ``blendshape_fit`` (:func:`detect_codes`) on the rendered mp4 and on
  the driving video (from the driver's speech onset), both on the ``i / fps`` grid.

Pose table: Pearson r of pitch and yaw (and roll) against the driver's re-detected pose, over the frames where both
have a face, for: the generated codes before rendering; the rendered output after re-detection; the ceiling (the
driver's own codes rendered onto the reference and re-detected: what the renderer + re-detection keep); the
ablation that keeps the posterior mean without refining it (``refine_steps=0``); the ablation that refines under
the run's own likelihood (head pose weighted as the run trained, ``loss.pose_weight``, instead of
``--drive-pose-weight``); the ablation that decodes the driver's latents with the reference's style (``StyleTalkerMotion.sample(drive_codes=, drive_style="reference")``);
the prior (no driver) as a control. ``vae_recon`` rows compare the generated pose with the driver's curated codes
at 93.75 Hz (the VAE's reconstruction of the driver, no detection involved).

Mouth table: r of jawOpen (100 ms moving average, best lag within +-200 ms, lag = the second signal later) of the
generated codes and of the re-detected render against the log-RMS envelope of the input speech, the jawOpen of the
face that really spoke that speech (when ``--audio`` is a video) and the driver's jawOpen; the driver's own jawOpen
against the input speech is the control of "copying the driver's mouth".
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
MEDIA = (REPO / ".." / "shared" / "data" / "media").resolve()

from core.signals import pearson  # noqa: E402
from inference.codes_io import CodeTrack, resample_codes  # noqa: E402
from inference.render import extract_drive_codes  # noqa: E402
from model.styletalker.model import DRIVE_POSE_WEIGHT, DRIVE_REFINE_STEPS, MOTION_INDEX, MOTION_POSE_INDEX  # noqa: E402
from shards.codes import EXPRESSION_NAMES, PITCH_COL, ROLL_COL, YAW_COL  # noqa: E402
from shards.spec import AUDIO_SR, FRAME_RATE, FRAME_RATE_HZ, FRAME_RATE_TEXT  # noqa: E402

K_JAW = EXPRESSION_NAMES.index("jawOpen")
SMOOTH_S = 0.1  # seconds: moving average of jawOpen and the envelope
MAX_LAG_S = 0.2  # seconds: lags searched for the mouth correlations
DEFAULT_DRIVER = MEDIA / "sadtalker_WDA_KatieHill_000.mp4"  # 8 s, the most head motion of the shared clips
DEFAULT_AUDIO = MEDIA / "videoretalking_face1.mp4"  # another person's speech (6.1 s) and face
DEFAULT_REF = MEDIA / "videoretalking_face4.mp4"  # a third identity


# --------------------------------------------------------------------------- signals


def smooth(x: np.ndarray, n: int) -> np.ndarray:
    """Centred moving average over ``n`` samples (the edges average what is there)."""
    if n <= 1:
        return np.asarray(x, np.float64)
    k = np.ones(n)
    return np.convolve(x, k, mode="same") / np.convolve(np.ones(len(x)), k, mode="same")


def best_lag_r(x: np.ndarray, y: np.ndarray, fps: float, max_lag_s: float = MAX_LAG_S) -> tuple[float, float]:
    """``(r, lag_s)``: the largest r of ``x[t]`` against ``y[t + lag]`` over lags within ``+-max_lag_s`` seconds."""
    n = min(len(x), len(y))
    x, y = np.asarray(x[:n], np.float64), np.asarray(y[:n], np.float64)
    best = (float("nan"), 0.0)
    for lag in range(-int(round(max_lag_s * fps)), int(round(max_lag_s * fps)) + 1):
        a, b = (x[:n - lag], y[lag:]) if lag >= 0 else (x[-lag:], y[:n + lag])
        r = pearson(a, b)
        if np.isfinite(r) and not r <= best[0]:
            best = (r, lag / fps)
    return best


def speech_envelope(audio: np.ndarray, times_s: np.ndarray, sr: int = AUDIO_SR) -> np.ndarray:
    """log-RMS of ``audio`` over 10 ms hops, smoothed over 100 ms, sampled at ``times_s`` (seconds)."""
    hop = sr // 100
    n = len(audio) // hop
    rms = np.sqrt((np.asarray(audio[:n * hop], np.float64).reshape(n, hop) ** 2).mean(axis=1))
    env = smooth(np.log(rms + 1e-4), int(round(SMOOTH_S * 100)))
    return np.interp(times_s, (np.arange(n) + 0.5) * hop / sr, env)


def on_grid(codes: np.ndarray, n: int, fps: float) -> np.ndarray:
    """``(N, 61)`` codes at 93.75 Hz -> ``(n, 61)`` at ``i / fps`` seconds (the renderer's resampling)."""
    return resample_codes(CodeTrack(np.asarray(codes, np.float32), FRAME_RATE), fps, n)


def detect_codes(video: str | Path, start_s: float, n_frames: int, fps: float,
                 extractor: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe re-detection: codes ``(n, 61)`` and face mask ``(n,)`` of ``video`` at ``start_s + i / fps``.

    The project's landmarker (:class:`blendshape_fit.landmarker.FaceLandmarkExtractor`) and fit
    (:func:`blendshape_fit.track.fit_track`, identity offset on); frames without a face are False in the mask.
    """
    codes, track = extract_drive_codes(video, fps, n_frames / fps, extractor, start_s=start_s)
    return codes, track.face_mask.copy()


def motion_mse(codes: np.ndarray, target: np.ndarray, std: np.ndarray) -> dict[str, float]:
    """Mean squared error, in units of the training set's per-column std, of the 34 motion columns of ``codes``
    against ``target`` (both ``(N, 61)`` at 93.75 Hz): the 6 head-pose columns and the other 28 (brows, blinks,
    eyes, cheeks, nose)."""
    z = ((codes[:, list(MOTION_INDEX)] - target[:, list(MOTION_INDEX)]) / std[list(MOTION_INDEX)]) ** 2
    other = [i for i in range(len(MOTION_INDEX)) if i not in MOTION_POSE_INDEX]
    return {"pose": float(z[:, list(MOTION_POSE_INDEX)].mean()), "other": float(z[:, other].mean())}


def pose_r(codes: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """Pearson r of pitch, yaw and roll (columns 51-53) of ``codes`` and ``target`` ``(n, 61)`` over ``mask``."""
    n = min(len(codes), len(target))
    m = np.ones(n, bool) if mask is None else np.asarray(mask[:n], bool)
    return {name: pearson(codes[:n][m, k], target[:n][m, k])
            for name, k in (("pitch", PITCH_COL), ("yaw", YAW_COL), ("roll", ROLL_COL))} | {"n": int(m.sum())}


def jaw_r(jaw: np.ndarray, other: np.ndarray, fps: float) -> dict[str, float]:
    """r of smoothed jawOpen against ``other`` (already smooth, or a jawOpen series), best lag within 200 ms."""
    k = int(round(SMOOTH_S * fps))
    r, lag = best_lag_r(smooth(jaw, k), smooth(other, k), fps)
    return {"r": r, "lag_s": lag}


# --------------------------------------------------------------------------- the run


def ensure_shards(shards: str | None, work: Path) -> str:
    """``--shards`` or the shared media curated into ``WORK/curated`` (reused when already there)."""
    if shards:
        return shards
    out = work / "curated"
    if not (out / "shards").is_dir():
        from pipeline.config import load_config
        from pipeline.run import curate

        curate(str(MEDIA), str(out), load_config(REPO / "configs" / "curate.yaml"), executor="serial",
               show_progress=False)
    return str(out / "shards")


def ensure_ckpt(ckpt: str | None, shards: str, work: Path, steps: int, holdout: list[str],
                overrides: list[str] | None = None) -> str:
    """``--ckpt`` or a tiny StyleTalker trained ``steps`` steps on ``shards`` into ``WORK/run`` (resumed if there;
    ``overrides``: ``KEY=VALUE`` config overrides as ``train-styletalker --set`` takes them)."""
    if ckpt:
        return ckpt
    from launchers.train_styletalker import main as train_main

    run = work / "run"
    argv = ["--shards", shards, "--config", str(REPO / "configs" / "styletalker_tiny.yaml"), "--out", str(run),
            "--max-steps", str(steps), "--set", "torch_threads=1", "--set", "logging.progress=false"]
    if holdout:
        argv += ["--set", "data.holdout=" + json.dumps(holdout)]
    for kv in overrides or []:
        argv += ["--set", kv]
    if train_main(argv) != 0:
        raise RuntimeError("train-styletalker failed")
    return str(run)


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    """Everything in the module docstring; returns the report (also written to ``WORK/report.json``)."""
    from inference.generate import load_driving_audio
    from inference.reference import load_reference
    from inference.render import render_codes_to_mp4
    from inference.styletalker_generate import generate_styletalker_codes, load_model
    from inference.video_io import read_audio

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    t = time.perf_counter()
    shards = ensure_shards(args.shards, work)
    times["curate_s"] = time.perf_counter() - t
    t = time.perf_counter()
    ckpt = ensure_ckpt(args.ckpt, shards, work, args.train_steps, args.holdout, args.train_set)
    times["train_s"] = time.perf_counter() - t
    model, model_id = load_model(ckpt)
    t = time.perf_counter()
    drive = load_reference(str(args.driver))
    ref = load_reference(str(args.ref), shards)
    audio, mel = load_driving_audio(str(args.audio))
    times["references_s"] = time.perf_counter() - t
    t = time.perf_counter()
    gen = generate_styletalker_codes(model, mel, ref.codes, args.seed, 1.0, drive.codes, model_id, drive.mel,
                                     args.refine_steps, args.drive_pose_weight).codes
    t_gen = time.perf_counter() - t
    mean_only = model.sample(mel, ref.codes, mel.shape[0], 1.0, None, drive.codes, drive.mel, refine_steps=0).numpy()
    run_weight = model.sample(mel, ref.codes, mel.shape[0], 1.0, None, drive.codes, drive.mel,
                              refine_steps=args.refine_steps, drive_pose_weight=None).numpy()
    ref_style = model.sample(mel, ref.codes, mel.shape[0], 1.0, torch.Generator().manual_seed(args.seed),
                             drive.codes, drive_style="reference", refine_steps=args.refine_steps,
                             drive_pose_weight=args.drive_pose_weight).numpy()
    prior = generate_styletalker_codes(model, mel, ref.codes, args.seed, 1.0).codes
    times["generate_s"] = time.perf_counter() - t
    n93 = min(gen.shape[0], drive.n_frames)  # 93.75-Hz frames where the driver really moves (no edge padding)
    n = int(np.floor(n93 / FRAME_RATE_HZ * args.fps))  # output frames inside that span
    wav = work / "speech.wav"
    sf.write(wav, audio, AUDIO_SR, subtype="PCM_16")
    ref_arg = str(args.ref) if Path(args.ref).is_file() else ref.name
    shards_arg = None if Path(args.ref).is_file() else shards
    t = time.perf_counter()
    out_mp4, ceil_mp4 = work / "drive.mp4", work / "ceiling.mp4"
    summary = render_codes_to_mp4(ref_arg, gen, FRAME_RATE_TEXT, wav, out_mp4, fps=args.fps, shards_dir=shards_arg)
    render_codes_to_mp4(ref_arg, drive.codes[:n93], FRAME_RATE_TEXT, None, ceil_mp4, fps=args.fps,
                        shards_dir=shards_arg)
    times["render_s"] = time.perf_counter() - t
    t = time.perf_counter()
    from blendshape_fit.landmarker import FaceLandmarkExtractor

    with FaceLandmarkExtractor(fps=args.fps) as ext:
        drv_det, drv_mask = detect_codes(args.driver, drive.start_s, n, args.fps, ext)
        out_det, out_mask = detect_codes(out_mp4, 0.0, n, args.fps, ext)
        ceil_det, ceil_mask = detect_codes(ceil_mp4, 0.0, n, args.fps, ext)
        spk_det = spk_mask = None
        if Path(args.audio).suffix.lower() in {".mp4", ".mov", ".mkv", ".webm", ".avi", ".mpg"}:
            spk_det, spk_mask = detect_codes(args.audio, 0.0, n, args.fps, ext)
    times["redetect_s"] = time.perf_counter() - t

    pose = {
        "vae_recon (codes vs driver's curated codes, 93.75 Hz)": pose_r(gen[:n93], drive.codes[:n93]),
        "generated codes vs driver re-detected": pose_r(on_grid(gen, n, args.fps), drv_det, drv_mask),
        "rendered output re-detected vs driver re-detected": pose_r(out_det, drv_det, drv_mask & out_mask),
        "ceiling: driver codes rendered, re-detected": pose_r(ceil_det, drv_det, drv_mask & ceil_mask),
        "ablation: posterior mean, not refined": pose_r(on_grid(mean_only, n, args.fps), drv_det, drv_mask),
        f"ablation: refined with the run's pose weight ({model.loss_cfg.pose_weight:g})":
            pose_r(on_grid(run_weight, n, args.fps), drv_det, drv_mask),
        "ablation: decoded with the reference's style": pose_r(on_grid(ref_style, n, args.fps), drv_det, drv_mask),
        "control: prior sample, no driver": pose_r(on_grid(prior, n, args.fps), drv_det, drv_mask),
    }
    std = model.code_std.cpu().numpy()
    mse = {name: motion_mse(c[:n93], drive.codes[:n93], std) for name, c in (
        ("refined (the output)", gen), ("posterior mean, not refined", mean_only),
        ("refined with the run's pose weight", run_weight))}
    env = speech_envelope(audio, np.arange(n) / args.fps)
    gen_jaw = on_grid(gen, n, args.fps)[:, K_JAW]
    mouth: dict[str, dict[str, float]] = {
        "generated jawOpen vs input speech envelope": jaw_r(gen_jaw, env, args.fps),
        "re-detected jawOpen vs input speech envelope": jaw_r(out_det[:, K_JAW], env, args.fps),
        "generated jawOpen vs driver's jawOpen": jaw_r(gen_jaw, drv_det[:, K_JAW], args.fps),
        "re-detected jawOpen vs driver's jawOpen": jaw_r(out_det[:, K_JAW], drv_det[:, K_JAW], args.fps),
        "control: driver's jawOpen vs input speech envelope": jaw_r(drv_det[:, K_JAW], env, args.fps),
    }
    drv_audio = read_audio(args.driver, AUDIO_SR, drive.start_s, n / args.fps)
    mouth["control: driver's jawOpen vs its own speech envelope"] = jaw_r(
        drv_det[:, K_JAW], speech_envelope(drv_audio, np.arange(n) / args.fps), args.fps)
    if spk_det is not None:
        mouth["generated jawOpen vs the real speaker's jawOpen"] = jaw_r(gen_jaw, spk_det[:, K_JAW], args.fps)
        mouth["re-detected jawOpen vs the real speaker's jawOpen"] = jaw_r(out_det[:, K_JAW], spk_det[:, K_JAW],
                                                                             args.fps)
        mouth["control: real speaker's jawOpen vs input speech envelope"] = jaw_r(spk_det[:, K_JAW], env, args.fps)
    report = {
        "model": model_id, "ckpt": ckpt, "driver": str(args.driver), "audio": str(args.audio), "ref": str(args.ref),
        "fps": args.fps, "frames": n, "seconds": round(n / args.fps, 3), "driver_start_s": round(drive.start_s, 3),
        "render_frames": summary["frames"],
        "driver_pose_std_rad": {k: float(drv_det[drv_mask][:, c].std()) for k, c in (("pitch", PITCH_COL),
                                                                                     ("yaw", YAW_COL))},
        "faceless_frac": {"driver": float(1 - drv_mask.mean()), "output": float(1 - out_mask.mean())},
        "pose": pose, "motion_mse": mse, "mouth": mouth, "drive_pose_weight": args.drive_pose_weight, "drive_generate_s": round(t_gen, 2), "times_s": {k: round(v, 1) for k, v in times.items()},
    }
    (work / "report.json").write_text(json.dumps(report, indent=2))
    return report


def print_report(rep: dict[str, Any]) -> None:
    print(f"\nmodel {rep['model']}; driver {Path(rep['driver']).name} (from {rep['driver_start_s']} s), "
          f"audio {Path(rep['audio']).name}, ref {Path(rep['ref']).name}; {rep['frames']} frames at {rep['fps']} fps "
          f"({rep['seconds']} s); driver pose std (rad) pitch {rep['driver_pose_std_rad']['pitch']:.3f} "
          f"yaw {rep['driver_pose_std_rad']['yaw']:.3f}; faceless {rep['faceless_frac']}; "
          f"drive pose weight {rep['drive_pose_weight']:g}")
    print("\n| head pose r | pitch | yaw | roll | frames |\n|---|---|---|---|---|")
    for name, r in rep["pose"].items():
        print(f"| {name} | {r['pitch']:.3f} | {r['yaw']:.3f} | {r['roll']:.3f} | {r['n']} |")
    print("\n| motion MSE vs the driver's codes (std units, 93.75 Hz) | head pose | other 28 |\n|---|---|---|")
    for name, r in rep["motion_mse"].items():
        print(f"| {name} | {r['pose']:.3f} | {r['other']:.3f} |")
    print("\n| jawOpen (100 ms avg, best lag +-200 ms) | r | lag (ms) |\n|---|---|---|")
    for name, r in rep["mouth"].items():
        print(f"| {name} | {r['r']:.3f} | {1000 * r['lag_s']:+.0f} |")
    print(f"\ntimes: {rep['times_s']}; drive-mode generation {rep['drive_generate_s']} s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shards", default=None, help="curated shards (default: curate the shared media into WORK)")
    ap.add_argument("--ckpt", default=None, help="train-styletalker run (default: train a tiny one into WORK)")
    ap.add_argument("--train-steps", type=int, default=1500, help="steps of the tiny run when --ckpt is not given")
    ap.add_argument("--holdout", action="append", default=[], help="source file name kept out of training")
    ap.add_argument("--train-set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override of the tiny run, e.g. loss.kl_weight=0.3 (repeatable)")
    ap.add_argument("--driver", default=str(DEFAULT_DRIVER), help="driving video")
    ap.add_argument("--audio", default=str(DEFAULT_AUDIO), help="speech (a video's audio track or an audio file)")
    ap.add_argument("--ref", default=str(DEFAULT_REF), help="reference video or clip_id (the picture)")
    ap.add_argument("--fps", type=float, default=25.0, help="frames per second of the render and re-detection")
    ap.add_argument("--seed", type=int, default=0, help="seed of the prior control")
    ap.add_argument("--refine-steps", type=int, default=DRIVE_REFINE_STEPS,
                    help="Adam steps refining the driver's latents (generate --drive-refine-steps)")
    ap.add_argument("--drive-pose-weight", type=float, default=DRIVE_POSE_WEIGHT,
                    help="times head pose counts in the refinement (generate --drive-pose-weight)")
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "styletalker_drive"),
                    help="work folder (curation, run, mp4s, report)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print_report(run_bench(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
