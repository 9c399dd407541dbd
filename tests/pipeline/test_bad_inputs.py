"""Bad and unusual inputs: each yields clips or a ledger row with a clear reason; the job never stops."""

from __future__ import annotations

import json

import pytest

from pipeline.config import load_config
from pipeline.run import curate
from pipeline.storage import OutputStore


@pytest.fixture(scope="module")
def odd_run(odd_inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("odd_out")
    # Generated speech is re-encoded (8 kHz, AAC): judge it for being odd, not for studio quality.
    # Most odd inputs are audio-only: let them through probe to exercise the audio path
    # (with the default probe.require_video they are ledgered as no_video; see test_curate_e2e).
    cfg = load_config(None, ["dnsmos.min_dnsmos_ovrl=2.0", "run.files_per_shard=4", "probe.require_video=false"])
    manifest = curate(str(odd_inputs["_manifest"]), str(out), cfg, executor="serial", show_progress=False)
    store = OutputStore(str(out))
    sources = {r["source_path"]: r for r in store.read_table("sources").to_pylist()}
    rejects = store.read_table("rejects").to_pylist()
    shards = store.read_table("shards").to_pylist()
    return odd_inputs, manifest, sources, rejects, shards


def file_rejects(rejects, path):
    return [(r["stage"], r["reason"]) for r in rejects if r["source_path"] == str(path) and r["start_s"] is None]


def test_every_input_has_a_sources_row(odd_run):
    files, manifest, sources, _, _ = odd_run
    expected = {str(p) for k, p in files.items() if not k.startswith("_")}
    assert set(sources) == expected
    assert manifest["inputs"] == len(expected)


@pytest.mark.parametrize("key, stage, reason", [
    ("zero_byte", "probe", "empty_file"),
    ("text_as_mp4", "probe", "unreadable"),
    ("no_audio", "probe", "no_audio"),
    ("silence", "audio", "silent"),
])
def test_bad_file_is_ledgered_with_reason(odd_run, key, stage, reason):
    files, _, sources, rejects, _ = odd_run
    assert (stage, reason) in file_rejects(rejects, files[key])
    assert sources[str(files[key])]["status"] == "rejected"


def test_white_noise_keeps_nothing_and_says_why(odd_run):
    files, _, sources, rejects, _ = odd_run
    path = str(files["noise"])
    assert sources[path]["n_clips"] == 0
    reasons = {r["reason"] for r in rejects if r["source_path"] == path}
    assert reasons & {"no_speech", "low_dnsmos_ovrl", "all_segments_rejected"}


def test_truncated_mp4_is_explained(odd_run):
    """The first third of an mp4 whose index (moov) sits at the end: nothing to salvage, and the
    ledger says why with the decoder's own words and the file's size."""
    files, _, sources, rejects, shards = odd_run
    path = str(files["truncated"])
    assert not [s for s in shards if s["source_path"] == path]
    (row,) = [r for r in rejects if r["source_path"] == path]
    assert (row["stage"], row["reason"]) == ("probe", "unreadable")
    assert row["value"] == files["truncated"].stat().st_size and "InvalidDataError" in row["detail"]
    assert sources[path]["status"] == "rejected"


@pytest.mark.parametrize("key", ["rate_8k", "surround_5_1", "odd_path", "vfr_generated", "vfr_shared"])
def test_unusual_but_valid_inputs_give_clips(odd_run, key):
    files, _, sources, rejects, shards = odd_run
    path = str(files[key])
    assert not any(r["stage"] in ("probe", "audio") for r in rejects if r["source_path"] == path)
    clips = [s for s in shards if s["source_path"] == path]
    assert clips, f"{key}: no clips; ledger says {[(r['stage'], r['reason'], r['value']) for r in rejects if r['source_path'] == path]}"
    for c in clips:
        assert c["n_frames"] == len(c["mel"]) == 1 + (c["end_sample"] - c["start_sample"]) // 256


def test_original_rate_and_channels_are_recorded(odd_run):
    files, _, sources, _, _ = odd_run
    low = sources[str(files["rate_8k"])]
    assert json.loads(low["probe"])["audio_sample_rate"] == 8000
    assert json.loads(low["provenance"])["audio"]["source_rate_hz"] == 8000
    surround = json.loads(sources[str(files["surround_5_1"])]["probe"])
    assert surround["audio_channels"] == 6


def test_generated_vfr_video_is_detected(odd_run):
    files, _, sources, _, _ = odd_run
    assert json.loads(sources[str(files["vfr_generated"])]["probe"])["variable_frame_rate"]
    assert json.loads(sources[str(files["vfr_shared"])]["probe"])["variable_frame_rate"]
