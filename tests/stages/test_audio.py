"""audio: frames placed at their pts, so a span of missing packets becomes silence in place (never a shift)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from stages.audio import AudioConfig, StandardizeAudioStage, decode_audio
from stages.item import FileItem

RATE = 48000
CLICK_S = 2.0  # a click after the dropped span
DROP_S = (1.0, 1.5)  # packets starting in this span are not written


def write_audio_with_dropped_packets(path: Path, seconds: float = 3.0, drop_s: tuple[float, float] | None = DROP_S
                                     ) -> Path:
    """AAC in mp4: a quiet tone, a click at CLICK_S, and (optionally) the packets of ``drop_s`` left out."""
    t = np.arange(int(seconds * RATE)) / RATE
    audio = (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    k = int(CLICK_S * RATE)
    audio[k:k + 48] = 0.9
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=RATE)
        stream.layout = "mono"
        tb = None
        packets = []
        for start in range(0, len(audio), 1024):
            frame = av.AudioFrame.from_ndarray(audio[None, start:start + 1024], format="flt", layout="mono")
            frame.sample_rate = RATE
            frame.pts = start
            packets += stream.encode(frame)
        packets += stream.encode()
        for p in packets:
            tb = tb or p.time_base
            if drop_s is not None and p.pts is not None and drop_s[0] <= float(p.pts * p.time_base) < drop_s[1]:
                continue
            out.mux(p)
    return path


def onset_s(audio: np.ndarray, rate: int, level: float = 0.5) -> float:
    return int(np.flatnonzero(np.abs(audio) > level * np.abs(audio).max())[0]) / rate


def test_missing_packets_become_silence_in_place(tmp_path):
    whole = decode_audio(str(write_audio_with_dropped_packets(tmp_path / "whole.mp4", drop_s=None)))
    holed = decode_audio(str(write_audio_with_dropped_packets(tmp_path / "holed.mp4")))
    assert whole.n_gaps == 0 and holed.n_gaps == 1
    assert holed.gap_s == pytest.approx(DROP_S[1] - DROP_S[0], abs=1024 / RATE)
    # The click stays where it was recorded: nothing after the gap moved earlier.
    assert onset_s(holed.samples, RATE) == pytest.approx(onset_s(whole.samples, RATE), abs=1e-4)
    assert onset_s(holed.samples, RATE) == pytest.approx(CLICK_S, abs=2e-3)
    assert len(holed.samples) == pytest.approx(len(whole.samples), abs=1024)
    gap = holed.samples[int(1.05 * RATE):int(1.45 * RATE)]
    assert not gap.any()


def test_stage_rejects_too_much_filled_audio_and_keeps_the_time_base(tmp_path):
    path = str(write_audio_with_dropped_packets(tmp_path / "holed.mp4"))
    item = FileItem(source_path=path)
    StandardizeAudioStage().process_item(item)
    [rej] = item.rejects
    assert (rej.stage, rej.reason, rej.threshold) == ("audio", "audio_gaps", 0.05)
    assert rej.value == pytest.approx(0.5 / 3.0, abs=0.02)

    item = FileItem(source_path=path)
    StandardizeAudioStage(cfg=AudioConfig(max_gap_frac=0.5)).process_item(item)
    assert not item.rejects and item.provenance["audio_gaps"]["n"] == 1
    assert onset_s(item.audio_24k, 24000) == pytest.approx(CLICK_S, abs=2e-3)
