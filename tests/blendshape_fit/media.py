"""Shared, cached real-media inputs for the blendshape_fit and visual-stage tests.

The media are read in place from ``../shared/data/media`` beside the repo. Landmark
extraction is cached per test session (``functools.lru_cache``) so the blendshape_fit
tests and ``tests/stages/test_visual.py`` pay for it once.
"""

from __future__ import annotations

import csv
from functools import cache, lru_cache
from pathlib import Path

import av
import numpy as np

from blendshape_fit.face_model import FaceModel, load_face_model
from blendshape_fit.landmarker import FaceLandmarkExtractor, LandmarkTrack

MEDIA = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "media").resolve()
MAX_FRAMES_PER_CLIP = 300  # 10 s at 30 fps: keeps the whole suite within a few minutes on 2 cores
ENVELOPE_SR = 16000  # Hz, audio rate for the lip-sync envelope


def talking_videos() -> list[Path]:
    """The talking videos of the shared media manifest."""
    with open(MEDIA / "MANIFEST.tsv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return [MEDIA / r["file"] for r in rows if r["kind"] == "talking_video"]


@lru_cache(maxsize=1)
def shared_extractor() -> FaceLandmarkExtractor:
    """One landmarker for the whole session."""
    return FaceLandmarkExtractor()


@lru_cache(maxsize=1)
def shipped_model() -> FaceModel:
    return load_face_model()


@cache
def talking_track(name: str) -> LandmarkTrack:
    """Landmarks of the first ``MAX_FRAMES_PER_CLIP`` frames (30 fps) of one talking video."""
    return shared_extractor().extract(MEDIA / name, 0.0, None, max_frames=MAX_FRAMES_PER_CLIP)


def decode_audio(path: Path, rate: int = ENVELOPE_SR) -> np.ndarray:
    """Mono float32 audio of a media file at ``rate`` Hz, from its first sample."""
    out = []
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        for frame in container.decode(container.streams.audio[0]):
            for res in resampler.resample(frame):
                out.append(res.to_ndarray().reshape(-1))
        for res in resampler.resample(None):
            out.append(res.to_ndarray().reshape(-1))
    return np.concatenate(out).astype(np.float32)


