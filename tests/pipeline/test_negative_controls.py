"""Negative controls through the whole job: voice-over and off-screen speech are rejected by ASD.

Both inputs are a shared face photo under English speech (JFK): looped still (voice-over) and
moved by an affine jitter so the head moves but the mouth does not (off-screen speaker). The
1961 recording scores DNSMOS OVRL 2.77, so the DNSMOS filter is off here to make sure it is
ASD that rejects them. Nothing is mocked.
"""

from __future__ import annotations

import json

import pytest

from pipeline.config import load_config
from pipeline.run import curate
from pipeline.storage import OutputStore
from tests.conftest import MEDIA, load_speech
from tests.stages.asd_fixtures import write_photo_video


@pytest.fixture(scope="module")
def controls(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("controls")
    inputs = root / "in"
    inputs.mkdir()
    speech, sr = load_speech("whisper_jfk.flac")
    write_photo_video(inputs / "voice_over.mp4", MEDIA / "face_recognition_obama.jpg", speech, sr,
                      len(speech) / sr, motion="still")
    write_photo_video(inputs / "off_screen.mp4", MEDIA / "face_recognition_obama.jpg", speech, sr,
                      len(speech) / sr, motion="jitter")
    out = root / "out"
    cfg = load_config(None, ["dnsmos.min_dnsmos_ovrl=0", "segment.min_clip_s=2.0"])
    manifest = curate(str(inputs), str(out), cfg, executor="serial", show_progress=False)
    return out, manifest


def test_voice_over_and_off_screen_speech_are_rejected_by_asd(controls):
    out, manifest = controls
    store = OutputStore(str(out))
    assert manifest["clips"] == 0
    rejects = store.read_table("rejects").to_pylist()
    by_file: dict[str, set[tuple[str, str]]] = {}
    for r in rejects:
        if r["start_s"] is not None:
            by_file.setdefault(r["source_path"].rsplit("/", 1)[-1], set()).add((r["stage"], r["reason"]))
    # The segments reached ASD (speech, text, a face track) and ASD said why they are out.
    assert by_file["voice_over.mp4"] == {("asd", "voice_over")}
    assert by_file["off_screen.mp4"] == {("asd", "off_screen_speaker")}
    sources = {r["source_path"].rsplit("/", 1)[-1]: r for r in store.read_table("sources").to_pylist()}
    for name in ("voice_over.mp4", "off_screen.mp4"):
        prov = json.loads(sources[name]["provenance"])
        assert {"asr", "faces", "asd"} <= set(prov["models"])
