"""The offline voice models on real speech: GE2E embeddings, diarization by clustering, voice-over.

Real weights: resemblyzer's pretrained.pt (sha256-pinned, ``stages/voice.py``); real speech from
../shared/data (the quick corpus and the talking clips). Two speakers are made by cutting one
clip's speech straight into another's, inside continuous speech, so the change point is known.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shards.spec import AUDIO_SR
from stages.audio import AudioConfig, decode_mono, standardize
from stages.diarize import DiarizeConfig, DiarizeStage
from stages.item import MODEL_SR, FileItem, Segment
from stages.models import ModelNotFound, PackagedModel
from stages.vad import VadSegmentStage
from stages.voice import GE2E_WEIGHTS, VoiceEncoder
from stages.voiceover import VoiceoverConfig, VoiceoverStage

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
# (file, start_s, end_s) stretches of continuous speech (one VAD region each, checked by eye and by VAD)
CNN = ("talking/dfrf_cnn2_25fps.mp4", 0.5, 10.0)  # a news presenter
TED = ("talking/edtalk_pose_source2_TedLieu.mp4", 0.5, 5.5)  # a congressman
JFK = ("media/whisper_jfk.flac", 5.3, 10.6)  # JFK (with a short pause)


@pytest.fixture(scope="module")
def encoder() -> VoiceEncoder:
    return VoiceEncoder()


@pytest.fixture(scope="module")
def speech() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """file -> (24 kHz, 16 kHz) standardized audio of the whole file."""
    out = {}
    for name in {CNN[0], TED[0], JFK[0]}:
        samples, rate, _ = decode_mono(str(SHARED / name))
        a24, a16, _, _ = standardize(samples, rate, AudioConfig())
        out[name] = (a24, a16)
    return out


def cut(speech, part: tuple[str, float, float]) -> tuple[np.ndarray, np.ndarray]:
    a24, a16 = speech[part[0]]
    return (a24[int(part[1] * AUDIO_SR):int(part[2] * AUDIO_SR)], a16[int(part[1] * MODEL_SR):int(part[2] * MODEL_SR)])


def splice(speech, parts: list[tuple[str, float, float]]) -> tuple[FileItem, list[float]]:
    """One item of the parts cut straight together, and the seconds where each later part starts."""
    pieces = [cut(speech, p) for p in parts]
    a24 = np.concatenate([p[0] for p in pieces])
    a16 = np.concatenate([p[1] for p in pieces])
    starts = np.cumsum([len(p[1]) / MODEL_SR for p in pieces])[:-1].tolist()
    return FileItem(source_path="spliced.wav", audio_24k=a24, audio_16k=a16), starts


def test_packaged_weights_are_pinned_and_a_missing_package_says_what_to_install(monkeypatch) -> None:
    assert GE2E_WEIGHTS.pip_spec == "resemblyzer==0.1.4" and len(GE2E_WEIGHTS.sha256) == 64
    import stages.voice as voice

    ghost = PackagedModel("no-such-dist-omnitalker", "1.0", "x/pretrained.pt", "0" * 64, "diarize.voice_model_path")
    monkeypatch.setattr(voice, "GE2E_WEIGHTS", ghost)
    with pytest.raises(ModelNotFound, match=r"pip install no-such-dist-omnitalker==1.0.*diarize.voice_model_path"):
        voice.VoiceEncoder()
    with pytest.raises(ModelNotFound, match="does not exist"):
        voice.VoiceEncoder(model_path="/nonexistent/pretrained.pt")


def test_embeddings_tell_the_same_voice_from_another(encoder, speech) -> None:
    cnn_a = encoder.embed_utterance(cut(speech, ("talking/dfrf_cnn2_25fps.mp4", 0.5, 5.0))[1])
    cnn_b = encoder.embed_utterance(cut(speech, ("talking/dfrf_cnn2_25fps.mp4", 5.0, 10.0))[1])
    ted = encoder.embed_utterance(cut(speech, TED)[1])
    jfk = encoder.embed_utterance(cut(speech, JFK)[1])
    for e in (cnn_a, cnn_b, ted, jfk):
        assert e.shape == (256,) and abs(float(np.linalg.norm(e)) - 1.0) < 1e-5
    same = float(cnn_a @ cnn_b)
    others = [float(cnn_a @ ted), float(cnn_a @ jfk), float(ted @ jfk)]
    # Measured: same 0.88; others 0.57-0.71 (the presenter and the congressman, two American men,
    # are the closest pair: GE2E separates voices, but similar ones only by a margin).
    assert same > 0.8 and same - max(others) > 0.15, (same, others)


@pytest.mark.parametrize("first,second", [(CNN, TED), (TED, JFK), (JFK, CNN)], ids=["cnn-ted", "ted-jfk", "jfk-cnn"])
def test_two_speakers_spliced_give_two_speakers_and_the_change_within_half_a_second(speech, first, second) -> None:
    item, (change_s,) = splice(speech, [first, second])
    VadSegmentStage().process([item])
    spans = [(s.start_s, s.end_s) for s in item.segments]
    DiarizeStage(cfg=DiarizeConfig(backend="voice", mode="split")).process([item])
    assert item.provenance["diarize_speakers"] == 2, spans
    by_speaker: dict[str, float] = {}
    for s in item.segments:
        by_speaker[s.speaker] = by_speaker.get(s.speaker, 0.0) + s.duration_s
    assert len(by_speaker) == 2
    # The change: the boundary between the last piece of one speaker and the first of the other.
    bounds = [b.start_s for a, b in zip(item.segments[:-1], item.segments[1:], strict=True) if a.speaker != b.speaker]
    inside = any(s < change_s < e for s, e in spans)  # the cut falls inside one VAD region: a real change point
    if inside:
        assert bounds and min(abs(b - change_s) for b in bounds) <= 0.5, (bounds, change_s)
    first_piece = [s for s in item.segments if s.end_s <= change_s + 0.5]
    assert first_piece and len({s.speaker for s in first_piece}) == 1


def test_a_two_speaker_segment_is_rejected_in_reject_mode(speech) -> None:
    item, (change_s,) = splice(speech, [CNN, TED])
    item.segments = [Segment(start_sample=0, end_sample=len(item.audio_24k))]
    DiarizeStage(cfg=DiarizeConfig(backend="voice")).process([item])
    assert not item.segments
    (rej,) = item.rejects
    assert rej.reason == "multi_speaker" and rej.value >= 4.0 and rej.threshold == 0.5


@pytest.mark.parametrize("part", [("talking/dfrf_cnn2_25fps.mp4", 0.0, 60.0), ("talking/edtalk_pose_source2_TedLieu.mp4", 0.0, 59.9)],
                         ids=["cnn-60s", "ted-60s"])
def test_one_speaker_stays_one_speaker(speech, part) -> None:
    item, _ = splice(speech, [part])
    VadSegmentStage().process([item])
    n = len(item.segments)
    DiarizeStage(cfg=DiarizeConfig(backend="voice")).process([item])
    assert item.provenance["diarize_speakers"] == 1 and len(item.segments) == n
    assert {s.speaker for s in item.segments} == {"spk0"}
    assert item.voice_windows is not None and len(item.voice_windows.centres_s) >= 30


def test_a_clip_in_another_voice_on_the_same_face_is_ledgered_as_voice_over(speech) -> None:
    """Three clips on one face track: the presenter, a different voice, the presenter again."""
    item, starts = splice(speech, [("talking/dfrf_cnn2_25fps.mp4", 0.5, 5.0), JFK,
                                   ("talking/dfrf_cnn2_25fps.mp4", 5.0, 10.0)])
    bounds = [0.0, *starts, len(item.audio_16k) / MODEL_SR]
    item.segments = [Segment(int(round(a * AUDIO_SR)), int(round(b * AUDIO_SR)), track_id=0)
                     for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    stage = VoiceoverStage()
    stage.process([item])  # no diarizer ran: the stage embeds the clips itself
    assert item.provenance["models"]["voiceover"].startswith("ge2e-resemblyzer-0.1.4@")
    assert [round(s.start_s, 2) for s in item.segments] == [0.0, round(starts[1], 2)]
    (rej,) = item.rejects
    assert rej.stage == "voiceover" and rej.reason == "voice_mismatch"
    assert rej.value < rej.threshold == VoiceoverConfig().min_track_voice_cos
    assert rej.start_s == pytest.approx(starts[0], abs=1e-3)
    for s in item.segments:
        assert s.voice_track_cos is not None and s.voice_track_cos >= VoiceoverConfig().min_track_voice_cos
        assert s.voice_embedding.shape == (256,)


def test_clips_of_different_tracks_are_not_compared(speech) -> None:
    item, starts = splice(speech, [CNN, TED])
    bounds = [0.0, *starts, len(item.audio_16k) / MODEL_SR]
    item.segments = [Segment(int(round(a * AUDIO_SR)), int(round(b * AUDIO_SR)), track_id=k)
                     for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))]
    VoiceoverStage().process([item])
    assert len(item.segments) == 2 and not item.rejects
    assert all(s.voice_track_cos is None and s.voice_embedding is not None for s in item.segments)


def test_entry_points_print_what_the_voice_model_decided(capsys) -> None:
    import json

    from stages.diarize import main as diarize_main
    from stages.voiceover import main as voiceover_main

    diarize_main([str(SHARED / JFK[0]), "--backend", "voice"])
    out = json.loads(capsys.readouterr().out)
    assert out["provenance"]["models"]["diarize"].startswith("voice-clustering:ge2e")
    assert [s["speaker"] for s in out["speakers"]] == ["spk0"] and out["speakers"][0]["speech_s"] > 5.0
    assert out["segments"] and all(s["speaker"] == "spk0" for s in out["segments"])
    voiceover_main([str(SHARED / JFK[0])])
    out = json.loads(capsys.readouterr().out)
    assert len(out["clips"]) >= 2 and all(c["decision"] == "keep" and c["voice_track_cos"] > 0.7 for c in out["clips"])
