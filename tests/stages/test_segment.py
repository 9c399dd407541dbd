"""Fine segmentation on word timings: sentence cuts, packing, bounds and the ledgered filters."""

from __future__ import annotations

import numpy as np
import pytest

from shards.spec import AUDIO_SR
from stages.item import FileItem, Segment
from stages.segment import (
    FineSegmentStage,
    SegmentConfig,
    count_model_chars,
    cut_segment,
    pack_clips,
    split_long,
    split_sentences,
)


def make_words(spec: list[tuple[str, float, float]]) -> list[dict]:
    return [{"word": f" {w}", "start_s": s, "end_s": e, "prob": 0.9} for w, s, e in spec]


def steady_words(start_s: float, n: int, step_s: float = 0.4, text: str = "word", end_every: int = 0) -> list[dict]:
    spec = []
    for i in range(n):
        w = text + ("." if end_every and (i + 1) % end_every == 0 else "")
        spec.append((w, start_s + i * step_s, start_s + i * step_s + step_s * 0.8))
    return make_words(spec)


def parent(start_s: float, end_s: float, words: list[dict], language: str = "en", prob: float = 0.99) -> Segment:
    seg = Segment(start_sample=int(start_s * AUDIO_SR), end_sample=int(end_s * AUDIO_SR), shot_index=2)
    seg.words, seg.language, seg.language_prob = words, language, prob
    seg.text = "".join(w["word"] for w in words).strip()
    seg.extra = {"asr": {"text_source": "asr"}}
    return seg


def test_sentences_end_at_punctuation_and_long_pauses():
    words = make_words([("Hello", 0.0, 0.3), ("there.", 0.35, 0.7), ("How", 0.8, 1.0), ("are", 1.05, 1.2),
                        ("you", 2.5, 2.8)])
    sentences = split_sentences(words, SegmentConfig(max_word_gap_s=0.6))
    assert [[w["word"].strip() for w in s] for s in sentences] == [["Hello", "there."], ["How", "are"], ["you"]]


def test_long_run_splits_at_the_longest_pause_under_the_limit():
    words = steady_words(0.0, 50, step_s=0.4) + steady_words(20.5, 50, step_s=0.4)  # 1 s pause at ~20 s
    pieces = split_long(words, 30.0)
    assert len(pieces) == 2 and pieces[0][-1]["start_s"] < 20.0 < pieces[1][0]["start_s"]
    assert all(p[-1]["end_s"] - p[0]["start_s"] <= 30.0 for p in pieces)


def test_short_sentences_are_joined_up_to_the_minimum():
    words = steady_words(0.0, 30, step_s=0.4, end_every=3)  # 1.2 s sentences
    clips = pack_clips(split_sentences(words, SegmentConfig()), SegmentConfig(min_clip_s=3.0, max_clip_s=30.0))
    spans = [c[-1]["end_s"] - c[0]["start_s"] for c in clips]
    assert all(s >= 3.0 for s in spans) and all(s <= 30.0 for s in spans)
    assert sum(len(c) for c in clips) == 30


def test_clip_bounds_stay_inside_the_vad_segment_and_split_pauses_at_the_middle():
    words = steady_words(1.0, 10, end_every=10) + steady_words(6.0, 10, end_every=10)
    p = parent(0.9, 10.0, words)
    clips = cut_segment(p, SegmentConfig(min_clip_s=3.0, pad_s=0.2), n_samples=20 * AUDIO_SR)
    assert len(clips) == 2
    assert clips[0].start_s == pytest.approx(0.9)  # clamped to the VAD segment
    assert clips[1].end_s == pytest.approx(10.0, abs=1e-4)  # 9.92 + 0.2 clamped
    assert clips[0].end_s <= clips[1].start_s
    assert clips[0].end_s == pytest.approx(words[9]["end_s"] + 0.2, abs=1e-4)
    assert all(c.shot_index == 2 for c in clips)
    assert clips[0].text.startswith("word") and clips[0].text_model


def test_whole_segment_keeps_its_sidecar_text():
    words = steady_words(0.0, 12)
    p = parent(0.0, 5.0, words)
    p.text = "The supplied transcript."
    p.extra["asr"]["text_source"] = "sidecar"
    clips = cut_segment(p, SegmentConfig(), n_samples=10 * AUDIO_SR)
    assert len(clips) == 1 and clips[0].text == "The supplied transcript."
    assert clips[0].extra["asr"]["text_source"] == "sidecar"
    assert p.extra["asr"]["text_source"] == "sidecar"  # the parent's dict is not shared


@pytest.mark.parametrize(("words", "language", "prob", "reason"), [
    (steady_words(0.0, 4), "en", 0.99, "too_short"),
    (steady_words(0.0, 10, text="w"), "en", 0.99, "chars_per_s_low"),
    (steady_words(0.0, 10, text="supercalifragilistic"), "en", 0.99, "chars_per_s_high"),
    (steady_words(0.0, 10), "fr", 0.99, "language_not_allowed"),
    (steady_words(0.0, 10), "en", 0.3, "language_prob"),
])
def test_filters_ledger_the_measured_value(words, language, prob, reason):
    item = FileItem(source_path="x.mp4", audio_24k=np.zeros(20 * AUDIO_SR, np.float32))
    item.segments = [parent(0.0, words[-1]["end_s"] + 0.1, words, language, prob)]
    FineSegmentStage().process([item])
    assert not item.segments and not item.rejected
    (rej,) = item.rejects
    assert rej.stage == "segment" and rej.reason == reason
    assert rej.start_s is not None and rej.end_s is not None
    if reason == "language_not_allowed":  # categorical: the value is the language's ASR probability
        assert rej.value == prob and rej.threshold is None and "'fr'" in rej.detail and "['en', 'zh']" in rej.detail
    else:
        assert rej.value is not None and rej.threshold is not None


@pytest.mark.parametrize(("language", "prob", "reason", "threshold"), [
    ("ru", 0.97, "language_not_allowed", None), ("en", 0.31, "language_prob", 0.5)])
def test_language_is_ledgered_before_duration(language, prob, reason, threshold):
    """A short clip in another language is ledgered for its language (what decides), with the probability."""
    words = steady_words(0.0, 4)  # 1.5 s: too short as well
    item = FileItem(source_path="x.mp4", audio_24k=np.zeros(20 * AUDIO_SR, np.float32))
    item.segments = [parent(0.0, 1.7, words, language, prob)]
    FineSegmentStage().process([item])
    (rej,) = item.rejects
    assert (rej.reason, rej.value, rej.threshold) == (reason, prob, threshold)
    assert f"'{language}'" in rej.detail


def test_good_segment_passes_with_chars_per_second_recorded():
    words = steady_words(0.0, 12, text="hello")  # 5 letters per 0.4 s = 12.5 cps
    item = FileItem(source_path="x.mp4", audio_24k=np.zeros(20 * AUDIO_SR, np.float32))
    item.segments = [parent(0.0, 5.0, words)]
    FineSegmentStage().process([item])
    (seg,) = item.segments
    assert 9.0 < seg.extra["segment"]["chars_per_s"] < 14.0


def test_segment_without_words_is_ledgered():
    item = FileItem(source_path="x.mp4", audio_24k=np.zeros(20 * AUDIO_SR, np.float32))
    item.segments = [parent(0.0, 5.0, [])]
    FineSegmentStage().process([item])
    assert [r.reason for r in item.rejects] == ["no_words"]


def test_count_model_chars_ignores_spaces_and_punctuation():
    assert count_model_chars("Hi, there!") == 7
    assert count_model_chars("dui4 zhe4") == 8


def test_close_vad_segments_of_one_shot_are_joined_before_cutting():
    a = parent(0.0, 2.0, steady_words(0.1, 4, text="hello"))
    b = parent(2.6, 4.6, steady_words(2.7, 4, text="world"))
    c = parent(6.5, 9.0, steady_words(6.6, 5, text="later"))  # 1.9 s pause: not joined
    item = FileItem(source_path="x.mp4", audio_24k=np.zeros(20 * AUDIO_SR, np.float32))
    item.segments = [a, b, c]
    FineSegmentStage(cfg=SegmentConfig(min_clip_s=2.5)).process([item])
    assert len(item.segments) == 1
    (seg,) = item.segments
    assert seg.start_s == pytest.approx(0.0) and seg.end_s <= 4.6 + 1e-6
    assert "hello" in seg.text and "world" in seg.text
    assert [r.reason for r in item.rejects] == ["too_short"]  # c alone is 2.5 s of words minus padding


def test_a_short_tail_sentence_joins_the_clip_before_it():
    words = steady_words(0.0, 10, end_every=10) + steady_words(4.5, 3, end_every=3)  # 3.9 s + 1.1 s sentences
    clips = pack_clips(split_sentences(words, SegmentConfig()), SegmentConfig(min_clip_s=3.0))
    assert len(clips) == 1 and len(clips[0]) == 13


def test_zero_length_words_keep_their_text_when_a_segment_is_cut():
    """Whisper sometimes gives a word no duration (end <= start). Cut into several clips, the word's
    text used to vanish while its audio stayed; now it is an instant at its start time."""
    first = steady_words(0.0, 10, text="alpha", end_every=10)  # one sentence, 0-3.9 s
    second = steady_words(5.0, 10, text="beta", end_every=10)  # another, 5-8.9 s
    odd = make_words([("gamma", 6.2, 6.2), ("delta", 7.0, 6.9)])  # zero and negative length
    words = sorted(first + second + odd, key=lambda w: w["start_s"])
    clips = cut_segment(parent(0.0, 9.5, words), SegmentConfig(), 20 * AUDIO_SR)
    assert len(clips) == 2
    assert "gamma" in clips[1].text and "delta" in clips[1].text and "gamma" not in clips[0].text
    assert clips[1].text.index("gamma") < clips[1].text.index("delta")
    assert all(w["start_s"] <= w["end_s"] for c in clips for w in c.words)
    assert sum(len(c.words) for c in clips) == len(words)  # every word is in exactly one clip
