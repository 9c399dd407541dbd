"""probe (streams, VFR, start offsets) and scene on the real media."""

from __future__ import annotations

import pytest

from stages.probe import ProbeConfig, probe_file
from stages.scene import SceneConfig, detect_shots


def test_probe_reads_streams(media_dir):
    info = probe_file(str(media_dir / "videoretalking_face4.mp4"), ProbeConfig())
    assert info.has_video and info.has_audio
    assert (info.width, info.height) == (700, 700)
    assert info.fps == pytest.approx(30.0, abs=0.01)
    assert info.audio_sample_rate == 44100 and info.audio_channels == 2
    assert info.duration_s == pytest.approx(6.634, abs=0.05)
    assert not info.variable_frame_rate


def test_probe_flags_variable_frame_rate(media_dir):
    info = probe_file(str(media_dir / "videoretalking_face1.mp4"), ProbeConfig())
    assert info.variable_frame_rate
    assert info.fps == pytest.approx(22.131, abs=0.01)


def test_audio_only_file(media_dir):
    info = probe_file(str(media_dir / "whisper_jfk.flac"), ProbeConfig())
    assert info.has_audio and not info.has_video
    assert info.duration_s == pytest.approx(11.0, abs=0.01)


def test_scene_cuts_at_the_known_times(media_dir):
    path = media_dir / "face_recognition_short_hamilton_clip.mp4"
    info = probe_file(str(path), ProbeConfig())
    # The video stream starts 0.85 s after the audio: cut times must include that offset.
    assert info.video_start_s - info.audio_start_s == pytest.approx(0.84, abs=0.02)
    shots = detect_shots(str(path), info.duration_s, SceneConfig(), info.video_start_s - info.audio_start_s)
    cuts = [s for s, _ in shots[1:]]
    assert cuts == pytest.approx([1.5, 3.6, 7.9], abs=0.1)
    assert shots[0][0] == 0.0 and shots[-1][1] == pytest.approx(info.duration_s)


def test_single_shot_video(media_dir):
    path = media_dir / "videoretalking_face2.mp4"
    info = probe_file(str(path), ProbeConfig())
    assert len(detect_shots(str(path), info.duration_s, SceneConfig())) == 1
