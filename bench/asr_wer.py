"""WER of the ASR stage on the shared clips that have a known transcript.

Every clip in ``MANIFEST.tsv`` with a ``transcript`` is decoded and
standardized as in the pipeline, then transcribed by ``AsrStage`` in two modes:

* ``file``: the whole clip as one segment;
* ``vad``: silero-vad segments (as the pipeline does), texts joined.

WER is jiwer's on ``text_norm.normalize_for_wer`` text; for Chinese
transcripts it is the character error rate. The English aggregate is the
corpus WER (errors over all reference words). Note: the offline default model
(tiny.en) is English-only, so its Chinese numbers only show that.

Usage: ``python bench/asr_wer.py [--media DIR] [--modes file,vad] [--backend B] [--model-path P]``
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from stages.asr import AsrConfig, AsrStage  # noqa: E402
from stages.audio import AudioConfig, decode_mono, standardize  # noqa: E402
from stages.item import FileItem, Segment  # noqa: E402
from stages.text_norm import compute_wer, contains_han, normalize_for_wer  # noqa: E402

DEFAULT_MEDIA = REPO / ".." / "shared" / "data" / "media"


def list_transcribed(media: Path) -> list[tuple[Path, str]]:
    """``[(clip, transcript)]`` for every manifest row with a transcript."""
    with open(media / "MANIFEST.tsv", encoding="utf-8") as fh:
        return [(media / r["file"], r["transcript"]) for r in csv.DictReader(fh, delimiter="\t")
                if r.get("transcript", "").strip()]


def transcribe_clip(stage: AsrStage, path: Path, mode: str) -> tuple[str, float, float]:
    """``(joined text, seconds of audio, seconds of ASR wall time)`` for one clip."""
    samples, rate, _ = decode_mono(str(path))
    a24, a16, _, _ = standardize(samples, rate, AudioConfig())
    item = FileItem(source_path=str(path), audio_24k=a24, audio_16k=a16)
    if mode == "vad":
        from stages.vad import VadSegmentStage

        VadSegmentStage().process_item(item)
    else:
        item.segments = [Segment(start_sample=0, end_sample=len(a24))]
    t0 = time.perf_counter()
    if not item.rejected:
        stage.process_item(item)
    wall = time.perf_counter() - t0
    texts = [s.extra["asr"]["asr_text"] for s in item.segments]
    return " ".join(texts), len(a24) / 24000, wall


def measure(media: Path, cfg: AsrConfig, modes: list[str]) -> list[dict]:
    """One row per clip and mode."""
    stage = AsrStage(cfg=cfg)
    t0 = time.perf_counter()
    stage.setup()
    print(f"model: {stage._backend.model_id}  (load {time.perf_counter() - t0:.2f} s)")
    rows = []
    for path, ref in list_transcribed(media):
        lang = "zh" if contains_han(ref) else "en"
        for mode in modes:
            hyp, dur, wall = transcribe_clip(stage, path, mode)
            rows.append({"clip": path.name, "lang": lang, "mode": mode, "ref": ref, "hyp": hyp,
                         "wer": compute_wer(ref, hyp, lang), "audio_s": dur, "wall_s": wall})
    return rows


def print_table(rows: list[dict], modes: list[str]) -> None:
    import jiwer

    print(f"{'clip':<26} {'lang':<4} {'mode':<4} {'metric':<6} {'value':>6} {'RTF':>6}  hypothesis")
    for r in rows:
        metric = "CER" if r["lang"] == "zh" else "WER"
        print(f"{r['clip']:<26} {r['lang']:<4} {r['mode']:<4} {metric:<6} {r['wer']:>6.1%} "
              f"{r['wall_s'] / r['audio_s']:>6.3f}  {r['hyp'][:70]}")
    for mode in modes:
        en = [r for r in rows if r["lang"] == "en" and r["mode"] == mode]
        if en:
            out = jiwer.process_words([normalize_for_wer(r["ref"], "en") for r in en],
                                      [normalize_for_wer(r["hyp"], "en") or "<empty>" for r in en])
            mean = sum(r["wer"] for r in en) / len(en)
            print(f"English, {mode}: corpus WER {out.wer:.1%} over {len(en)} clips "
                  f"({out.substitutions} sub, {out.deletions} del, {out.insertions} ins); mean per-clip {mean:.1%}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--media", type=Path, default=DEFAULT_MEDIA)
    ap.add_argument("--modes", default="file,vad", help="comma list of file, vad")
    ap.add_argument("--backend", default="faster-whisper")
    ap.add_argument("--model-path", default=None)
    ap.add_argument("--model-name", default=None)
    ap.add_argument("--beam-size", type=int, default=5)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    modes = [m for m in args.modes.split(",") if m]
    cfg = AsrConfig(backend=args.backend, model_path=args.model_path, model_name=args.model_name,
                    beam_size=args.beam_size, use_sidecar=False)
    print_table(measure(args.media.resolve(), cfg, modes), modes)


if __name__ == "__main__":
    main()
