"""A long talking video built from the shared clips, for the chunking bench and test (issue #15).

The talking videos of ``../shared/data/media`` are played one after another (``repeat`` rounds), each
letterboxed into one frame size at a constant frame rate, with its own speech resampled to 24 kHz
mono. Every clip boundary is a shot cut, as in the concatenated 8-minute input of the issue.

    python bench/long_input.py OUT.mp4 [--repeat 11] [--size 1280x720] [--fps 25]
"""

from __future__ import annotations

import argparse
import csv
import fractions
import sys
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stages.audio import decode_mono, resample_to  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "data" / "media"
AUDIO_RATE = 24000  # Hz of the written AAC track


def talking_videos(media: Path = MEDIA) -> list[Path]:
    """The shared media's talking videos, in manifest order."""
    with open(media / "MANIFEST.tsv", encoding="utf-8") as fh:
        return [media / r["file"] for r in csv.DictReader(fh, delimiter="\t") if r["kind"] == "talking_video"]


def letterbox(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """``rgb`` scaled to fit ``width x height`` (aspect kept), centred on black."""
    import cv2

    h, w = rgb.shape[:2]
    scale = min(width / w, height / h)
    nw, nh = max(2, int(round(w * scale))), max(2, int(round(h * scale)))
    out = np.zeros((height, width, 3), np.uint8)
    y, x = (height - nh) // 2, (width - nw) // 2
    out[y:y + nh, x:x + nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
    return out


def iterate_frames_at_rate(path: Path, fps: int, width: int, height: int, n_out: int):
    """``n_out`` frames at ``k / fps`` s: the source frame shown at that time (held after the last)."""
    last = np.zeros((height, width, 3), np.uint8)
    k = 0
    with av.open(str(path)) as src:
        stream = src.streams.video[0]
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        for frame in src.decode(stream):
            t = (float(frame.pts * frame.time_base) - start) if frame.pts is not None else k / fps
            while k < n_out and k / fps < t:
                yield last
                k += 1
            last = letterbox(frame.to_ndarray(format="rgb24"), width, height)
    while k < n_out:
        yield last
        k += 1


def build_long_video(out_path: Path, repeat: int = 11, size: tuple[int, int] = (1280, 720), fps: int = 25,
                     clips: list[Path] | None = None) -> float:
    """Write the long video; returns its duration in seconds."""
    clips = clips or talking_videos()
    width, height = size
    n_frames_total = 0
    with av.open(str(out_path), "w") as out:
        v = out.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = width, height, "yuv420p"
        v.options = {"preset": "veryfast", "crf": "23"}
        v.codec_context.time_base = fractions.Fraction(1, fps)
        a = out.add_stream("aac", rate=AUDIO_RATE)
        a.layout = "mono"
        audio_pts = 0
        for _ in range(repeat):
            for clip in clips:
                samples, rate, _ = decode_mono(str(clip))
                speech = resample_to(samples, rate, AUDIO_RATE)
                n_frames = int(len(speech) / AUDIO_RATE * fps)
                speech = speech[:int(round(n_frames * AUDIO_RATE / fps))]
                for rgb in iterate_frames_at_rate(clip, fps, width, height, n_frames):
                    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                    frame.pts = n_frames_total
                    n_frames_total += 1
                    for p in v.encode(frame):
                        out.mux(p)
                for i in range(0, len(speech), 1024):
                    block = np.ascontiguousarray(speech[i:i + 1024], np.float32)[None, :]
                    af = av.AudioFrame.from_ndarray(block, format="flt", layout="mono")
                    af.sample_rate, af.pts = AUDIO_RATE, audio_pts
                    audio_pts += block.shape[1]
                    for p in a.encode(af):
                        out.mux(p)
        for stream in (v, a):
            for p in stream.encode():
                out.mux(p)
    return n_frames_total / fps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--repeat", type=int, default=11, help="rounds of the shared talking clips")
    ap.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT")
    ap.add_argument("--fps", type=int, default=25)
    args = ap.parse_args()
    w, h = (int(x) for x in args.size.lower().split("x"))
    print(f"{args.out}: {build_long_video(args.out, args.repeat, (w, h), args.fps):.1f} s")


if __name__ == "__main__":
    main()
