"""Voice embeddings offline: the GE2E speaker encoder whose weights ship in ``resemblyzer``.

Tensor legend: ``B`` windows, ``F = 160`` mel frames per window (1.6 s at 100 Hz),
``M = 40`` mel bins, ``H = 256`` LSTM width, ``E = 256`` embedding size.

The network is GE2E's (Wan et al. 2018, as trained by resemblyzer 0.1.4): a 3-layer LSTM over
``(B, F, M)`` linear-power mel frames of 16 kHz audio (25 ms Hann window, 10 ms hop, Slaney mel),
the last layer's final hidden state through a linear map and a ReLU, L2-normalized to ``(B, E)``.
Only the weight file ``resemblyzer/pretrained.pt`` is used (located through the installed
distribution's file list, sha256-pinned, loaded with ``weights_only=True``); resemblyzer's own
code and its requirements (webrtcvad, typing) are not installed (Makefile). Same speaker:
cosine of utterance embeddings about 0.75-0.95; different speakers about 0.3-0.6.

``python -m stages.voice A [B]`` prints the embedding's norm and the cosine of two files' voices.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

import numpy as np

from shards.schema import VOICE_DIM
from stages.item import MODEL_SR
from stages.models import PackagedModel, locate_packaged_model

GE2E_WEIGHTS = PackagedModel(
    distribution="resemblyzer",
    version="0.1.4",
    relpath="resemblyzer/pretrained.pt",
    sha256="39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e",
    config_field="diarize.voice_model_path",
)
MEL_WINDOW_S = 0.025  # seconds: STFT window of the encoder's mel
MEL_HOP_S = 0.010  # seconds: STFT hop (100 mel frames per second)
VOICE_MELS = 40  # mel bins of the encoder's input
WINDOW_FRAMES = 160  # mel frames per embedded window (1.6 s)
HIDDEN = 256  # LSTM width
EMBED_DIM = VOICE_DIM  # E: size of a voice embedding (the shard column's width)
LAYERS = 3  # LSTM layers
TARGET_DBFS = -30.0  # dBFS: quieter speech is raised to this RMS before the mel (never lowered)
INT16_MAX = 2**15 - 1


def mel_frames_per_s() -> float:
    return 1.0 / MEL_HOP_S


def raise_volume(wav: np.ndarray, target_dbfs: float = TARGET_DBFS) -> float:
    """Gain (linear) that raises ``wav``'s RMS to ``target_dbfs`` when it is below it, else 1."""
    rms = float(np.sqrt(np.mean((np.asarray(wav, np.float64) * INT16_MAX) ** 2))) if len(wav) else 0.0
    if rms <= 0.0:
        return 1.0
    change_db = target_dbfs - 20.0 * np.log10(rms / INT16_MAX)
    return float(10.0 ** (change_db / 20.0)) if change_db > 0 else 1.0


def compute_voice_mel(audio_16k: np.ndarray, gain: float = 1.0) -> np.ndarray:
    """``(n, 40)`` float32 linear-power mel frames at 100 Hz of 16 kHz mono audio (frame ``k`` centred at ``k / 100`` s)."""
    import librosa

    y = np.asarray(audio_16k, np.float32) * np.float32(gain)
    mel = librosa.feature.melspectrogram(y=y, sr=MODEL_SR, n_fft=int(MODEL_SR * MEL_WINDOW_S),
                                         hop_length=int(MODEL_SR * MEL_HOP_S), n_mels=VOICE_MELS)
    return mel.astype(np.float32).T


def build_encoder():  # -> torch.nn.Module (torch imported lazily: this module is imported by the pipeline)
    import torch
    from torch import nn

    class GE2EEncoder(nn.Module):
        """``(B, F, M)`` mel windows -> ``(B, E)`` unit voice embeddings."""

        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(VOICE_MELS, HIDDEN, LAYERS, batch_first=True)
            self.linear = nn.Linear(HIDDEN, EMBED_DIM)

        def forward(self, mels: torch.Tensor) -> torch.Tensor:
            _, (hidden, _) = self.lstm(mels)
            raw = torch.relu(self.linear(hidden[-1]))
            return raw / raw.norm(dim=1, keepdim=True).clamp(min=1e-8)

    return GE2EEncoder()


@dataclass
class VoiceEncoder:
    """The GE2E encoder, loaded once; embeds 1.6-s windows of a file's 16 kHz audio in batches."""

    model_path: str | None = None  # local pretrained.pt; None: the copy in the resemblyzer wheel
    batch_size: int = 64  # windows per forward pass
    num_threads: int = 1  # torch intra-op threads

    def __post_init__(self) -> None:
        import torch

        path = locate_packaged_model(GE2E_WEIGHTS, self.model_path)
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
        state = ckpt.get("model_state", ckpt) if isinstance(ckpt, dict) else ckpt
        self.net = build_encoder()
        own = {k: v for k, v in state.items() if k.startswith(("lstm.", "linear."))}
        self.net.load_state_dict(own, strict=True)
        self.net.eval()
        torch.set_num_threads(max(1, self.num_threads))
        from core.media_io import sha256_of_local

        self.model_id = f"ge2e-resemblyzer-0.1.4@{sha256_of_local(str(path))[:12]}"

    def embed_mel_windows(self, mel: np.ndarray, starts: np.ndarray, frames: int = WINDOW_FRAMES) -> np.ndarray:
        """``(len(starts), E)`` embeddings of the ``frames``-long windows of ``mel`` starting at frame ``starts``.

        Windows that run past the end are zero-padded.
        """
        import torch

        starts = np.asarray(starts, int)
        need = int(starts.max()) + frames if len(starts) else 0
        if need > len(mel):
            mel = np.concatenate([mel, np.zeros((need - len(mel), VOICE_MELS), np.float32)])
        out = np.zeros((len(starts), EMBED_DIM), np.float32)
        for i in range(0, len(starts), self.batch_size):
            chunk = np.stack([mel[s:s + frames] for s in starts[i:i + self.batch_size]])
            with torch.inference_mode():
                out[i:i + len(chunk)] = self.net(torch.from_numpy(chunk)).numpy()
        return out

    def embed_utterance(self, audio_16k: np.ndarray, hop_s: float = 0.8) -> np.ndarray:
        """``(E,)`` unit embedding of a whole utterance: the normalized mean of its windows every ``hop_s``."""
        mel = compute_voice_mel(audio_16k, raise_volume(audio_16k))
        last = max(0, len(mel) - WINDOW_FRAMES)
        starts = np.unique(np.r_[np.arange(0, last + 1, max(1, int(round(hop_s * mel_frames_per_s())))), last])
        return normalize(self.embed_mel_windows(mel, starts).mean(axis=0))


def normalize(v: np.ndarray) -> np.ndarray:
    """L2-normalize along the last axis (zero vectors stay zero)."""
    v = np.asarray(v, np.float32)
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.where(n > 0, v / np.maximum(n, 1e-12), 0.0).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    from stages.audio import AudioConfig, decode_mono, standardize

    ap = argparse.ArgumentParser(prog="python -m stages.voice", description="GE2E voice embedding of files")
    ap.add_argument("files", nargs="+", help="audio or video files (the whole file is one utterance)")
    ap.add_argument("--model-path", default=None, help="local pretrained.pt (default: the resemblyzer wheel's)")
    args = ap.parse_args(argv)
    enc = VoiceEncoder(args.model_path)
    embs = []
    for f in args.files:
        samples, rate, _ = decode_mono(f)
        _, a16, _, _ = standardize(samples, rate, AudioConfig())
        embs.append(enc.embed_utterance(a16))
    out = {"model": enc.model_id, "files": args.files,
           "cosine": [[round(float(a @ b), 4) for b in embs] for a in embs]}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
