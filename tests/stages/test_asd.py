"""ASD: the decision logic on synthetic tracks, and negative controls / true talkers on real media.

Real tracks come from the MediaPipe landmarker at 25 Hz over short slices of
../shared/data/media (tests/stages/asd_fixtures.py). Nothing is mocked.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from shards.spec import AUDIO_SR
from stages.asd import AsdConfig, AsdResult, AsdStage, TrackMotion, decide, measure_track_motion
from stages.asd_classical import ClassicalScorer
from stages.item import FaceTrack, FileItem, Segment
from tests.stages.asd_fixtures import load_file_item, write_photo_video

FPS = 25.0


def make_track(mouth: np.ndarray, track_id: int = 0, shot: int = 0, t0: float = 0.0, jitter_px: float = 0.0
               ) -> FaceTrack:
    n = len(mouth)
    t = t0 + np.arange(n) / FPS
    boxes = np.tile(np.array([100, 100, 200, 220], np.float32), (n, 1))
    boxes[:, [0, 2]] += (jitter_px * np.sin(np.arange(n) / 3.0))[:, None].astype(np.float32)
    return FaceTrack(track_id=track_id, shot_index=shot, times_s=t, boxes=boxes, scores=np.ones(n, np.float32),
                     mouth_open=mouth.astype(np.float32), yaw_deg=np.zeros(n, np.float32), frame_w=320, frame_h=320)


def syllable_audio(seconds: float, rate_hz: float = 4.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """16 kHz noise bursts with an irregular syllable envelope, and that envelope at 25 Hz."""
    rng = np.random.default_rng(seed)
    n25 = int(seconds * FPS)
    env25 = np.clip(np.convolve(rng.random(n25) > 0.6, np.ones(4) / 4, "same"), 0, 1)
    env16 = np.repeat(env25, 640)
    audio = (rng.standard_normal(len(env16)) * (0.01 + 0.3 * env16)).astype(np.float32)
    return audio, env25


def test_classical_scorer_finds_sync_and_lag():
    audio, env = syllable_audio(4.0)
    lag_frames = 2  # the mouth follows the audio 80 ms late: video lags audio
    mouth = 0.05 + 0.3 * np.concatenate([np.zeros(lag_frames), env[:-lag_frames]])
    vad = np.ones(len(audio) // 512 + 1, np.float32)
    res = ClassicalScorer().score(make_track(mouth), audio, 0.0, vad, 0.5, 3.5)
    assert res.detail["sync"] > 0.3
    # syllable k of the audio spans [k, k + 1) / 25 s, i.e. it is centred 20 ms after mouth frame k
    assert res.lag_s == pytest.approx(0.08 - 0.02, abs=0.021)
    assert res.score > 0.7
    other = np.random.default_rng(5).permutation(mouth)
    assert ClassicalScorer().score(make_track(other), audio, 0.0, vad, 0.5, 3.5).score < res.score
    still = ClassicalScorer().score(make_track(np.full(100, 0.05)), audio, 0.0, vad, 0.5, 3.5)
    assert still.score < 0.05


def cand(score: float, mouth: float, head: float, tid: int = 0):
    return (make_track(np.zeros(10), tid), AsdResult(score, 0.0), TrackMotion(mouth, head, 1.0))


def test_decide_reasons():
    cfg = AsdConfig()
    assert decide([cand(0.7, 0.2, 0.05)], cfg, cfg.min_asd_score)[1] is None
    assert decide([cand(0.01, 0.002, 0.003)], cfg, cfg.min_asd_score)[1] == "voice_over"
    assert decide([cand(0.05, 0.01, 0.2)], cfg, cfg.min_asd_score)[1] == "off_screen_speaker"
    assert decide([cand(0.2, 0.2, 0.05)], cfg, cfg.min_asd_score)[1] == "asd_low"
    best, reason, value, *_ = decide([cand(0.6, 0.2, 0.05, 0), cand(0.65, 0.2, 0.05, 1)], cfg, cfg.min_asd_score)
    assert (best, reason, value) == (1, "asd_ambiguous", pytest.approx(0.05))
    assert decide([cand(0.4, 0.2, 0.05, 0), cand(0.75, 0.2, 0.05, 1)], cfg, cfg.min_asd_score)[:2] == (1, None)


def test_track_motion_separates_still_jittered_and_talking():
    still = measure_track_motion(make_track(np.full(75, 0.1)), 0, 3, None, FPS)
    moving = measure_track_motion(make_track(np.full(75, 0.1), jitter_px=15), 0, 3, None, FPS)
    talking = measure_track_motion(make_track(0.1 + 0.2 * np.abs(np.sin(np.arange(75) / 2))), 0, 3, None, FPS)
    cfg = AsdConfig()
    assert still.head_motion < cfg.min_head_motion < moving.head_motion
    assert max(still.mouth_motion, moving.mouth_motion) < cfg.min_mouth_motion < talking.mouth_motion


def synthetic_item(tracks: list[FaceTrack], seconds: float = 4.0) -> FileItem:
    audio, _ = syllable_audio(seconds)
    item = FileItem(source_path="synthetic", audio_16k=audio, vad_probs=np.ones(len(audio) // 512, np.float32))
    item.probe.has_video = True
    item.face_tracks, item.face_fps = tracks, FPS
    item.segments = [Segment(start_sample=int(0.5 * AUDIO_SR), end_sample=int(3.5 * AUDIO_SR))]
    return item


def test_stage_skips_without_video_and_rejects_uncovered_segments():
    item = synthetic_item([])
    item.probe.has_video = False
    AsdStage().process([item])
    assert "asd" in item.provenance["skipped"] and len(item.segments) == 1
    item = synthetic_item([make_track(np.full(100, 0.1), shot=1)])  # a face, but in another shot
    AsdStage().process([item])
    assert [r.reason for r in item.rejects] == ["no_face_track"] and not item.segments


def test_stage_picks_the_speaking_face_of_two():
    audio, env = syllable_audio(4.0)
    talker = make_track(0.05 + 0.3 * env, track_id=7)
    _, other_env = syllable_audio(4.0, seed=1)  # a listener whose lips move a little, out of step with the speech
    listener = make_track(0.1 + 0.06 * other_env, track_id=3)
    item = synthetic_item([listener, talker])
    # The classical decision between two faces (synthetic tracks have no video for sync_choice to follow;
    # tests/stages/test_sync.py covers sync_choice on real faces).
    stage = AsdStage(cfg=AsdConfig(sync_choice=False))
    stage.process([item])
    assert len(item.segments) == 1, item.rejects
    seg = item.segments[0]
    assert seg.track_id == 7 and seg.asd_scorer.startswith("classical") and seg.asd_score > 0.6
    assert stage._scorer.envelopes.hits == 1  # the speech envelope: once per segment, not once per face
    assert item.provenance["models"]["asd"] == seg.asd_scorer


# --------------------------------------------------------------------------- real media


@pytest.fixture(scope="module")
def tools():
    from blendshape_fit.landmarker import FaceLandmarkExtractor
    from stages.vad import SileroVad

    with FaceLandmarkExtractor(fps=FPS, max_side_px=640) as ex:
        yield ex, SileroVad()


@pytest.fixture(scope="module")
def photo_videos(tmp_path_factory, media_dir):
    d = tmp_path_factory.mktemp("asd")
    speech, sr = sf.read(str(media_dir / "whisper_jfk.flac"), dtype="float32")
    photo = media_dir / "face_recognition_obama.jpg"
    return {"voice_over": write_photo_video(d / "still.mp4", photo, speech, sr, 4.0, "still"),
            "off_screen": write_photo_video(d / "jitter.mp4", photo, speech, sr, 4.0, "jitter")}


@pytest.mark.parametrize("kind,reason", [("voice_over", "voice_over"), ("off_screen", "off_screen_speaker")])
def test_negative_controls_are_rejected(tools, photo_videos, kind, reason):
    item = load_file_item(photo_videos[kind], 0.0, 4.0, *tools)
    assert item.face_tracks, "the landmarker must find the photo's face for this control to mean anything"
    AsdStage().process([item])
    assert not item.segments
    assert [r.reason for r in item.rejects] == [reason]
    assert item.rejects[0].value < AsdConfig().min_mouth_motion


# Clips whose MANIFEST.tsv row says genuine_sync: yes (KatieHill and face4 are "unsure": not used).
TALKING = [("videoretalking_face1.mp4", 0.5, 3.5), ("videoretalking_face2.mp4", 1.0, 4.0),
           ("latentsync_demo2_video.mp4", 6.0, 9.0), ("grid_bbaf2n.mpg", 0.0, 3.0)]


@pytest.mark.parametrize("name,start_s,end_s", TALKING)
def test_true_talking_clips_pass(tools, media_dir, name, start_s, end_s):
    item = load_file_item(media_dir / name, start_s, end_s, *tools)
    AsdStage().process([item])
    assert not item.rejects, item.rejects
    seg = item.segments[0]
    assert seg.track_id == 0 and seg.asd_score >= AsdConfig().min_asd_score


def test_cli_prints_json(media_dir, capsys):
    from stages.asd import main

    main([str(media_dir / "grid_bbaf2n.mpg")])
    out = json.loads(capsys.readouterr().out)
    assert out["segments"] and {"track", "score", "lag_s", "decision"} <= set(out["segments"][0])
    assert out["segments"][0]["decision"] == "keep"
