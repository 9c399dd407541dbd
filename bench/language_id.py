"""Whisper language ID: a window sized to the piece against whisper's 30 s window.

Pieces of 3, 6 and 12 s (up to three per file, 15 s apart) are cut from every file with audio in
../shared/data/talking and ../shared/data/media, whose MANIFEST.tsv gives each file's language.
Each piece's language is identified by the offline multilingual base model three ways:

* ``faster-whisper``: ``WhisperModel.detect_language`` (log-mel padded with zeros to 30 s; what the
  asr stage did before ``asr.language_id_min_window_s``);
* ``whisper 30 s``: the log-mel of the piece followed by silence, all 30 s encoded (OpenAI whisper's
  padding; ``language_id_min_window_s: 30``);
* ``window N s``: the same log-mel, the encoder given ``max(N, piece + 1 s)`` (the stage's default N = 10).

Columns: accuracy against the manifest's language, agreement of the top language with the 30 s
window, the largest change of its probability, pieces whose probability crosses
``segment.min_language_prob`` (0.5) against the 30 s window, and CPU ms per piece.

    python bench/language_id.py [--windows 10,15]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from stages.asr import AsrConfig  # noqa: E402
from stages.segment import SegmentConfig  # noqa: E402
from stages.whisper_backends import detect_language_windowed, load_backend, top_languages  # noqa: E402

DATA = REPO.parent / "shared" / "data"
PIECE_S = (3.0, 6.0, 12.0)


def cut_pieces() -> list[tuple[str, str, np.ndarray]]:
    """``[(file, language, 16 kHz piece)]`` from both manifests."""
    from faster_whisper.audio import decode_audio

    pieces = []
    for folder in (DATA / "talking", DATA / "media"):
        with open(folder / "MANIFEST.tsv") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                if row.get("has_audio", "true") != "true" or not row.get("language"):
                    continue
                try:
                    audio = decode_audio(str(folder / row["file"]), 16000)
                except Exception:  # noqa: BLE001 - images and silent files have no audio stream
                    continue
                for length in PIECE_S:
                    for start in np.arange(0.0, max(len(audio) / 16000 - length, 0.01), 15.0)[:3]:
                        piece = audio[int(start * 16000): int((start + length) * 16000)]
                        if len(piece) >= 16000:
                            pieces.append((row["file"], row["language"], piece))
    return pieces


def run_method(fn, pieces) -> tuple[list[tuple[str, float]], float]:
    """Top (language, probability) per piece and CPU ms per piece."""
    out = []
    t0 = time.process_time()
    for _, _, piece in pieces:
        out.append(fn(piece)[0])
    return out, 1000 * (time.process_time() - t0) / max(1, len(pieces))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--windows", default="10", help="comma-separated minimum windows (s) to compare")
    args = ap.parse_args(argv)
    model = load_backend(AsrConfig(english_model=None).backend_options()).model
    pieces = cut_pieces()
    threshold = SegmentConfig().min_language_prob

    def faster_whisper(piece: np.ndarray) -> list[tuple[str, float]]:
        _, _, probs = model.detect_language(piece)
        return top_languages(probs)

    methods = {"faster-whisper": faster_whisper,
               "whisper 30 s": lambda p: detect_language_windowed(model, p, 30.0)}
    for w in (float(x) for x in args.windows.split(",")):
        methods[f"window {w:g} s"] = lambda p, w=w: detect_language_windowed(model, p, w)
    results = {name: run_method(fn, pieces) for name, fn in methods.items()}
    ref = results["whisper 30 s"][0]
    truth = [lang for _, lang, _ in pieces]
    print(f"{len(pieces)} pieces of {', '.join(f'{s:g}' for s in PIECE_S)} s from "
          f"{len({f for f, _, _ in pieces})} files; threshold {threshold}")
    print("| method | accuracy | top = 30 s window | max abs change of p | crosses threshold | CPU ms/piece |")
    print("|---|---|---|---|---|---|")
    for name, (top, ms) in results.items():
        acc = np.mean([lang == t for (lang, _), t in zip(top, truth, strict=True)])
        agree = np.mean([a[0] == b[0] for a, b in zip(top, ref, strict=True)])
        dp = max((abs(a[1] - b[1]) for a, b in zip(top, ref, strict=True) if a[0] == b[0]), default=0.0)
        cross = sum((a[1] >= threshold) != (b[1] >= threshold) for a, b in zip(top, ref, strict=True))
        print(f"| {name} | {acc:.3f} | {agree:.3f} | {dp:.3f} | {cross} | {ms:.0f} |")


if __name__ == "__main__":
    main()
