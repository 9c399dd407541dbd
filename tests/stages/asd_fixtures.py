"""Helpers for the ASD tests: negative-control videos and real face tracks.

- ``write_photo_video``: a face photo as a video under an audio track, either
  looped still (voice-over control: 1-px drift only, as ``conftest.write_video``
  does) or moved with a smooth affine jitter and zoom (off-screen control: the
  head moves, the mouth never does).
- ``load_file_item``: a FileItem with 24/16 kHz audio, silero VAD probabilities
  and one real face track per file, built from the MediaPipe landmarker at
  25 Hz over a slice of the file (``stages.asd.build_tracks_from_landmarks``).

Media are read from ../shared/data/media in place (never copied).
"""

from __future__ import annotations

import fractions
from pathlib import Path

import av
import numpy as np

from shards.spec import AUDIO_SR
from stages.item import FileItem, Segment
from tests.conftest import mux_mono_audio

FPS = 25  # Hz: the face-track rate the ASD stage expects (faces stage default)


def compute_affine_jitter(i: int, fps: float, size: tuple[int, int], amplitude: float = 1.0) -> np.ndarray:
    """(2, 3) affine matrix for frame ``i``: slow translation (about 6 % of the width), rotation (+-4 deg)
    and zoom (+-6 %), all smooth sinusoids of a few tenths of a Hz, scaled by ``amplitude``."""
    import cv2

    t = i / fps
    w, h = size
    angle = 4.0 * amplitude * np.sin(2 * np.pi * 0.35 * t)
    scale = 1.0 + 0.06 * amplitude * np.sin(2 * np.pi * 0.5 * t + 1.0)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    m[0, 2] += 0.06 * w * amplitude * np.sin(2 * np.pi * 0.4 * t)
    m[1, 2] += 0.04 * h * amplitude * np.sin(2 * np.pi * 0.3 * t + 0.5)
    return m


def write_photo_video(path: Path, image: Path, audio: np.ndarray | None, audio_rate: int, seconds: float,
                      motion: str = "still", size: tuple[int, int] = (256, 320), fps: int = FPS) -> Path:
    """Encode ``image`` as an H.264 mp4 (with AAC ``audio`` when given).

    ``motion``: "still" (1-px horizontal drift, a looped photo) or "jitter" (affine head motion).
    """
    import cv2

    photo = cv2.resize(cv2.cvtColor(cv2.imread(str(image)), cv2.COLOR_BGR2RGB), size, interpolation=cv2.INTER_AREA)
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=fps)
        v.width, v.height = size
        v.pix_fmt = "yuv420p"
        v.codec_context.time_base = fractions.Fraction(1, fps)
        a = None
        if audio is not None:
            a = out.add_stream("aac", rate=audio_rate)
            a.layout = "mono"
        for i in range(int(round(seconds * fps))):
            if motion == "jitter":
                img = cv2.warpAffine(photo, compute_affine_jitter(i, fps, size), size, borderMode=cv2.BORDER_REFLECT)
            else:
                img = np.roll(photo, (i % 2), axis=1)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            frame.pts = i
            frame.time_base = fractions.Fraction(1, fps)
            for p in v.encode(frame):
                out.mux(p)
        for p in v.encode():
            out.mux(p)
        if a is not None:
            audio = np.asarray(audio, np.float32)
            audio = audio.mean(axis=1) if audio.ndim == 2 else audio
            mux_mono_audio(out, a, audio[:int(seconds * audio_rate)], audio_rate)
    return path


def load_file_item(path: Path, start_s: float, end_s: float, extractor, vad) -> FileItem:
    """A FileItem for ``[start_s, end_s)`` of ``path``: audio (24/16 kHz), VAD probabilities over the
    whole file, one face track (track_id 0, shot 0) and one segment spanning the slice."""
    from stages.asd import build_tracks_from_landmarks
    from stages.audio import AudioConfig, decode_mono, standardize

    samples, rate, _ = decode_mono(str(path))
    a24, a16, _, _ = standardize(samples, rate, AudioConfig())
    item = FileItem(source_path=str(path))
    item.probe.has_video = True
    item.probe.has_audio = True
    item.audio_24k, item.audio_16k = a24, a16
    item.vad_probs = vad.compute_speech_probs(a16)
    end_s = min(end_s, len(a24) / AUDIO_SR)
    lt = extractor.extract(str(path), start_s, end_s)
    item.face_tracks = build_tracks_from_landmarks(lt, shot_index=0)
    item.face_fps = lt.fps
    item.shots = [(0.0, len(a24) / AUDIO_SR)]
    item.segments = [Segment(start_sample=int(round(start_s * AUDIO_SR)), end_sample=int(round(end_s * AUDIO_SR)))]
    return item
