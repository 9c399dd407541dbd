"""``python -m inference.vocode AUDIO OUT.wav``: resynthesize a file through its 100-bin log-mel and a vocoder.

Prints a JSON summary with the vocoder used and the mel L1 of the round trip.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

import numpy as np

from model.vocoder import VOCODER_KINDS, VocoderConfig, load_vocoder
from shards.spec import AUDIO_SR


def main(argv: list[str] | None = None) -> int:
    """``python -m inference.vocode AUDIO OUT.wav``: mel of AUDIO -> vocoder -> OUT.wav, JSON summary."""
    import soundfile as sf

    from stages.audio import AudioConfig, decode_mono, standardize
    from stages.mel import LogMel

    ap = argparse.ArgumentParser(description="resynthesize a file through its 100-bin log-mel")
    ap.add_argument("audio")
    ap.add_argument("out")
    ap.add_argument("--vocoder", choices=VOCODER_KINDS, default="auto")
    ap.add_argument("--vocos-path", default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    samples, rate, _ = decode_mono(args.audio)
    a24 = standardize(samples, rate, AudioConfig())[0]
    mel = LogMel()(a24)
    voc = load_vocoder(VocoderConfig(kind=args.vocoder, vocos_path=args.vocos_path))
    audio = voc.decode(mel)
    sf.write(args.out, audio, AUDIO_SR)
    mel2 = LogMel()(audio)
    print(json.dumps({"vocoder": voc.name, "n_frames": int(mel.shape[0]), "n_samples": int(len(audio)),
                      "mel_l1": float(np.abs(mel2 - mel).mean())}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
