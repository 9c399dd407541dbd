"""Audio and visual codes share one time base: a mouth that opens between two video frames opens in the
codes where a click sits in the audio, within 5 ms, at 25 fps, 30 fps and a variable frame rate, whether
the codes are fitted from the landmarks the faces stage measured on the speaker's track (the job's path:
one landmark pass, faces sampling a 25 Hz grid and following the track on the frames between) or from
the visual stage's own MediaPipe pass (the CLI, or ``visual.reuse_face_landmarks: false``).

The fixture is built here from the shared face photo: the baseline renderer draws it with the jaw
closed or open (MediaPipe then sees a real face), frames are encoded at chosen presentation times,
and the audio carries a click halfway between the last closed and the first open frame of each
opening (the best estimate of when a step between two frames happened). Before the visual stage
worked on each frame's own time it held frames on a 30 fps grid, and the codes came 3-37 ms late.
"""

from __future__ import annotations

import fractions
from pathlib import Path

import av
import numpy as np
import pytest

from inference.video_io import read_image_rgb
from model.renderer.baseline import BaselineConfig, BaselineRenderer
from shards.codes import EXPRESSION_NAMES
from shards.spec import AUDIO_SR, mel_frame_times
from stages.audio import AudioConfig, StandardizeAudioStage
from stages.faces import FaceTrackStage
from stages.item import FileItem, Segment
from stages.visual import VisualCodesStage
from tests.conftest import MEDIA, mux_mono_audio

JAW = EXPRESSION_NAMES.index("jawOpen")
AUDIO_RATE = 48000
SECONDS = 3.2
OPEN_FRAMES = 6  # each opening lasts this many frames


def frame_times(kind: str) -> np.ndarray:
    if kind == "vfr":
        rng = np.random.default_rng(7)
        steps = rng.uniform(0.6, 1.6, 200) / 25.0
        t = np.concatenate([[0.0], np.cumsum(steps)])
    else:
        t = np.arange(200) / float(kind)
    return np.round(t[t < SECONDS] * 90000) / 90000  # exactly representable in the 1/90000 time base


@pytest.fixture(scope="module")
def renderer() -> BaselineRenderer:
    rend = BaselineRenderer(BaselineConfig(size=256))
    rend.prepare(read_image_rgb(MEDIA / "face_recognition_obama.jpg"))
    return rend


def write_fixture(path: Path, rend: BaselineRenderer, times: np.ndarray) -> list[float]:
    """Video frames at ``times`` (jaw open on three runs of frames), AAC audio with a click per opening."""
    n = len(times)
    onsets = [int(n * f) for f in (0.2, 0.47, 0.73)]
    codes = np.tile(rend.ref.codes.astype(np.float32), (n, 1))
    for k in onsets:
        codes[k:k + OPEN_FRAMES, JAW] = 0.8
    events = [float((times[k - 1] + times[k]) / 2) for k in onsets]
    rng = np.random.default_rng(0)
    audio = (0.003 * rng.standard_normal(int(SECONDS * AUDIO_RATE))).astype(np.float32)
    for t in events:
        s = int(round(t * AUDIO_RATE))
        audio[s:s + 96] = 0.8
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=30)
        v.width = v.height = rend.size
        v.pix_fmt = "yuv420p"
        v.codec_context.time_base = fractions.Fraction(1, 90000)
        a = out.add_stream("aac", rate=AUDIO_RATE)
        a.layout = "mono"
        for t, img in zip(times, rend.render(codes), strict=True):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            frame.pts = int(round(t * 90000))
            frame.time_base = fractions.Fraction(1, 90000)
            for p in v.encode(frame):
                out.mux(p)
        for p in v.encode():
            out.mux(p)
        mux_mono_audio(out, a, audio, AUDIO_RATE)
    return events


def rising_crossings(t: np.ndarray, x: np.ndarray, level: float) -> list[float]:
    """Times where ``x`` (linear between samples) rises through ``level``."""
    up = np.flatnonzero((x[:-1] < level) & (x[1:] >= level))
    return [float(t[i] + (level - x[i]) / (x[i + 1] - x[i]) * (t[i + 1] - t[i])) for i in up]


@pytest.fixture(scope="module")
def faces() -> FaceTrackStage:
    stage = FaceTrackStage()
    stage.setup()
    return stage


@pytest.mark.parametrize("landmarks", ["faces", "visual"])
@pytest.mark.parametrize("kind", ["25", "30", "vfr"])
def test_mouth_events_in_codes_land_on_the_audio_clicks(kind, landmarks, renderer, faces, tmp_path):
    times = frame_times(kind)
    video = tmp_path / f"events_{kind}.mp4"
    events = write_fixture(video, renderer, times)

    item = FileItem(source_path=str(video))
    item.probe.has_video = item.probe.has_audio = True
    StandardizeAudioStage(cfg=AudioConfig(silence_lufs=-100.0)).process_item(item)
    assert not item.rejects
    audio = np.abs(item.audio_24k)
    clicks = rising_crossings(np.arange(len(audio)) / AUDIO_SR, audio, 0.5 * audio.max())
    clicks = [c for i, c in enumerate(clicks) if i == 0 or c - clicks[i - 1] > 0.1]
    assert clicks == pytest.approx(events, abs=1e-3)  # the audio keeps its time base

    item.segments = [Segment(start_sample=0, end_sample=len(item.audio_24k))]
    if landmarks == "faces":
        faces.process_item(item)
        [track] = item.face_tracks
        item.segments[0].track_id = track.track_id
        assert track.landmarks is not None and track.landmarks.found.all()
        # a row at every source frame of the track's span, at the frame's own time (30 fps and the VFR
        # fixture's fast stretches have frames between the 25 Hz grid times)
        on = times[(times >= track.landmarks.times_s[0] - 1e-6) & (times <= track.landmarks.times_s[-1] + 1e-6)]
        assert track.landmarks.times_s == pytest.approx(on, abs=1e-4)
    VisualCodesStage().process_item(item)
    [seg] = item.segments
    assert seg.extra["visual"]["landmarks"] == landmarks
    jaw = seg.visual[:, JAW].astype(np.float64)
    t = mel_frame_times(seg.start_s, len(jaw))
    closed, opened = np.percentile(jaw, 20), np.percentile(jaw, 95)
    assert opened - closed > 0.3, "the rendered openings must show in the codes"
    found = rising_crossings(t, jaw, (closed + opened) / 2)
    assert len(found) == len(clicks)
    errors_ms = 1000 * (np.array(found) - np.array(clicks))
    assert np.abs(errors_ms).max() <= 5.0, f"codes vs audio events (ms): {np.round(errors_ms, 1)}"
