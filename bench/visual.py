"""Benchmark of the visual stage: landmark cost, fit throughput, whole-stage rate.

Prints one table:

* landmarks: wall and CPU milliseconds per 30 fps frame (decode + downscale + MediaPipe),
  and the decode-only share;
* fit: frames per second on one core (BLAS limited to one thread);
* stage: seconds of video coded per CPU-second (``VisualCodesStage.process`` with its own MediaPipe
  pass, all threads: in the job, ``visual`` fits the landmarks ``faces`` measured and costs only the fit);
* the ratio fit cost / landmark cost (goal < 10 %).

Usage: ``python bench/visual.py [--media DIR] [--frames N]`` (default media: the shared
folder beside the repo).
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

from blendshape_fit.face_model import load_face_model  # noqa: E402
from blendshape_fit.fit import BlendshapeFitter, limit_blas_threads  # noqa: E402
from blendshape_fit.landmarker import FaceLandmarkExtractor, iterate_grid_frames  # noqa: E402
from shards.spec import AUDIO_SR  # noqa: E402
from stages.item import FileItem, Segment  # noqa: E402
from stages.visual import VisualCodesStage  # noqa: E402

DEFAULT_MEDIA = REPO / ".." / "shared" / "data" / "media"


def list_talking(media: Path) -> list[Path]:
    with open(media / "MANIFEST.tsv", encoding="utf-8") as fh:
        return [media / r["file"] for r in csv.DictReader(fh, delimiter="\t") if r["kind"] == "talking_video"]


def time_call(fn, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201 - tiny helper
    """(result, wall seconds, process CPU seconds)."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - w0, time.process_time() - c0


def measure_decode(videos: list[Path], frames: int, max_side_px: int) -> tuple[float, int]:
    """CPU seconds and frames for decode + downscale alone."""
    c0 = time.process_time()
    n = 0
    for v in videos:
        for _ in iterate_grid_frames(v, 0.0, frames / 30.0, 30.0, max_side_px):
            n += 1
    return time.process_time() - c0, n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--media", type=Path, default=DEFAULT_MEDIA)
    ap.add_argument("--frames", type=int, default=300, help="30 fps frames per video (from the start)")
    ap.add_argument("--fit-repeats", type=int, default=5)
    args = ap.parse_args(argv)
    videos = list_talking(args.media.resolve())

    extractor = FaceLandmarkExtractor()
    tracks, lm_wall, lm_cpu = [], 0.0, 0.0
    for v in videos:
        track, w, c = time_call(extractor.extract, v, 0.0, None, max_frames=args.frames)
        tracks.append(track)
        lm_wall += w
        lm_cpu += c
    n_frames = sum(t.n_frames for t in tracks)
    dec_cpu, dec_n = measure_decode(videos, args.frames, extractor.max_side_px)

    fitter = BlendshapeFitter(load_face_model())
    fit_wall = []
    with limit_blas_threads(1):
        for _ in range(args.fit_repeats):
            w0 = time.perf_counter()
            for t in tracks:
                fitter.fit(t.landmarks[..., :2], t.width_px, t.height_px, t.face_mask)
            fit_wall.append(time.perf_counter() - w0)
    fit_s = float(np.median(fit_wall))
    n_fit = sum(int(t.face_mask.sum()) for t in tracks)

    stage = VisualCodesStage()
    stage.setup()
    items = []
    for v, t in zip(videos, tracks, strict=True):
        item = FileItem(source_path=str(v))
        item.probe.has_video = True
        item.segments = [Segment(start_sample=0, end_sample=int(round(t.n_frames / 30.0 * AUDIO_SR)))]
        items.append(item)
    _, st_wall, st_cpu = time_call(stage.process, items)
    video_s = sum(it.segments[0].duration_s for it in items if it.segments)

    lm_ms = 1000 * lm_cpu / n_frames
    fit_ms = 1000 * fit_s / n_fit
    rows = [
        ("videos / frames (30 fps)", f"{len(videos)} / {n_frames}"),
        ("landmarks: wall ms per frame", f"{1000 * lm_wall / n_frames:.2f}"),
        ("landmarks: CPU ms per frame", f"{lm_ms:.2f}"),
        ("  of which decode + downscale, CPU ms", f"{1000 * dec_cpu / max(dec_n, 1):.2f}"),
        ("fit: frames/s per core", f"{n_fit / fit_s:.0f}"),
        ("fit: ms per frame", f"{fit_ms:.3f}"),
        ("stage: video-seconds per CPU-second", f"{video_s / st_cpu:.2f}"),
        ("stage: video-seconds per wall-second", f"{video_s / st_wall:.2f}"),
        ("fit cost / landmark cost", f"{100 * fit_ms / lm_ms:.1f} %"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"{'metric':<{width}}  value")
    print("-" * (width + 12))
    for k, val in rows:
        print(f"{k:<{width}}  {val}")
    extractor.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
