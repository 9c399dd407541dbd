"""VAD segmentation logic (pure functions) and the silero model on real speech."""

from __future__ import annotations

import numpy as np
import pytest

from stages.vad import FRAME_S, SILERO_ONNX, SileroVad, VadConfig, find_speech_regions, segment_speech


def probs_from(spans_s: list[tuple[float, float]], total_s: float) -> np.ndarray:
    p = np.full(int(total_s / FRAME_S), 0.05, np.float32)
    for a, b in spans_s:
        p[int(a / FRAME_S):int(b / FRAME_S)] = 0.95
    return p


def test_short_pauses_merge_long_pauses_split():
    cfg = VadConfig(merge_gap_s=0.5, pad_s=0.0, min_speech_s=0.1)
    p = probs_from([(1.0, 2.0), (2.3, 3.0), (4.5, 6.0)], 8.0)
    regions = find_speech_regions(p, cfg)
    assert len(regions) == 2
    assert regions[0][0] * FRAME_S == pytest.approx(1.0, abs=FRAME_S)
    assert regions[0][1] * FRAME_S == pytest.approx(3.0, abs=FRAME_S)


def test_clicks_are_ignored():
    cfg = VadConfig(min_speech_s=0.25)
    p = probs_from([(1.0, 1.1), (3.0, 5.0)], 6.0)
    assert len(find_speech_regions(p, cfg)) == 1


def test_segments_are_cut_at_shot_boundaries():
    cfg = VadConfig(pad_s=0.0)
    p = probs_from([(1.0, 6.0)], 8.0)
    segs = segment_speech(p, [(0.0, 3.5), (3.5, 8.0)], 8.0, cfg)
    assert [k for _, _, k in segs] == [0, 1]
    assert [s for s, _, _ in segs] == pytest.approx([1.0, 3.5], abs=FRAME_S)
    assert [e for _, e, _ in segs] == pytest.approx([3.5, 6.0], abs=FRAME_S)


def test_overlong_regions_split_at_quietest_window():
    cfg = VadConfig(pad_s=0.0, max_segment_s=10.0, min_segment_s=1.0)
    p = probs_from([(0.0, 25.0)], 25.0)
    p[int(7.0 / FRAME_S)] = 0.4  # a dip the splitter should choose (still above the hysteresis floor)
    p[int(16.0 / FRAME_S)] = 0.4
    segs = segment_speech(p, [(0.0, 25.0)], 25.0, cfg)
    assert all(e - s <= 10.0 + 1e-9 for s, e, _ in segs)
    assert segs[0][1] == pytest.approx(7.0 + FRAME_S / 2, abs=FRAME_S)
    assert segs[0][0] == 0.0 and segs[-1][1] == pytest.approx(25.0, abs=FRAME_S)


def test_silero_finds_speech_and_ignores_silence(media_dir):
    import soundfile as sf
    import soxr

    a, sr = sf.read(str(media_dir / "f5tts_basic_ref_en.wav"), dtype="float32", always_2d=True)
    a16 = soxr.resample(a.mean(1), sr, 16000)
    vad = SileroVad()
    probs = vad.compute_speech_probs(a16)
    assert len(probs) == int(np.ceil(len(a16) / 512))
    assert (probs > 0.5).mean() > 0.5
    assert (vad.compute_speech_probs(np.zeros(16000 * 2, np.float32)) < 0.2).all()
    assert SILERO_ONNX.version in vad.name
