"""segment: fine segmentation (OmniTalker's Stage 3) from ASR word timing.

Each VAD segment carries whisper's words (source seconds, ``stages/asr.py``).
This stage cuts it into clips at sentence and word boundaries:

1. Sentences end after a word with sentence-final punctuation or before a
   pause longer than ``max_word_gap_s``.
2. A sentence longer than ``max_clip_s`` is split at its longest inter-word
   pause (recursively), so no clip exceeds the limit.
3. Consecutive sentences are joined while the clip is shorter than
   ``min_clip_s`` and the join stays within ``max_clip_s``.
4. Clip bounds are the first word's start and the last word's end, padded by
   ``pad_s`` but never past the VAD segment (so never past a shot boundary)
   nor past the middle of the pause to a neighbouring clip.

Then the cheap text-level filters run, each rejection ledgered with its
measured value: the language allowlist (value: the ASR language probability;
the detail names the language and the list) and the language probability
(value and ``min_language_prob``), then duration (``min_clip_s`` /
``max_clip_s``) and characters per second of the model text. Face-level filters (box area, frontalness) run after
active-speaker detection in ``stages/framing.py``; DNSMOS, face tracking
and ASD run after this stage, on its clips only (cheap before expensive).

CLI: ``python -m stages.segment FILE`` runs audio, VAD, ASR and this stage on
one file and prints the clips as JSON.
"""

from __future__ import annotations

import json
import sys
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from shards.spec import AUDIO_SR
from stages.base import Resources, Stage
from stages.item import FileItem, Reject, Segment
from stages.text_norm import join_word_texts

Word = dict[str, Any]


@dataclass
class SegmentConfig:
    min_clip_s: float = 3.0  # seconds: shorter clips are rejected (too_short)
    max_clip_s: float = 30.0  # seconds: longer sentences are split at word boundaries
    max_word_gap_s: float = 0.6  # seconds: a longer pause between words ends a sentence
    sentence_end_chars: str = ".?!。？！…"  # a word ending in one of these ends a sentence
    pad_s: float = 0.2  # seconds kept before the first and after the last word (within the VAD segment)
    max_join_gap_s: float = 1.0  # seconds: VAD segments of one shot closer than this are cut as one span
    min_chars_per_s: float = 4.0  # model-text letters+digits per second; slower clips are rejected
    max_chars_per_s: float = 25.0  # model-text letters+digits per second; faster clips are rejected
    # ISO 639-1 (ASR's language ID); other languages are rejected (language_not_allowed); empty = any
    allowed_languages: list[str] = field(default_factory=lambda: ["en", "zh"])
    min_language_prob: float = 0.5  # ASR language probability (0-1); lower clips are rejected (language_prob)


def split_sentences(words: list[Word], cfg: SegmentConfig) -> list[list[Word]]:
    """Group time-ordered words into sentences (punctuation or a long pause ends one)."""
    out: list[list[Word]] = []
    cur: list[Word] = []
    for i, w in enumerate(words):
        cur.append(w)
        text = str(w.get("word", "")).strip()
        last = i == len(words) - 1
        gap = (words[i + 1]["start_s"] - w["end_s"]) if not last else 0.0
        if last or (text and text[-1] in cfg.sentence_end_chars) or gap > cfg.max_word_gap_s:
            out.append(cur)
            cur = []
    return out


def split_long(words: list[Word], max_s: float) -> list[list[Word]]:
    """Split a word run longer than ``max_s`` seconds at its longest pause, recursively."""
    if len(words) < 2 or words[-1]["end_s"] - words[0]["start_s"] <= max_s:
        return [words]
    gaps = [words[i + 1]["start_s"] - words[i]["end_s"] for i in range(len(words) - 1)]
    cut = max(range(len(gaps)), key=lambda i: (gaps[i], -abs(i - len(gaps) / 2)))
    return split_long(words[:cut + 1], max_s) + split_long(words[cut + 1:], max_s)


def span_s(words: list[Word]) -> float:
    return float(words[-1]["end_s"] - words[0]["start_s"])


def pack_clips(sentences: list[list[Word]], cfg: SegmentConfig) -> list[list[Word]]:
    """Join short consecutive sentences up to ``min_clip_s`` without exceeding ``max_clip_s``."""
    pieces = [p for s in sentences for p in split_long(s, cfg.max_clip_s)]
    clips: list[list[Word]] = []
    for p in pieces:
        if clips and span_s(clips[-1]) < cfg.min_clip_s and p[-1]["end_s"] - clips[-1][0]["start_s"] <= cfg.max_clip_s:
            clips[-1] = clips[-1] + p
        else:
            clips.append(p)
    # A short tail joins its predecessor when it fits.
    if len(clips) > 1 and span_s(clips[-1]) < cfg.min_clip_s \
            and clips[-1][-1]["end_s"] - clips[-2][0]["start_s"] <= cfg.max_clip_s:
        tail = clips.pop()
        clips[-1] = clips[-1] + tail
    return clips


def place_bounds(clips: list[list[Word]], lo_s: float, hi_s: float, pad_s: float) -> list[tuple[float, float]]:
    """Padded ``(start_s, end_s)`` per clip, inside ``[lo_s, hi_s]`` and not past the midpoint to a neighbour."""
    out = []
    for i, c in enumerate(clips):
        start = max(lo_s, c[0]["start_s"] - pad_s)
        end = min(hi_s, c[-1]["end_s"] + pad_s)
        if i > 0:
            start = max(start, (clips[i - 1][-1]["end_s"] + c[0]["start_s"]) / 2)
        if i + 1 < len(clips):
            end = min(end, (c[-1]["end_s"] + clips[i + 1][0]["start_s"]) / 2)
        out.append((start, end))
    return out


def count_model_chars(text: str) -> int:
    """Letters and digits of a text (spaces, punctuation and tone-free marks excluded)."""
    return sum(1 for ch in text if unicodedata.category(ch)[0] in ("L", "N"))


def normalize_text(text: str, language: str | None) -> str:
    """The model text of ``text`` (stages.text_norm), falling back to NFKC if it is not importable."""
    try:
        from stages.text_norm import normalize_for_model
    except ImportError:  # pragma: no cover - text_norm ships with the package
        return unicodedata.normalize("NFKC", text)
    return normalize_for_model(text, language)


def make_clip(parent: Segment, words: list[Word], start_s: float, end_s: float, n_total: int,
              n_samples: int) -> Segment:
    """A child segment of ``parent`` covering ``[start_s, end_s)`` with its words and text."""
    seg = Segment(start_sample=int(round(start_s * AUDIO_SR)),
                  end_sample=min(n_samples, int(round(end_s * AUDIO_SR))), shot_index=parent.shot_index)
    seg.language, seg.language_prob, seg.speaker = parent.language, parent.language_prob, parent.speaker
    seg.words = words
    seg.extra = {k: (dict(v) if isinstance(v, dict) else v) for k, v in parent.extra.items()}
    asr = seg.extra.setdefault("asr", {})
    if n_total == 1 and parent.text:
        seg.text = parent.text  # the whole VAD segment: keep its text (a sidecar transcript, if any)
    else:
        seg.text = join_word_texts([str(w.get("word", "")) for w in words], parent.language)
        if asr.get("text_source") == "sidecar":
            asr["text_source"] = "asr"  # a sidecar covers the whole segment; a sub-clip takes whisper's words
    seg.text_model = normalize_text(seg.text, seg.language)
    seg.extra["segment"] = {"vad_start_s": round(parent.start_s, 4), "vad_end_s": round(parent.end_s, 4),
                            "n_words": len(words)}
    return seg


def check_allowed_language(seg: Segment, cfg: SegmentConfig, stage: str) -> Reject | None:
    """The ``language_not_allowed`` reject of a clip (or of a piece ASR did not transcribe), or None."""
    if cfg.allowed_languages and seg.language not in cfg.allowed_languages:
        return seg.reject(stage, "language_not_allowed", seg.language_prob, None,
                          detail=f"language {seg.language!r} not in {cfg.allowed_languages} "
                                 "(value: its ASR probability)")
    return None


def check_clip(seg: Segment, cfg: SegmentConfig, stage: str) -> Reject | None:
    """The first failed text-level filter of a clip, or None."""
    # Language first: it holds for every clip of the piece of audio ASR identified it in, so a foreign-language
    # file is ledgered as such whatever the length of its clips.
    if (rejected := check_allowed_language(seg, cfg, stage)) is not None:
        return rejected
    if seg.language_prob is not None and seg.language_prob < cfg.min_language_prob:
        return seg.reject(stage, "language_prob", seg.language_prob, cfg.min_language_prob,
                          detail=f"language {seg.language!r}: ASR probability below segment.min_language_prob")
    d = seg.duration_s
    if d < cfg.min_clip_s:
        return seg.reject(stage, "too_short", d, cfg.min_clip_s, detail="seconds")
    if d > cfg.max_clip_s:
        return seg.reject(stage, "too_long", d, cfg.max_clip_s, detail="seconds")
    cps = count_model_chars(seg.text_model or seg.text or "") / d
    seg.extra["segment"]["chars_per_s"] = round(cps, 3)
    if cps < cfg.min_chars_per_s:
        return seg.reject(stage, "chars_per_s_low", cps, cfg.min_chars_per_s, detail="model-text letters+digits per second")
    if cps > cfg.max_chars_per_s:
        return seg.reject(stage, "chars_per_s_high", cps, cfg.max_chars_per_s, detail="model-text letters+digits per second")
    return None


def join_vad_segments(segments: list[Segment], max_gap_s: float) -> list[Segment]:
    """Merge consecutive VAD segments of one shot and language whose pause is under ``max_gap_s`` seconds.

    VAD closes a region at any pause longer than its merge gap, which often leaves one
    sentence in pieces shorter than ``min_clip_s``; cutting the joined span at sentence
    boundaries recovers them. The joined segment's words, text and time span cover all parts.
    """
    out: list[Segment] = []
    for seg in sorted(segments, key=lambda s: s.start_sample):
        prev = out[-1] if out else None
        if (prev is not None and seg.shot_index == prev.shot_index and seg.language == prev.language
                and seg.start_s - prev.end_s < max_gap_s):
            merged = Segment(start_sample=prev.start_sample, end_sample=max(prev.end_sample, seg.end_sample),
                             shot_index=prev.shot_index)
            merged.language = prev.language
            probs = [p for p in (prev.language_prob, seg.language_prob) if p is not None]
            merged.language_prob = min(probs) if probs else None
            merged.speaker = prev.speaker if prev.speaker == seg.speaker else None
            merged.words = list(prev.words or []) + list(seg.words or [])
            merged.text = " ".join(t for t in (prev.text, seg.text) if t)
            merged.extra = {k: (dict(v) if isinstance(v, dict) else v) for k, v in prev.extra.items()}
            merged.extra["joined_vad_segments"] = prev.extra.get("joined_vad_segments", 1) + 1
            out[-1] = merged
        else:
            out.append(seg)
    return out


def cut_segment(parent: Segment, cfg: SegmentConfig, n_samples: int) -> list[Segment]:
    """Cut one VAD segment with words into clips (unfiltered)."""
    # Words whisper gives no duration (end <= start) keep their text: they become instants at their start.
    words = sorted(({**w, "end_s": max(w["end_s"], w["start_s"])} for w in parent.words or []),
                   key=lambda w: (w["start_s"], w["end_s"]))
    if not words:
        return []
    clips = pack_clips(split_sentences(words, cfg), cfg)
    bounds = place_bounds(clips, parent.start_s, parent.end_s, cfg.pad_s)
    return [make_clip(parent, c, s, e, len(clips), n_samples) for c, (s, e) in zip(clips, bounds, strict=True)]


@dataclass
class FineSegmentStage(Stage):
    """Sentence-level clips plus duration, rate and language filters. Pure Python; runs as a task."""

    name: str = "segment"
    cfg: SegmentConfig = field(default_factory=SegmentConfig)
    resources: Resources = field(default_factory=lambda: Resources(num_cpus=1))

    def process_item(self, item: FileItem) -> None:
        n = item.total_samples or max((s.end_sample for s in item.segments), default=0)
        keep: list[Segment] = []
        dropped: list[Reject] = []
        for parent in join_vad_segments(item.segments, self.cfg.max_join_gap_s):
            clips = cut_segment(parent, self.cfg, n)
            if not clips:  # a piece ASR identified in a rejected language and did not transcribe has no words
                dropped.append(check_allowed_language(parent, self.cfg, self.name)
                               or parent.reject(self.name, "no_words", 0.0, None, detail="ASR gave no timed words"))
                continue
            for seg in clips:
                failed = check_clip(seg, self.cfg, self.name)
                if failed is None:
                    keep.append(seg)
                else:
                    dropped.append(failed)
        item.drop_segments(keep, dropped)


def main(argv: list[str] | None = None) -> None:
    """``python -m stages.segment FILE``: audio, VAD, ASR and fine segmentation of one file, as JSON."""
    from stages.asr import AsrStage
    from stages.audio import StandardizeAudioStage
    from stages.probe import ProbeStage
    from stages.vad import VadSegmentStage

    args = sys.argv[1:] if argv is None else argv
    if not args:
        sys.exit("usage: python -m stages.segment FILE")
    from core.media_io import sha256_of

    item = FileItem(source_path=args[0], source_sha256=sha256_of(args[0]))
    for stage in (ProbeStage(), StandardizeAudioStage(), VadSegmentStage(), AsrStage(), FineSegmentStage()):
        stage.process([item])
    print(json.dumps({
        "clips": [{"start_s": round(s.start_s, 3), "end_s": round(s.end_s, 3), "text": s.text,
                   "text_model": s.text_model, "language": s.language, **s.extra.get("segment", {})}
                  for s in item.segments],
        "rejects": [r.__dict__ for r in item.rejects]}, indent=1, ensure_ascii=False, default=str))


if __name__ == "__main__":
    main()
