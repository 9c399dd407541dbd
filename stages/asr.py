"""asr: whisper transcripts with word times for every segment, plus sidecar transcripts.

Each VAD segment's 16 kHz audio is transcribed on its own (whisper's own VAD
off, ``condition_on_previous_text`` off, beam search at the temperatures of
``asr.temperatures``: 0 alone by default, since whisper's fallback to higher
temperatures samples at random and the same audio would give other text, other
clip cuts and other clip ids on another run). The stage fills, per segment:

* ``seg.text``: the raw transcript: the sidecar's text when the source has a
  ``.srt``/``.vtt``/``.txt`` next to it (see ``stages/transcripts.py``), else
  whisper's;
* ``seg.text_model``: ``text_norm.normalize_for_model`` of it (characters,
  or tone pinyin for Chinese);
* ``seg.language`` / ``seg.language_prob``: whisper's language identification
  of the piece of audio the segment was transcribed in (the offline default:
  whisper base, multilingual; the probability is None only for an English-only
  configured model or a forced ``asr.language``). English pieces are then
  transcribed by tiny.en (``asr.english_model``), the others by base in their
  own language, with ``asr.initial_prompts`` (simplified Chinese for ``zh``);
* ``seg.words``: ``[{"word", "start_s", "end_s", "prob"}]`` in SOURCE seconds,
  always from whisper (also when the text comes from a sidecar);
* ``seg.extra["asr"]``: ``avg_logprob``, ``no_speech_prob``,
  ``compression_ratio``, ``asr_text`` (whisper's text), ``asr_model`` (the
  model that wrote it), ``language_top`` (the three most likely languages with
  their probabilities), ``text_source`` ("sidecar" | "asr") and
  ``sidecar_wer`` (WER of whisper against the sidecar, CER for Chinese; None
  without a sidecar).

Segments where whisper finds no words, or whose no-speech probability is
above ``max_no_speech_prob`` (whisper's "you" on silence), are rejected as
``no_text``. Language filtering (``segment.allowed_languages``,
``segment.min_language_prob``) is left to the fine segmentation stage; this stage
records language and probability. In the curation job it does not transcribe a piece
whose language ``segment.allowed_languages`` will reject (``only_languages``, set from
that list unless ``asr.transcribe_all_languages``): the piece keeps its language and
probability, no text, and ``extra["asr"]["text_skipped"]`` says why; the segment stage
ledgers it ``language_not_allowed``. Model choice and measurements: docs/asr.md.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shards.spec import AUDIO_SR
from stages.base import Resources, Stage
from stages.item import MODEL_SR, FileItem, Reject, Segment
from stages.text_norm import compute_wer, join_word_texts, normalize_for_model
from stages.transcripts import align_text_to_segments, assign_cues_to_segments, load_sidecar
from stages.whisper_backends import (
    DEFAULT_INITIAL_PROMPTS,
    AsrResult,
    AsrWord,
    BackendOptions,
    WhisperBackend,
    load_backend,
)

log = logging.getLogger(__name__)


@dataclass
class AsrConfig:
    backend: str = "faster-whisper"  # "faster-whisper" | "openai-whisper"
    # Model: model_path, else model_name, else the offline default (whisper base, multilingual, joined from
    # its two packages into cache_dir) for language ID, with english_model transcribing the English pieces.
    model_path: str | None = None  # local model: CTranslate2 dir (faster-whisper) or .pt file (openai-whisper)
    model_name: str | None = None  # e.g. "large-v3": from the model cache, downloaded where a network exists
    download_root: str | None = None  # cache folder for model_name; None: the library's default
    allow_download: bool = True  # False: model_name must already be in the cache
    cache_dir: str | None = None  # folder the offline base model is joined into; None: $OMNITALKER_CACHE_DIR, else ~/.cache/omnitalker
    # Offline default only: "tiny.en" transcribes the pieces detected as English (fewer errors than base on
    # the shared English clips, and cheaper; docs/asr.md); None: base transcribes them too.
    english_model: str | None = "tiny.en"
    language: str | None = None  # ISO 639-1 to force (e.g. "zh"); None: detect per piece of audio
    multilingual: bool = False  # True: fail at setup unless the model is multilingual (a tiny.en model_path is not)
    # Whisper's initial prompt per language (ISO 639-1). zh: simplified Chinese, else base writes traditional.
    initial_prompts: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_INITIAL_PROMPTS))
    device: str = "auto"  # "auto" (CUDA if present) | "cpu" | "cuda"
    compute_type: str = "auto"  # "auto": int8 on CPU, float16 on GPU; or any CTranslate2 compute type
    beam_size: int = 5  # beam width at temperature 0
    # seconds: the language-ID encoder sees the piece plus 1 s of silence, but at least this and at most 30
    # (whisper's window; 30 = whisper's own cost, 0.55 CPU s per piece for base; 10 s costs 0.08 s)
    language_id_min_window_s: float = 10.0
    # Decoding temperatures, tried in order while a result looks hallucinated. Values above 0 sample
    # at random (CTranslate2's generator cannot be re-seeded per call), so the default [0.0] keeps a
    # run deterministic; whisper's own default is [0.0, 0.2, 0.4, 0.6, 0.8, 1.0].
    temperatures: list[float] = field(default_factory=lambda: [0.0])
    num_threads: int = 1  # CPU threads per actor
    word_timestamps: bool = True  # word times from cross-attention alignment
    max_no_speech_prob: float = 0.9  # 0-1: above this whisper's words are taken as hallucinated (no_text)
    join_gap_s: float = 1.0  # seconds: segments of one shot closer than this are transcribed as one piece
    max_join_s: float = 28.0  # seconds: a joined piece stays inside whisper's 30 s window
    use_sidecar: bool = True  # read <stem>.srt/.vtt/.txt next to the source as the transcript
    # False: in the curation job, pieces whose language segment.allowed_languages rejects get their language and
    # probability but no transcription (base decoding them was the stage's largest cost on foreign files);
    # True: transcribe them too (their text then shows in the ledger's clip rows)
    transcribe_all_languages: bool = False
    neutral_tone_with_five: bool = False  # pinyin neutral tone as "5" (False: no digit, as F5-TTS)

    def backend_options(self) -> BackendOptions:
        return BackendOptions(
            backend=self.backend, model_path=self.model_path, model_name=self.model_name,
            download_root=self.download_root, allow_download=self.allow_download, language=self.language,
            require_multilingual=self.multilingual, english_model=self.english_model, cache_dir=self.cache_dir,
            initial_prompts=dict(self.initial_prompts or {}), device=self.device, compute_type=self.compute_type,
            beam_size=self.beam_size, num_threads=self.num_threads, word_timestamps=self.word_timestamps,
            temperatures=tuple(self.temperatures), language_id_min_window_s=self.language_id_min_window_s)


def slice_audio_16k(item: FileItem, seg: Segment) -> np.ndarray:
    """The 16 kHz samples of ``seg`` (bounds converted from 24 kHz sample indices)."""
    return item.slice_audio_16k(seg.start_sample * MODEL_SR // AUDIO_SR, seg.end_sample * MODEL_SR // AUDIO_SR)


def convert_words_to_source(words: list[AsrWord], offset_s: float, duration_s: float) -> list[dict[str, Any]]:
    """Word dicts in source seconds, clamped inside ``[offset_s, offset_s + duration_s]`` and monotonic."""
    out: list[dict[str, Any]] = []
    prev_start = 0.0
    for w in words:
        start = min(max(w.start_s, prev_start, 0.0), duration_s)
        end = min(max(w.end_s, start), duration_s)
        prev_start = start
        out.append({"word": w.word, "start_s": round(offset_s + start, 3), "end_s": round(offset_s + end, 3),
                    "prob": round(w.prob, 4)})
    return out


def group_segments(segments: list[Segment], join_gap_s: float, max_join_s: float) -> list[list[int]]:
    """Indices of consecutive segments (same shot, pause < ``join_gap_s``, span <= ``max_join_s``) to transcribe together.

    Whisper is more accurate with context: VAD pieces of one sentence transcribed apart lose
    words at their edges.
    """
    order = sorted(range(len(segments)), key=lambda i: segments[i].start_sample)
    groups: list[list[int]] = []
    for i in order:
        seg = segments[i]
        if groups:
            first, last = segments[groups[-1][0]], segments[groups[-1][-1]]
            if (seg.shot_index == last.shot_index and seg.start_s - last.end_s < join_gap_s
                    and seg.end_s - first.start_s <= max_join_s):
                groups[-1].append(i)
                continue
        groups.append([i])
    return groups


def split_result(res: AsrResult, offset_s: float, segments: list[Segment]) -> list[AsrResult]:
    """Per-segment results from one transcription of ``[offset_s, ...)``: each word goes to the
    segment holding its midpoint (or the nearest one), with times made relative to that segment."""
    if len(segments) == 1:
        return [res]  # times already relative to the segment; keep whisper's own text
    parts: list[list[AsrWord]] = [[] for _ in segments]
    for w in res.words:
        mid = offset_s + (w.start_s + w.end_s) / 2
        k = min(range(len(segments)), key=lambda j: 0.0 if segments[j].start_s <= mid < segments[j].end_s
                else min(abs(mid - segments[j].start_s), abs(mid - segments[j].end_s)))
        shift = segments[k].start_s - offset_s
        parts[k].append(AsrWord(word=w.word, start_s=w.start_s - shift, end_s=w.end_s - shift, prob=w.prob))
    out = []
    for words in parts:
        text = join_word_texts([w.word for w in words], res.language) if res.words else res.text
        out.append(AsrResult(text=text, language=res.language, language_prob=res.language_prob, words=words,
                             avg_logprob=res.avg_logprob, no_speech_prob=res.no_speech_prob,
                             compression_ratio=res.compression_ratio, language_top=res.language_top,
                             model=res.model, transcribed=res.transcribed))
    return out


def match_sidecar_texts(sidecar: dict[str, Any] | None, segments: list[Segment], results: list[AsrResult],
                        language: str | None) -> list[str]:
    """The sidecar text of each segment ('' where the sidecar says nothing for it)."""
    if not sidecar or not sidecar.get("cues"):
        return [""] * len(segments)
    cues = sidecar["cues"]
    if cues[0]["start_s"] is not None:
        return assign_cues_to_segments(cues, [(s.start_s, s.end_s) for s in segments])
    text = " ".join(c["text"] for c in cues)
    return align_text_to_segments(text, [[w.word for w in r.words] for r in results], language)


@dataclass
class AsrStage(Stage):
    name: str = "asr"
    cfg: AsrConfig = field(default_factory=AsrConfig)
    uses_actor: bool = True
    resources: Resources = field(default_factory=lambda: Resources(num_cpus=1, batch_size=1))
    only_languages: list[str] | None = None  # ISO 639-1: pieces in other languages are identified, not transcribed
    _backend: WhisperBackend | None = field(default=None, repr=False)

    def setup(self) -> None:
        if self._backend is None:
            self._backend = load_backend(self.cfg.backend_options())

    def read_sidecar(self, item: FileItem) -> dict[str, Any] | None:
        """The parsed sidecar (cached on the item); a broken sidecar is noted and ignored."""
        if not self.cfg.use_sidecar:
            return None
        if item.sidecar_transcript is None:
            try:
                item.sidecar_transcript = load_sidecar(item.source_path)
            except (OSError, ValueError, UnicodeError) as exc:
                log.warning("asr: ignoring sidecar of %s: %s", item.source_path, exc)
                item.provenance["sidecar_error"] = f"{type(exc).__name__}: {exc}"
        return item.sidecar_transcript

    def process_item(self, item: FileItem) -> None:
        self.setup()
        backend = self._backend
        item.record_model(self.name, backend.model_id)
        rebuilt = item.audio_16k is None
        if rebuilt:  # an earlier stage released it: rebuild from the 24 kHz copy, for this stage only
            from stages.audio import resample_to

            assert item.audio_24k is not None, "asr needs item.audio_24k or item.audio_16k"
            item.audio_16k = resample_to(item.audio_24k, AUDIO_SR, MODEL_SR)
        results: list[AsrResult | None] = [None] * len(item.segments)
        for group in group_segments(item.segments, self.cfg.join_gap_s, self.cfg.max_join_s):
            segs = [item.segments[i] for i in group]
            span = Segment(start_sample=segs[0].start_sample, end_sample=max(s.end_sample for s in segs))
            res = backend.transcribe(slice_audio_16k(item, span), self.cfg.language, self.only_languages)
            for i, part in zip(group, split_result(res, span.start_s, segs), strict=True):
                results[i] = part
        sidecar = self.read_sidecar(item)
        side_lang = self.cfg.language or next((r.language for r in results if r.language), None)
        side_texts = match_sidecar_texts(sidecar, item.segments, results, side_lang)
        if sidecar:
            item.provenance["sidecar"] = {"path": sidecar["path"], "format": sidecar["format"]}
        keep: list[Segment] = []
        dropped: list[Reject] = []
        for seg, res, side in zip(item.segments, results, side_texts, strict=True):
            self.fill_segment(seg, res, side)
            has_words = bool(res.words) if self.cfg.word_timestamps else bool(res.text)
            side_note = f"; sidecar text: {side[:80]!r}" if side else ""
            if not res.transcribed:  # the segment stage ledgers its language
                seg.extra["asr"]["text_skipped"] = (f"language {seg.language!r} not in {self.only_languages}: "
                                                    "identified, not transcribed")
                keep.append(seg)
            elif not has_words:
                dropped.append(seg.reject(self.name, "no_text", 0.0, None, "whisper found no words" + side_note))
            elif res.no_speech_prob is not None and res.no_speech_prob > self.cfg.max_no_speech_prob:
                dropped.append(seg.reject(self.name, "no_text", res.no_speech_prob, self.cfg.max_no_speech_prob,
                                          f"no-speech probability too high, words {res.text[:40]!r} taken as "
                                          "hallucinated (value: no_speech_prob)" + side_note))
            else:
                keep.append(seg)
        item.drop_segments(keep, dropped)
        if rebuilt:
            item.audio_16k = None

    def fill_segment(self, seg: Segment, res: AsrResult, sidecar_text: str) -> None:
        """Write text, language, words and ASR statistics of one segment."""
        language = self.cfg.language or res.language
        seg.language = language
        seg.language_prob = res.language_prob
        seg.words = convert_words_to_source(res.words, seg.start_s, seg.duration_s)
        seg.text = sidecar_text or res.text
        seg.text_model = normalize_for_model(seg.text, language, self.cfg.neutral_tone_with_five)
        seg.extra["asr"] = {
            "asr_text": res.text,
            "asr_model": res.model,
            "language_top": [[lang, round(p, 4)] for lang, p in res.language_top or []],
            "avg_logprob": res.avg_logprob,
            "no_speech_prob": res.no_speech_prob,
            "compression_ratio": res.compression_ratio,
            "language_detected": res.language_prob is not None,
            "text_source": "sidecar" if sidecar_text else "asr",
            "sidecar_wer": compute_wer(sidecar_text, res.text, language) if sidecar_text else None,
        }


def describe_segment(seg: Segment) -> dict[str, Any]:
    return {"start_s": round(seg.start_s, 3), "end_s": round(seg.end_s, 3), "text": seg.text,
            "text_model": seg.text_model, "language": seg.language, "language_prob": seg.language_prob,
            "asr": seg.extra.get("asr"), "words": seg.words}


def format_language(seg: Segment) -> str:
    """``"en 0.998 (cy 0.001, la 0.000)"``: the segment's language, its probability and the runners-up."""
    asr = seg.extra.get("asr") or {}
    prob = "forced/none" if seg.language_prob is None else f"{seg.language_prob:.3f}"
    others = ", ".join(f"{lang} {p:.3f}" for lang, p in (asr.get("language_top") or [])[1:])
    return f"{seg.language} {prob}" + (f" ({others})" if others else "")


def main(argv: list[str] | None = None) -> None:
    """``python -m stages.asr FILE``: transcribe one file (whole file, or VAD segments) and print JSON.

    stdout gets the JSON; stderr a line per segment with its language, the language probability and
    the next most likely languages, the model that wrote the text and the text.
    """
    from stages.audio import AudioConfig, decode_mono, standardize

    ap = argparse.ArgumentParser(prog="python -m stages.asr", description=inspect.cleandoc(main.__doc__ or ""),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file")
    ap.add_argument("--backend", default="faster-whisper", choices=["faster-whisper", "openai-whisper"])
    ap.add_argument("--model-path", default=None, help="a local model (asr.model_path); default: the offline "
                    "multilingual base model for language ID, tiny.en for English text")
    ap.add_argument("--model-name", default=None, help="e.g. large-v3 (asr.model_name: from the model cache, "
                    "downloaded where a network exists)")
    ap.add_argument("--english-model", default="tiny.en", help="asr.english_model: 'tiny.en' or 'none' "
                    "(base transcribes English too)")
    ap.add_argument("--cache-dir", default=None, help="asr.cache_dir: where base is joined (default "
                    "$OMNITALKER_CACHE_DIR or ~/.cache/omnitalker)")
    ap.add_argument("--language", default=None, help="force a language (ISO 639-1); default: detect")
    ap.add_argument("--beam-size", type=int, default=5)
    ap.add_argument("--vad", action="store_true", help="transcribe silero-vad segments instead of the whole file")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)
    samples, rate, _ = decode_mono(args.file)
    a24, a16, _, _ = standardize(samples, rate, AudioConfig())
    item = FileItem(source_path=args.file, audio_24k=a24, audio_16k=a16)
    if args.vad:
        from stages.vad import VadSegmentStage

        VadSegmentStage().process_item(item)
    else:
        item.segments = [Segment(start_sample=0, end_sample=len(a24))]
    english = None if args.english_model.lower() in ("none", "null", "") else args.english_model
    cfg = AsrConfig(backend=args.backend, model_path=args.model_path, model_name=args.model_name,
                    language=args.language, beam_size=args.beam_size, english_model=english, cache_dir=args.cache_dir)
    stage = AsrStage(cfg=cfg)
    if not item.rejected:
        stage.process_item(item)
    for seg in item.segments:
        asr = seg.extra.get("asr") or {}
        print(f"{seg.start_s:7.2f}-{seg.end_s:7.2f} s  {format_language(seg)}  [{asr.get('asr_model')}]  "
              f"{(seg.text or '')[:80]}", file=sys.stderr)
    print(json.dumps({"file": args.file, "model": item.provenance["models"].get("asr"),
                      "sidecar": item.provenance.get("sidecar"),
                      "segments": [describe_segment(s) for s in item.segments],
                      "rejects": [r.__dict__ for r in item.rejects]}, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
