"""``omnitalker render`` (inference.render.main): codes mode, drive mode, errors; codes resampling; mp4 I/O.

Real media from ../shared/data/media, MediaPipe for real; nothing is mocked.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from inference.codes_io import CodeTrack, load_codes_file, resample_codes
from inference.render import main
from inference.video_io import read_audio, write_mp4
from tests.conftest import MEDIA

PHOTO = MEDIA / "sadtalker_people_0.png"
DRIVER = MEDIA / "sadtalker_WDA_KatieHill_000.mp4"


def probe_mp4(path: Path) -> tuple[int, tuple[int, int], float, float]:
    """(video frames, (w, h), video seconds, audio seconds) of an mp4."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = sum(1 for _ in c.decode(v))
        size = (v.codec_context.width, v.codec_context.height)
        vdur = float(frames / v.average_rate)
    audio = read_audio(path) if av.open(str(path)).streams.audio else np.zeros(0)
    return frames, size, vdur, audio.size / 24000


def test_resample_codes_uses_mel_timestamps() -> None:
    n = 188  # 2.005 s at 93.75 Hz
    codes = np.zeros((n, 61), np.float32)
    codes[:, 0] = np.arange(n) / 1000.0  # row k -> k / 1000
    codes[:, 52] = np.angle(np.exp(1j * 0.05 * np.arange(n)))  # wrapped yaw ramp
    out = resample_codes(CodeTrack(codes, Fraction(24000, 256)), 25.0)
    assert out.shape == (51, 61)  # ceil(2.00533 * 25)
    k = np.arange(51) * 93.75 / 25  # output frame i at i / 25 s = mel row i * 3.75
    np.testing.assert_allclose(out[:, 0], np.minimum(k, n - 1) / 1000.0, atol=1e-6)
    np.testing.assert_allclose(out[:50, 52], 0.05 * k[:50], atol=1e-4)  # unwrapped, no jump at +-pi


def test_load_codes_file_reads_generator_npz(tmp_path: Path) -> None:
    npz = tmp_path / "gen.npz"
    np.savez(npz, mel=np.zeros((10, 100)), codes=np.ones((10, 61)), frame_rate=np.array("24000/256"))
    track = load_codes_file(npz)
    assert track.rate_hz == Fraction(375, 4) and track.codes.shape == (10, 61)
    np.save(tmp_path / "bad.npy", np.ones((10, 60)))
    with pytest.raises(ValueError, match="61"):
        load_codes_file(tmp_path / "bad.npy")


def test_write_mp4_muxes_audio(tmp_path: Path) -> None:
    frames = [np.full((64, 64, 3), i * 10, np.uint8) for i in range(20)]
    audio = 0.3 * np.sin(2 * np.pi * 440 * np.arange(19200) / 24000).astype(np.float32)
    out = tmp_path / "a.mp4"
    assert write_mp4(out, frames, 25.0, audio) == 20
    n, size, vdur, adur = probe_mp4(out)
    assert (n, size) == (20, (64, 64)) and vdur == pytest.approx(0.8) and adur == pytest.approx(0.8, abs=0.05)


def test_render_codes_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    n = 150  # 1.6 s at 93.75 Hz
    codes = np.zeros((n, 61), np.float32)
    codes[:, 24] = 0.4 * (1 - np.cos(np.linspace(0, 4 * np.pi, n)))  # jawOpen
    codes[:, 52] = 0.2 * np.sin(np.linspace(0, 2 * np.pi, n))  # yaw, rad
    codes[:, 56] = 3.5
    npz = tmp_path / "gen.npz"
    np.savez(npz, codes=codes, frame_rate=np.array("24000/256"))
    wav = tmp_path / "gen.wav"
    sf.write(wav, (0.2 * np.sin(np.arange(48000) / 10)).astype(np.float32), 24000)  # 2 s, longer than the codes
    out = tmp_path / "out.mp4"
    rc = main(["--ref", str(PHOTO), "--codes", str(npz), "--audio", str(wav), "--out", str(out), "--size", "256"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    frames, size, vdur, adur = probe_mp4(out)
    assert frames == summary["frames"] == 40 and size == (256, 256)  # ceil(1.6 s * 25)
    assert adur == pytest.approx(1.6, abs=0.05)  # audio cut to the video
    with av.open(str(out)) as c:
        imgs = [f.to_ndarray(format="rgb24").astype(np.float64) for f in c.decode(video=0)]
    assert np.abs(imgs[10] - imgs[0]).mean() > 1.0  # the face moves


def test_render_drive_mode_keeps_driver_audio(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "drive.mp4"
    rc = main(["--ref", str(PHOTO), "--drive", str(DRIVER), "--out", str(out), "--max-seconds", "1", "--fps", "25"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    frames, size, _vdur, adur = probe_mp4(out)
    assert frames == summary["frames"] == 25 and size == (256, 256)
    src = read_audio(DRIVER, 24000, 0.0, 1.0)
    got = read_audio(out)[: src.size]
    assert adur == pytest.approx(1.0, abs=0.05)
    assert np.corrcoef(src[2400:21600], got[2400:21600])[0, 1] > 0.8  # the driver's own audio


@pytest.mark.parametrize("argv, message", [
    (["--ref", "/nonexistent.png", "--codes", "x.npz", "--out", "o.mp4"], "no such file"),
    (["--ref", str(PHOTO), "--drive", str(DRIVER), "--out", "o.mp4", "--renderer", "learned"], "--ckpt"),
])
def test_render_errors_are_clear(argv: list[str], message: str, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    argv = [a if a != "o.mp4" else str(tmp_path / a) for a in argv]
    assert main(argv) == 2
    assert message in json.loads(capsys.readouterr().err.strip().splitlines()[-1])["error"]
