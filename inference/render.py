"""``omnitalker render``: codes (or a driving video) + a reference -> a talking-head mp4.

Two modes::

    omnitalker render --ref IMAGE|CLIP_ID --codes FILE|CLIP_ID [--audio WAV] --out OUT.mp4
                      [--shards DIR] [--fps 25] [--size 256|512] [--renderer baseline|learned] [--ckpt DIR]
    omnitalker render --ref IMAGE|CLIP_ID --drive VIDEO --out OUT.mp4 [...]

Codes mode: codes from the generator's ``.npz`` (93.75 Hz), a ``.npy``/``.npz`` with ``fps``, or a
shard ``clip_id`` (``--shards``), resampled to ``--fps`` (:mod:`inference.codes_io`); the
audio file is muxed in. Drive mode (motion reenactment): MediaPipe landmarks of the driving video
on the output grid, codes fitted with ``blendshape_fit``, the source image animated with them; the
driving video's audio is kept. A ``CLIP_ID`` reference uses the clip's first frame in its source
video (``--shards`` needed). Prints a JSON summary.

Library entry points (for ``pipeline/cli.py`` and ``inference/generate.py --render``):
:func:`render_codes_to_mp4` and :func:`reenact_to_mp4`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from inference.codes_io import CodeTrack, load_codes_file, load_codes_from_shards, parse_rate, resample_codes
from inference.video_io import read_audio, read_frame_at, read_image_rgb, write_mp4
from shards.spec import AUDIO_SR, FRAME_RATE_TEXT

log = logging.getLogger(__name__)

RENDERERS = ("baseline", "learned")
SIZES = (256, 512)


class Renderer(Protocol):
    """What the commands need from a renderer (baseline or learned)."""

    model_id: str

    def prepare(self, image_rgb: np.ndarray) -> Any: ...

    def render(self, codes: np.ndarray) -> Any: ...  # iterator of (size, size, 3) uint8 frames


def make_renderer(kind: str = "baseline", size: int | None = None, ckpt: str | None = None, extractor: Any = None) -> Renderer:
    """A renderer of ``kind`` producing ``size`` x ``size`` frames.

    ``learned`` needs ``--ckpt``: ``model.renderer.warpgan.load_learned_renderer(ckpt)``; its trained
    image size must equal ``size`` (None: the checkpoint's size; for the baseline, 256).
    """
    if kind == "baseline":
        size = 256 if size is None else size
        if size not in SIZES:
            raise ValueError(f"--size must be one of {SIZES} for the baseline renderer, got {size}")
        from model.renderer.baseline import BaselineConfig, BaselineRenderer

        return BaselineRenderer(BaselineConfig(size=size), extractor=extractor)
    if kind == "learned":
        if not ckpt:
            raise ValueError("--renderer learned needs --ckpt (a train-renderer run or checkpoint directory)")
        try:
            from model.renderer.warpgan import load_learned_renderer  # type: ignore[attr-defined]
        except ImportError as exc:
            raise RuntimeError("the learned renderer (model/renderer/warpgan.py: load_learned_renderer) is not "
                               f"available: {exc}; use --renderer baseline") from exc
        rend = load_learned_renderer(ckpt)
        if size is not None and int(getattr(rend, "size", size)) != size:
            raise ValueError(f"--ckpt {ckpt} renders {rend.size} px, not --size {size}")
        return rend
    raise ValueError(f"--renderer must be one of {RENDERERS}, got {kind!r}")


def load_reference_image(ref: str | Path | np.ndarray, shards_dir: str | None = None) -> np.ndarray:
    """RGB uint8 reference: an array, an image file, a video file's first frame, or a shard clip's first frame."""
    if isinstance(ref, np.ndarray):
        return ref
    path = Path(ref)
    if path.is_file():
        if path.suffix.lower() in {".mp4", ".mov", ".mkv", ".avi", ".webm", ".mpg"}:
            return read_frame_at(path, 0.0)
        return read_image_rgb(path)
    if shards_dir is None:
        raise FileNotFoundError(f"--ref {ref}: no such file; for a clip_id pass --shards DIR")
    _, row = load_codes_from_shards(shards_dir, str(ref))
    return read_frame_at(row["source_path"], float(row["start_s"]))


def load_codes(codes: str | Path | np.ndarray, codes_fps: float | None = None,
               shards_dir: str | None = None) -> CodeTrack:
    """A :class:`CodeTrack` from an array (at ``codes_fps``), a codes file, or a shard clip_id."""
    if isinstance(codes, np.ndarray):
        rate = parse_rate(codes_fps if codes_fps is not None else FRAME_RATE_TEXT)
        return CodeTrack(np.asarray(codes, dtype=np.float32), rate, "array")
    path = Path(codes)
    if path.is_file():
        return load_codes_file(path) if codes_fps is None else load_codes_file(path, parse_rate(codes_fps))
    if shards_dir is None:
        raise FileNotFoundError(f"--codes {codes}: no such file; for a clip_id pass --shards DIR")
    return load_codes_from_shards(shards_dir, str(codes))[0]


def render_frames(renderer: Renderer, ref_rgb: np.ndarray, codes_out: np.ndarray) -> Any:
    """Prepare the renderer on the reference and iterate the frames for codes on the output grid."""
    renderer.prepare(ref_rgb)
    if hasattr(renderer, "render_frame"):  # baseline: render(codes)
        return renderer.render(codes_out)
    return renderer.render(None, codes_out)  # learned: render(ref_image or None, codes)


def render_codes_to_mp4(ref_image: str | Path | np.ndarray, codes: str | Path | np.ndarray,
                        codes_fps: float | str | None, audio_wav: str | Path | None, out_path: str | Path,
                        fps: float = 25.0, size: int | None = None, renderer: str | Renderer = "baseline",
                        ckpt: str | None = None, shards_dir: str | None = None) -> dict[str, Any]:
    """Render codes onto a reference and write ``out_path`` (mp4, audio muxed in). Returns a summary.

    ``codes_fps``: rate of ``codes`` rows (None: from the file, "24000/256" for arrays). The video
    lasts as long as the codes (``N / codes_fps`` seconds); the audio is cut or left at that length.
    """
    t0 = time.perf_counter()
    rend = make_renderer(renderer, size, ckpt) if isinstance(renderer, str) else renderer
    track = load_codes(codes, codes_fps, shards_dir)
    out_codes = resample_codes(track, fps)
    ref_rgb = load_reference_image(ref_image, shards_dir)
    audio = None
    if audio_wav is not None:
        audio = read_audio(audio_wav, AUDIO_SR)[: int(round(out_codes.shape[0] / fps * AUDIO_SR))]
    t1 = time.perf_counter()
    n = write_mp4(out_path, render_frames(rend, ref_rgb, out_codes), fps, audio)
    wall = time.perf_counter() - t1
    return {"out": str(out_path), "mode": "codes", "renderer": rend.model_id, "frames": n, "fps": float(fps),
            "size": int(getattr(rend, "size", size) or size), "codes_rate_hz": float(track.rate_hz), "duration_s": round(n / fps, 3),
            "audio_s": None if audio is None else round(audio.size / AUDIO_SR, 3),
            "setup_s": round(t1 - t0, 3), "render_fps": round(n / max(wall, 1e-9), 1)}


def extract_drive_codes(drive_video: str | Path, fps: float, max_seconds: float | None = None,
                        extractor: Any = None, start_s: float = 0.0) -> tuple[np.ndarray, Any]:
    """Codes (T, 61) of a video on the ``start_s + i / fps`` grid (seconds) and its landmark track.

    Landmarks: MediaPipe via :class:`blendshape_fit.landmarker.FaceLandmarkExtractor`; codes:
    :func:`blendshape_fit.track.fit_track` (identity offset, gaps filled).
    """
    from blendshape_fit.face_model import load_face_model
    from blendshape_fit.fit import BlendshapeFitter
    from blendshape_fit.landmarker import FaceLandmarkExtractor
    from blendshape_fit.track import fit_track

    own = extractor is None
    ext = FaceLandmarkExtractor(fps=fps) if own else extractor
    ext.fps = float(fps)
    max_frames = None if max_seconds is None else int(round(max_seconds * fps))
    try:
        track = ext.extract(str(drive_video), float(start_s), None, max_frames=max_frames)
    finally:
        if own:
            ext.close()
    if not track.face_mask.any():
        raise ValueError(f"{drive_video}: no face found in the driving video")
    fit = fit_track(BlendshapeFitter(load_face_model()), track)
    return fit.codes.astype(np.float32), track


def reenact_to_mp4(ref_image: str | Path | np.ndarray, drive_video: str | Path, out_path: str | Path,
                   fps: float = 25.0, size: int | None = None, renderer: str | Renderer = "baseline",
                   ckpt: str | None = None, shards_dir: str | None = None,
                   max_seconds: float | None = None) -> dict[str, Any]:
    """Animate the reference with a driving video's motion; keep the driving video's audio."""
    t0 = time.perf_counter()
    rend = make_renderer(renderer, size, ckpt) if isinstance(renderer, str) else renderer
    codes, track = extract_drive_codes(drive_video, fps, max_seconds)
    if hasattr(rend, "cfg") and hasattr(rend.cfg, "codes_aspect"):
        rend.cfg.codes_aspect = track.width_px / max(track.height_px, 1)
    ref_rgb = load_reference_image(ref_image, shards_dir)
    try:
        audio = read_audio(drive_video, AUDIO_SR, 0.0, codes.shape[0] / fps)
    except ValueError:
        audio = None
    t1 = time.perf_counter()
    n = write_mp4(out_path, render_frames(rend, ref_rgb, codes), fps, audio)
    wall = time.perf_counter() - t1
    return {"out": str(out_path), "mode": "drive", "renderer": rend.model_id, "frames": n, "fps": float(fps),
            "size": int(getattr(rend, "size", size) or size), "drive_faceless_frac": round(track.faceless_frac, 4), "duration_s": round(n / fps, 3),
            "audio_s": None if audio is None else round(audio.size / AUDIO_SR, 3),
            "setup_s": round(t1 - t0, 3), "render_fps": round(n / max(wall, 1e-9), 1)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="omnitalker render", description=__doc__.split("\n\n")[0])
    p.add_argument("--ref", required=True, help="reference image, video (first frame) or shard clip_id")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--codes", help="codes: generator .npz (93.75 Hz), .npy/.npz with fps, or shard clip_id")
    src.add_argument("--drive", help="driving video (motion reenactment; its audio is kept)")
    p.add_argument("--audio", help="audio file muxed in (codes mode)")
    p.add_argument("--codes-fps", default=None, help="rate of --codes rows when the file has none (e.g. 30)")
    p.add_argument("--out", required=True, help="output mp4")
    p.add_argument("--shards", default=None, help="shards directory for clip_id references/codes")
    p.add_argument("--fps", type=float, default=25.0, help="output frames per second")
    p.add_argument("--size", type=int, default=None,
                   help="output frame side, pixels: 256 or 512 for the baseline (default 256); "
                        "the learned renderer's is its checkpoint's (default)")
    p.add_argument("--renderer", choices=RENDERERS, default="baseline")
    p.add_argument("--ckpt", default=None, help="learned renderer checkpoint (with --renderer learned)")
    p.add_argument("--max-seconds", type=float, default=None, help="drive mode: render at most this many seconds")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``omnitalker render`` / ``python -m inference.render``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.drive:
            summary = reenact_to_mp4(args.ref, args.drive, args.out, args.fps, args.size, args.renderer, args.ckpt,
                                     args.shards, args.max_seconds)
        else:
            rate = Fraction(args.codes_fps) if args.codes_fps else None
            summary = render_codes_to_mp4(args.ref, args.codes, rate, args.audio, args.out, args.fps, args.size,
                                          args.renderer, args.ckpt, args.shards)
    except (FileNotFoundError, ValueError, KeyError, RuntimeError) as exc:
        print(json.dumps({"error": str(exc)}), file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
