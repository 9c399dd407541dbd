"""End to end on the shared media: shards, ledger, manifest, mel against a reference, idempotent re-run."""

from __future__ import annotations

import io
import json

import librosa
import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from pipeline.config import load_config
from pipeline.run import curate
from pipeline.storage import OutputStore
from shards.codes import EXPRESSION_NAMES, EXPRESSION_SLICE
from shards.schema import LEDGER_REASONS, SCHEMA_VERSION, SHARD_SCHEMA
from shards.spec import FRAME_RATE_TEXT
from stages.item import make_clip_id
from stages.mel import LogMel
from tests.conftest import REPO


def read(out, sub):
    return OutputStore(str(out)).read_table(sub)


def test_shards_have_schema_v2_and_metadata(curated_serial):
    parts = sorted((curated_serial / "shards").glob("part-*.parquet"))
    assert parts
    for p in parts:
        f = pq.ParquetFile(p)
        assert f.schema_arrow.remove_metadata() == SHARD_SCHEMA
        meta = f.schema_arrow.metadata
        assert int(meta[b"omnitalker.schema_version"]) == SCHEMA_VERSION
        assert meta[b"omnitalker.frame_rate"] == b"24000/256" == FRAME_RATE_TEXT.encode()
        spec = json.loads(meta[b"omnitalker.feature_spec"])
        assert spec["mel"]["n_mels"] == 100 and spec["mel"]["hop_length"] == 256
        assert spec["visual"]["dim"] == 61
        assert f.metadata.row_group(0).num_rows <= 32
        assert f.metadata.row_group(0).column(0).compression == "ZSTD"


def test_rows_equal_accepted_segments_in_manifest(curated_serial):
    manifest = json.loads((curated_serial / "manifest.json").read_text())
    shards = read(curated_serial, "shards")
    sources = read(curated_serial, "sources")
    assert shards.num_rows == manifest["clips"] == sum(sources.column("n_clips").to_pylist()) > 0
    # every file of the folder is an input: 10 media files, 3 photos and the 2 .tsv files (ledgered)
    assert manifest["inputs"] == sources.num_rows == 15
    assert manifest["frame_rate"] == "24000/256"
    assert manifest["hours_kept"] == pytest.approx(sum(shards.column("duration_s").to_pylist()) / 3600)
    assert manifest["versions"]["ray"] == "2.60.0"
    assert "vad" in manifest["models"] and "dnsmos" in manifest["models"]


def test_every_input_is_accounted_for(curated_serial, media_manifest):
    sources = read(curated_serial, "sources").to_pylist()
    rejects = read(curated_serial, "rejects").to_pylist()
    names = {r["source_path"].rsplit("/", 1)[-1] for r in sources}
    assert {r["file"] for r in media_manifest} | {"MANIFEST.tsv", "PROVENANCE.tsv"} == names
    unsupported = {r["source_path"].rsplit("/", 1)[-1] for r in rejects if r["reason"] == "unsupported_extension"}
    assert unsupported == {r["file"] for r in media_manifest if r["kind"] == "face_image"} | {
        "MANIFEST.tsv", "PROVENANCE.tsv"}  # listed, not skipped unsaid
    for s in sources:
        if s["n_clips"] == 0:
            mine = [r for r in rejects if r["source_path"] == s["source_path"]]
            assert mine, f"{s['source_path']} kept nothing and has no ledger row"
            assert all(r["stage"] and r["reason"] in LEDGER_REASONS for r in mine)
    for r in rejects:
        if r["reason"].startswith("low_dnsmos"):
            assert r["value"] < r["threshold"]
            assert r["end_s"] > r["start_s"]


def test_clip_rows_are_aligned_and_mel_matches_reference(curated_serial, media_manifest):
    rows = read(curated_serial, "shards").to_pylist()
    genuine = {r["file"] for r in media_manifest if r["genuine_sync"].startswith("yes")}
    assert len({r["source_path"].rsplit("/", 1)[-1] for r in rows} & genuine) >= 2
    for r in rows:
        audio, sr = sf.read(io.BytesIO(r["audio_flac"]), dtype="float32")
        assert sr == r["sample_rate"] == 24000
        assert len(audio) == r["end_sample"] - r["start_sample"]
        assert r["start_s"] == r["start_sample"] / 24000
        assert r["n_frames"] == 1 + len(audio) // 256 == len(r["mel"])
        assert r["clip_id"] == make_clip_id(r["source_sha256"], r["start_sample"], r["end_sample"])
        mel = np.asarray(r["mel"], np.float32)
        S = librosa.feature.melspectrogram(y=audio, sr=24000, n_fft=1024, hop_length=256, win_length=1024,
                                           n_mels=100, htk=True, norm=None, power=1.0, center=True,
                                           pad_mode="reflect")
        ref = np.log(np.maximum(S, 1e-7)).T
        # float32 STFTs differ by ~1e-6 absolute: compare magnitudes, and logs where energy is not tiny.
        assert np.allclose(np.exp(mel), np.exp(ref), rtol=1e-3, atol=1e-5), r["clip_id"]
        assert np.abs(mel - ref)[ref > -7].max() < 5e-3, r["clip_id"]  # librosa builds its filters in float32
        assert np.array_equal(mel, LogMel()(audio))  # exactly the decoded FLAC's mel
        assert r["dnsmos_ovrl"] >= 3.0
        # Text, speaker and fine segmentation (#4): a visible person speaking one clean sentence.
        assert r["text"] and r["text_model"] and r["language"] == "en" and r["text_source"] == "asr"
        assert 3.0 <= r["duration_s"] <= 30.0 and 4.0 <= r["chars_per_s"] <= 25.0
        assert r["words"] and all(r["start_s"] - 1e-6 <= w["start_s"] <= w["end_s"] <= r["end_s"] + 1e-6
                                  for w in r["words"])
        assert r["asd_score"] >= 0.3 and r["asd_scorer"].startswith("classical") and r["track_id"] is not None
        if r["source_path"].rsplit("/", 1)[-1] in genuine:  # known-genuine sync: offset within one video frame
            assert abs(r["av_offset_s"]) <= 0.04 and abs(r["av_shift_applied_s"]) <= 0.04, r["clip_id"]
        visual = np.asarray(r["visual"], np.float32)  # visual codes on the same 93.75 Hz grid as the mel
        assert visual.shape == (r["n_frames"], 61) and np.isfinite(visual).all()
        jaw = visual[:, EXPRESSION_SLICE.start + EXPRESSION_NAMES.index("jawOpen")]
        assert jaw.std() > 0.01, r["clip_id"]  # a talking face's jaw moves in its codes
        assert r["fit_rmse"] <= 0.05 and 0.0 < r["face_area_frac"] < 1.0
        assert len(r["mp_blendshapes"]) == pytest.approx(r["duration_s"] * 30, abs=2)
        boxes = np.asarray(r["face_boxes"], np.float32)  # v3: the speaker's box per 30 fps frame
        assert boxes.shape == (len(r["mp_blendshapes"]), 4)
        ok = np.isfinite(boxes).all(axis=1)
        assert ok.mean() >= 0.8 and (boxes[ok, 2] > boxes[ok, 0]).all() and (boxes[ok, 3] > boxes[ok, 1]).all()
        w, h = json.loads(r["provenance"])["visual"]["source_size_px"]
        area = np.median((boxes[ok, 2] - boxes[ok, 0]) * (boxes[ok, 3] - boxes[ok, 1])) / (w * h)
        # face_area_frac is the median over the source frames, the boxes are interpolated onto the 30 fps grid:
        # the two medians agree to a fraction of a percent (measured: within 0.12 %), a wrong scale or face would not
        assert area == pytest.approx(r["face_area_frac"], rel=5e-3)
        prov = json.loads(r["provenance"])
        for stage in ("vad", "diarize", "asr", "dnsmos", "faces", "asd", "visual"):
            assert stage in prov["models"], stage
        assert "diarize" not in prov["skipped"]  # offline: GE2E voice clustering (no pyannote weights)
        assert prov["models"]["diarize"].startswith("voice-clustering:") and r["speaker"] == "spk0"
        voice = np.asarray(r["voice_embedding"], np.float32)  # v5: the clip's voice, unit length
        assert voice.shape == (256,) and abs(float(np.linalg.norm(voice)) - 1.0) < 1e-4


def test_talking_videos_give_clips_and_every_drop_is_explained(curated_serial, media_manifest):
    rows = read(curated_serial, "shards").to_pylist()
    talking = {r["file"] for r in media_manifest if r["kind"] == "talking_video"}
    kept_from = {r["source_path"].rsplit("/", 1)[-1] for r in rows}
    assert len(kept_from & talking) >= 3 and kept_from <= talking
    rejects = read(curated_serial, "rejects").to_pylist()
    for name in talking - kept_from:  # a talking video without clips says why, stage by stage
        reasons = {(r["stage"], r["reason"]) for r in rejects if r["source_path"].endswith(name)}
        assert reasons, name
    # Audio-only inputs are out at probe: every clip needs a visible speaker.
    for r in media_manifest:
        if r["kind"] == "speech":
            (row,) = [x for x in rejects if x["source_path"].endswith(r["file"])]
            assert (row["stage"], row["reason"]) == ("probe", "no_video")


def test_scene_cut_clip_is_rejected_with_reasons(curated_serial):
    sources = {r["source_path"].rsplit("/", 1)[-1]: r for r in read(curated_serial, "sources").to_pylist()}
    hamilton = sources["face_recognition_short_hamilton_clip.mp4"]
    assert json.loads(hamilton["provenance"])["models"]["scene"].startswith("scenedetect")
    rejects = [r for r in read(curated_serial, "rejects").to_pylist() if r["source_path"].endswith("hamilton_clip.mp4")]
    segs = [r for r in rejects if r["start_s"] is not None]
    assert hamilton["kept_s"] <= 0.25 * hamilton["duration_s"]  # rap over piano, several people: mostly out
    assert sum(r["duration_s"] for r in segs) >= 0.5 * hamilton["duration_s"]
    assert all(r["value"] is not None for r in segs if r["reason"] != "language_not_allowed")


def test_languages_are_identified_and_filtered(curated_serial):
    """#13: every clip carries whisper base's language probability; the Portuguese video is ledgered as such."""
    rows = read(curated_serial, "shards").to_pylist()
    assert all(r["language"] == "en" and 0.5 <= r["language_prob"] <= 1.0 for r in rows)
    assert all(json.loads(r["provenance"])["asr"]["asr_model"] == "tiny.en" for r in rows)
    rejects = read(curated_serial, "rejects").to_pylist()
    pt = [r for r in rejects if r["source_path"].endswith("latentsync_demo2_video.mp4") and r["stage"] == "segment"
          and r["start_s"] is not None]  # its clips (the file-level all_segments_rejected row aside)
    assert pt and all(r["reason"] == "language_not_allowed" and 0.0 < r["value"] <= 1.0 for r in pt)
    assert not any(r["source_path"].endswith("latentsync_demo2_video.mp4") for r in rows)


def test_rerun_adds_nothing(curated_serial, media_dir):
    before = {p.name: p.stat().st_mtime_ns for p in curated_serial.rglob("part-*.parquet")}
    clips_before = sorted(read(curated_serial, "shards").column("clip_id").to_pylist())
    manifest = curate(str(media_dir), str(curated_serial), load_config(REPO / "configs" / "curate.yaml"),
                      executor="serial", show_progress=False)
    after = {p.name: p.stat().st_mtime_ns for p in curated_serial.rglob("part-*.parquet")}
    assert after == before  # no part rewritten, none added
    assert sorted(read(curated_serial, "shards").column("clip_id").to_pylist()) == clips_before
    assert manifest["runs"][-1]["new_files"] == 0 and manifest["runs"][-1]["skipped_done"] == 15
