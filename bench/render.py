"""Renderer benchmark: baseline fps at 256 and 512 px on one CPU core, self-reenactment quality.

    python bench/render.py [--frames 100] [--seconds 3]

Speed: the baseline renders ``--frames`` frames of a head turning and a mouth opening onto
``face_recognition_obama.jpg`` with torch/cv2/BLAS threads = 1 (rendering only, no encoding).
Quality (self-reenactment): frame 0 of ``sadtalker_WDA_KatieHill_000.mp4`` driven by the same
video's codes (MediaPipe + blendshape_fit at 25 fps) against the real frames, same crop:
PSNR (dB), SSIM, and landmark NME (mean MediaPipe landmark distance / inter-ocular distance).
Learned renderer (``model.renderer.warpgan``, random init: speed only): frames/s of the
per-frame work of ``LearnedRenderer.render`` (source features encoded once, then keypoints,
dense motion, warp and decoder per driving frame), tiny (64 px) and paper (512 px) configs,
batch 1 and 8 (paper on CPU: 1 and 2, ~5 s a frame), torch threads 1 and all cores on CPU; on CUDA (when available) the paper
config at 512 px in fp32 and bf16 autocast, batch 1 and 16 (goal on an H100: >= 100 fps;
LivePortrait: 12.8 ms/frame on an RTX 4090).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
MEDIA = (REPO / ".." / "shared" / "data" / "media").resolve()

from bench.learned_render import measure_learned_fps  # noqa: E402
from blendshape_fit.landmarker import FaceLandmarkExtractor, iterate_grid_frames  # noqa: E402
from inference.render import extract_drive_codes  # noqa: E402
from inference.video_io import read_image_rgb  # noqa: E402
from model.renderer.baseline import (  # noqa: E402
    BaselineConfig,
    BaselineRenderer,
    compute_crop_box,
    crop_square,
    detect_landmarks,
)


def make_motion_codes(ref_codes: np.ndarray, n: int) -> np.ndarray:
    """``n`` codes: yaw +-0.3 rad, pitch +-0.15 rad and jawOpen 0-0.7 oscillating."""
    t = np.linspace(0.0, 2 * np.pi, n)
    codes = np.tile(ref_codes, (n, 1))
    codes[:, 52] += 0.3 * np.sin(t)
    codes[:, 51] += 0.15 * np.sin(2 * t)
    codes[:, 24] = 0.35 * (1 - np.cos(3 * t))
    return codes


def measure_fps(size: int, n_frames: int) -> tuple[float, float]:
    """(fps, prepare seconds) of the baseline at ``size`` px."""
    cv2.setNumThreads(1)
    rend = BaselineRenderer(BaselineConfig(size=size))
    t0 = time.perf_counter()
    ref = rend.prepare(read_image_rgb(MEDIA / "face_recognition_obama.jpg"))
    prep = time.perf_counter() - t0
    codes = make_motion_codes(ref.codes, n_frames)
    list(rend.render(codes[:5], retarget=False))  # warm-up
    t0 = time.perf_counter()
    for _ in rend.render(codes, retarget=False):
        pass
    return n_frames / (time.perf_counter() - t0), prep


def print_learned_fps(n_frames: int) -> None:
    """The learned renderer's fps rows (CPU; CUDA when available)."""
    import torch

    print(f"\n{'learned renderer (random init)':<32} {'size':>5} {'batch':>5} {'threads':>7} {'fps':>8} {'ms/frame':>9}")
    all_threads = os.cpu_count() or 1
    for config, size, frames, batches in (("tiny", 64, n_frames * 4, (1, 8)), ("paper", 512, 2, (1, 2))):
        for batch in batches:
            for threads in sorted({1, all_threads}):
                fps = measure_learned_fps(config, batch, "cpu", max(frames, batch), threads)
                print(f"{'learned ' + config + ' cpu':<32} {size:>5} {batch:>5} {threads:>7} {fps:>8.1f} "
                      f"{1000 / fps:>9.2f}")
    if not torch.cuda.is_available():
        print(f"{'learned paper cuda':<32} {512:>5}   skipped: no GPU (goal: >= 100 fps on an H100)")
        return
    name = torch.cuda.get_device_name(0)
    for bf16 in (False, True):
        for batch in (1, 16):
            fps = measure_learned_fps("paper", batch, "cuda", 256, bf16=bf16)
            label = f"learned paper cuda {'bf16' if bf16 else 'fp32'}"
            print(f"{label:<32} {512:>5} {batch:>5} {'-':>7} {fps:>8.1f} {1000 / fps:>9.2f}  {name} "
                  f"(goal >= 100 fps on H100; {'met' if fps >= 100 else 'NOT met'})")


def read_grid_frames(path: Path, n: int, fps: float) -> list[np.ndarray]:
    """The first ``n`` frames on the ``i / fps`` grid (RGB uint8)."""
    frames: list[np.ndarray] = []
    last = None
    for _i, _t, _idx, rgb, _wh in iterate_grid_frames(path, 0.0, n / fps, fps, 100000):
        last = rgb if rgb is not None else last
        frames.append(last)
    return frames


def measure_self_reenactment(video: Path, seconds: float, size: int, fps: float = 25.0) -> dict[str, float]:
    """PSNR (dB), SSIM, NME of frame 0 driven by its own video's codes against the real frames."""
    from skimage.metrics import structural_similarity

    ext = FaceLandmarkExtractor(fps=fps)
    codes, track = extract_drive_codes(video, fps, seconds, extractor=ext)
    real = read_grid_frames(video, codes.shape[0], fps)
    found = detect_landmarks(ext, real[0])
    assert found is not None, "no face on frame 0"
    rend = BaselineRenderer(BaselineConfig(size=size), extractor=ext)
    rend.cfg.codes_aspect = track.width_px / track.height_px
    box = compute_crop_box(found[0], rend.cfg.crop_scale, rend.cfg.crop_shift_up)
    rend.prepare(real[0], crop_box=box)
    psnr, ssim, nme = [], [], []
    for t, frame in enumerate(rend.render(codes)):
        if t == 0:
            continue
        gt = crop_square(real[t], box, size)
        mse = float(((frame.astype(np.float64) - gt) ** 2).mean())
        psnr.append(10 * np.log10(255.0**2 / max(mse, 1e-10)))
        ssim.append(structural_similarity(frame, gt, channel_axis=2, data_range=255))
        a, b = detect_landmarks(ext, frame), detect_landmarks(ext, gt)
        if a is not None and b is not None:
            iod = np.linalg.norm(b[0][33, :2] - b[0][263, :2])
            nme.append(float(np.linalg.norm(a[0][:, :2] - b[0][:, :2], axis=1).mean() / iod))
    ext.close()
    return {"psnr_db": float(np.mean(psnr)), "ssim": float(np.mean(ssim)),
            "nme_iod": float(np.mean(nme)) if nme else float("nan"), "frames": len(psnr)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--seconds", type=float, default=3.0, help="self-reenactment span, seconds")
    p.add_argument("--learned-frames", type=int, default=32, help="frames per learned-renderer CPU measurement")
    args = p.parse_args(argv)
    print(f"{'renderer':<10} {'size':>5} {'fps (1 core)':>13} {'ms/frame':>9} {'prepare s':>10}")
    for size in (256, 512):
        fps, prep = measure_fps(size, args.frames)
        print(f"{'baseline':<10} {size:>5} {fps:>13.1f} {1000 / fps:>9.2f} {prep:>10.2f}")
    print_learned_fps(args.learned_frames)
    video = MEDIA / "sadtalker_WDA_KatieHill_000.mp4"
    print(f"\nself-reenactment: {video.name}, first {args.seconds:g} s at 25 fps")
    print(f"{'size':>5} {'PSNR dB':>8} {'SSIM':>6} {'NME/IOD':>8} {'frames':>7}")
    for size in (256, 512):
        q = measure_self_reenactment(video, args.seconds, size)
        print(f"{size:>5} {q['psnr_db']:>8.2f} {q['ssim']:>6.3f} {q['nme_iod']:>8.4f} {q['frames']:>7d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
