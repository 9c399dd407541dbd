"""Read reference frames and audio; write H.264 mp4 files with AAC audio muxed in (PyAV).

Time base: seconds from the first audio sample (as :mod:`blendshape_fit.landmarker`), so video
frame ``i`` at ``i / fps`` and audio sample ``round(i / fps * sr)`` are simultaneous.
"""

from __future__ import annotations

import fractions
from collections.abc import Iterable
from pathlib import Path

import av
import cv2
import numpy as np

from shards.spec import AUDIO_SR

AUDIO_FRAME = 1024  # samples per AAC frame


def read_image_rgb(path: str | Path) -> np.ndarray:
    """An image file as RGB uint8 (H, W, 3)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_frame_at(path: str | Path, t_s: float) -> np.ndarray:
    """RGB uint8 frame of a video shown at ``t_s`` seconds (the first frame for ``t_s <= 0``)."""
    from blendshape_fit.landmarker import iterate_grid_frames

    for _i, _t, _idx, rgb, _wh in iterate_grid_frames(path, max(t_s, 0.0), max(t_s, 0.0) + 1e-3, 1000.0, 100000):
        if rgb is not None:
            return rgb
    raise ValueError(f"{path}: no video frame at {t_s:.3f} s")


def read_audio(path: str | Path, rate: int = AUDIO_SR, start_s: float = 0.0,
               duration_s: float | None = None) -> np.ndarray:
    """Mono float32 audio of a media file (wav, flac, or a video's first audio track) at ``rate`` Hz."""
    chunks = []
    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise ValueError(f"{path} has no audio stream")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        for frame in container.decode(container.streams.audio[0]):
            for res in resampler.resample(frame):
                chunks.append(res.to_ndarray().reshape(-1))
        for res in resampler.resample(None):
            chunks.append(res.to_ndarray().reshape(-1))
    audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    a = int(round(start_s * rate))
    b = None if duration_s is None else a + int(round(duration_s * rate))
    return audio[a:b]


def write_mp4(path: str | Path, frames: Iterable[np.ndarray], fps: float, audio: np.ndarray | None = None,
              audio_rate: int = AUDIO_SR, crf: int = 18) -> int:
    """Encode RGB uint8 frames (H, W, 3) to H.264 (yuv420p) at ``fps``, with mono AAC ``audio``.

    Returns the number of video frames written. Frame sides must be even.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = fractions.Fraction(fps).limit_denominator(1001 * 1000)
    n = 0
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=rate)
        v.pix_fmt = "yuv420p"
        v.options = {"crf": str(crf), "preset": "veryfast"}
        a = None
        if audio is not None and audio.size:
            a = out.add_stream("aac", rate=audio_rate)
            a.layout = "mono"
        for rgb in frames:
            if n == 0:
                v.width, v.height = rgb.shape[1], rgb.shape[0]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = n
            frame.time_base = 1 / rate
            out.mux(v.encode(frame))
            n += 1
        out.mux(v.encode(None))
        if a is not None:
            samples = np.clip(audio.astype(np.float32), -1.0, 1.0)
            for start in range(0, samples.size, AUDIO_FRAME):
                chunk = samples[start:start + AUDIO_FRAME]
                af = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
                af.sample_rate = audio_rate
                af.pts = start
                af.time_base = fractions.Fraction(1, audio_rate)
                out.mux(a.encode(af))
            out.mux(a.encode(None))
    return n
