"""More bad inputs, generated here: each is explained (a ledger row or a clear error), none crashes
the job, none vanishes. docs/robustness.md lists them with the outcome each test holds."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from pipeline.inputs import list_inputs
from pipeline.run import main
from pipeline.storage import OutputStore
from stages.audio import decode_audio
from stages.item import FileItem
from stages.probe import ProbeStage


def speech(media_dir: Path) -> tuple[np.ndarray, int]:
    x, sr = sf.read(media_dir / "f5tts_basic_ref_en.wav", dtype="float32")
    return x, sr


def write_av(path: Path, n_frames: int, audios: list[np.ndarray], sr: int, size=(64, 64), codec="mpeg4",
             pix_fmt="yuv420p") -> Path:
    """A video stream of ``n_frames`` grey frames (0: declared but empty) and one AAC stream per audio."""
    with av.open(str(path), "w") as c:
        v = c.add_stream(codec, rate=25)
        v.width, v.height = size
        v.pix_fmt = pix_fmt
        streams = []
        for _ in audios:
            a = c.add_stream("aac", rate=sr)
            a.layout = "mono"
            streams.append(a)
        for i in range(n_frames):
            f = av.VideoFrame.from_ndarray(np.full((size[1], size[0], 3), (i * 5) % 255, np.uint8), format="rgb24")
            f.pts = i
            for p in v.encode(f):
                c.mux(p)
        if n_frames:
            for p in v.encode():
                c.mux(p)
        for a, x in zip(streams, audios, strict=True):
            for i in range(0, len(x), 1024):
                fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[None, i:i + 1024]), format="fltp",
                                                layout="mono")
                fr.sample_rate, fr.pts = sr, i
                for p in a.encode(fr):
                    c.mux(p)
            for p in a.encode():
                c.mux(p)
    return path


def probe(path: Path) -> FileItem:
    item = FileItem(source_path=str(path))
    ProbeStage().process([item])
    return item


def test_a_huge_declared_frame_size_is_refused_before_decoding(media_dir, tmp_path):
    x, sr = speech(media_dir)
    path = write_av(tmp_path / "huge.mkv", 0, [x], sr, size=(16000, 16000), codec="rawvideo", pix_fmt="gray")
    (rej,) = probe(path).rejects
    assert (rej.reason, rej.value, rej.threshold) == ("too_large", 16000.0 * 16000, 8192.0 * 8192)
    assert "16000 x 16000" in rej.detail


def test_a_video_stream_without_frames_is_no_video(media_dir, tmp_path):
    x, sr = speech(media_dir)
    item = probe(write_av(tmp_path / "empty_video.mkv", 0, [x], sr))
    (rej,) = item.rejects
    assert rej.reason == "no_video" and "holds no frame" in rej.detail
    assert item.probe.empty_video_stream and not item.probe.has_video and item.probe.has_audio


def test_two_audio_streams_use_the_first_and_say_how_many(media_dir, tmp_path):
    x, sr = speech(media_dir)
    path = write_av(tmp_path / "two_audio.mkv", 100, [x, x[::-1].copy()], sr)
    item = probe(path)
    assert not item.rejects and item.probe.n_audio_streams == 2
    decoded = decode_audio(str(path)).samples
    n = min(len(decoded), len(x))
    assert np.corrcoef(decoded[:n], x[:n])[0, 1] > 0.99  # the first stream, not a mix of both


def test_nan_and_inf_samples_become_counted_silence_not_a_silent_file(media_dir, tmp_path):
    x, sr = speech(media_dir)
    x = x.copy()
    x[1000:1100] = np.nan
    x[5000] = np.inf
    sf.write(tmp_path / "nan.wav", x, sr, subtype="FLOAT")
    decoded = decode_audio(str(tmp_path / "nan.wav"))
    assert np.isfinite(decoded.samples).all() and decoded.non_finite == 101 and decoded.n_gaps == 2
    assert decoded.samples[1000:1100].max() == 0.0
    from stages.audio import StandardizeAudioStage

    item = FileItem(source_path=str(tmp_path / "nan.wav"))
    StandardizeAudioStage().process([item])
    assert not item.rejects and item.provenance["audio_gaps"]["non_finite_samples"] == 101
    assert item.loudness_lufs > -40  # real speech, not "silent" as when NaN poisoned the loudness
    y = x.copy()
    y[: len(y) // 5] = np.nan  # a fifth of the file: over audio.max_gap_frac
    sf.write(tmp_path / "mostly_nan.wav", y, sr, subtype="FLOAT")
    item = FileItem(source_path=str(tmp_path / "mostly_nan.wav"))
    StandardizeAudioStage().process([item])
    (rej,) = item.rejects
    assert rej.reason == "audio_gaps" and rej.value == pytest.approx(0.2, abs=0.01) and "NaN/Inf" in rej.detail


def test_a_symlink_loop_and_a_dangling_link_in_the_input_folder(media_dir, tmp_path):
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    shutil.copy(media_dir / "grid_bbaf2n.mpg", root / "a.mpg")
    os.symlink("..", root / "sub" / "up")  # a loop
    os.symlink(tmp_path / "gone.mp4", root / "dangling.mp4")
    found = {f.path: f.size_bytes for f in list_inputs(str(root))}
    assert found == {str(root / "a.mpg"): (root / "a.mpg").stat().st_size, str(root / "dangling.mp4"): -1}


def test_a_manifest_with_missing_and_repeated_paths(media_dir, tmp_path, capsys):
    shutil.copy(media_dir / "grid_bbaf2n.mpg", tmp_path / "a.mpg")
    manifest = tmp_path / "list.txt"
    manifest.write_text("a.mpg\na.mpg\nnot_here.mp4\n")
    out = tmp_path / "out"
    assert main(["--input", str(manifest), "--output", str(out), "--executor", "serial", "--no-progress"]) == 0
    store = OutputStore(str(out))
    sources = {r["source_path"].rsplit("/", 1)[-1]: r for r in store.read_table("sources").to_pylist()}
    assert set(sources) == {"a.mpg", "not_here.mp4"}  # the repeat is one input
    (missing,) = [r for r in store.read_table("rejects").to_pylist() if r["reason"] == "missing"]
    assert missing["source_path"].endswith("not_here.mp4")


def test_an_unreachable_s3_input_is_a_clear_error_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    env = {"AWS_EC2_METADATA_DISABLED": "true", "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        rc = main(["--input", "s3://omnitalker-no-such-bucket/in", "--output", str(out), "--executor", "serial",
                   "--no-progress"])
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    err = capsys.readouterr().err
    assert rc == 2 and "cannot list --input 's3://omnitalker-no-such-bucket/in'" in err and "AWS_ACCESS_KEY_ID" in err
    assert not out.exists()  # nothing written


def test_a_truncated_mkv_keeps_what_decodes_or_says_why(media_dir, tmp_path):
    """An mkv cut in half still opens (its index is at the front): the audio and frames before the cut
    decode, and probe reports the shorter duration. Nothing after the cut is invented."""
    src = media_dir / "videoretalking_face2.mp4"
    full = tmp_path / "full.mkv"
    with av.open(str(src)) as inp, av.open(str(full), "w") as out:
        streams = [s for s in inp.streams if s.type in ("video", "audio")]
        mapped = {s.index: out.add_stream_from_template(s) for s in streams}
        for pkt in inp.demux(streams):
            if pkt.dts is None:
                continue
            pkt.stream = mapped[pkt.stream.index]
            out.mux(pkt)
    cut = tmp_path / "truncated.mkv"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    item = probe(cut)
    assert not item.rejects and item.probe.has_video
    decoded = decode_audio(str(cut))
    whole = decode_audio(str(full))
    assert 0.3 * len(whole.samples) < len(decoded.samples) < 0.8 * len(whole.samples)
    n = len(decoded.samples)
    assert np.allclose(decoded.samples[: n // 2], whole.samples[: n // 2], atol=1e-4)



def test_audio_much_shorter_than_its_video(media_dir, tmp_path):
    """6 s of video over 1 s of audio: the audio's own length is what is decoded and measured (no
    invented samples), probe records both, and the file is explained (vad: too short for a clip)."""
    x, sr = speech(media_dir)
    path = write_av(tmp_path / "short_audio.mp4", 150, [x[:sr]], sr)
    out = tmp_path / "out"
    assert main(["--input", str(path), "--output", str(out), "--executor", "serial", "--no-progress"]) == 0
    store = OutputStore(str(out))
    (src,) = store.read_table("sources").to_pylist()
    assert src["status"] == "rejected" and src["duration_s"] == pytest.approx(1.0, abs=0.05)
    assert json.loads(src["probe"])["duration_s"] >= 5.9  # the container's (video) length
    reasons = {(r["stage"], r["reason"]) for r in store.read_table("rejects").to_pylist()}
    assert ("vad", "too_short") in reasons or ("vad", "no_speech") in reasons
