"""The model-based scorers of the harness, each loaded once and naming its model and version.

* :class:`AsrScorer`: WER / CER. Whisper loaded exactly as the ``asr`` curation stage loads it
  (``stages.asr.AsrConfig().backend_options()`` -> ``stages.whisper_backends.load_backend``: the offline
  multilingual whisper base, with tiny.en transcribing English), decoding at temperature 0 in the clip's
  language. The error rate is ``stages.text_norm.compute_wer``: WER on normalized words, CER for Chinese
  and Japanese.
* :class:`VoiceScorer`: SIM-A, the cosine of GE2E voice embeddings (``stages.voice.VoiceEncoder``, the
  resemblyzer weights) of the reference audio and the generated audio, in [-1, 1].
* :class:`SyncScorer`: the project's lip-sync model (``model.sync``, the shipped ``sync_v1`` weights by
  default) on a mel and its codes: the best audio-visual offset (seconds, positive = audio late), the
  confidence (median minus minimum ``1 - cos`` distance over lags, SyncNet's Sync-C in our feature space;
  higher is better) and the minimum distance (Sync-D analogue, ``1 - cos``; lower is better).

Audio is 24 kHz mono float32 (the shards' rate); scorers resample to 16 kHz themselves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shards.spec import AUDIO_SR

ASR_RATE = 16000  # Hz: whisper's and GE2E's input rate


def to_16k(audio_24k: np.ndarray) -> np.ndarray:
    """24 kHz mono float32 -> 16 kHz (soxr HQ, as the curation's audio stage)."""
    from stages.audio import resample_to

    return resample_to(np.asarray(audio_24k, np.float32), AUDIO_SR, ASR_RATE)


def error_rate(reference: str, hypothesis: str, language: str | None) -> float:
    """WER of ``hypothesis`` against ``reference`` (CER for Chinese / Japanese), 0 = perfect, can exceed 1."""
    from stages.text_norm import compute_wer

    return float(compute_wer(reference, hypothesis, language))


def error_kind(language: str | None) -> str:
    """``"cer"`` for the languages scored by characters, else ``"wer"``."""
    from stages.text_norm import UNSPACED_LANGUAGES

    return "cer" if (language or "").split("-")[0].lower() in UNSPACED_LANGUAGES else "wer"


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors (NaN when either is zero)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return float("nan")
    return float(a @ b / (na * nb))


@dataclass
class AsrScorer:
    """Whisper as the ASR stage loads it; :meth:`score` returns the error rate and the transcript."""

    options: Any = None  # stages.whisper_backends.BackendOptions; None: the asr stage's defaults
    backend: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.backend is None:
            from stages.asr import AsrConfig
            from stages.whisper_backends import load_backend

            self.backend = load_backend(self.options or AsrConfig().backend_options())
        self.model_id = str(self.backend.model_id)

    def transcribe(self, audio_24k: np.ndarray, language: str | None) -> str:
        """Whisper's text of 24 kHz audio, decoded in ``language`` (None: detected)."""
        if len(audio_24k) < AUDIO_SR // 10:
            return ""
        return self.backend.transcribe(to_16k(audio_24k), language).text

    def score(self, audio_24k: np.ndarray, target_text: str, language: str | None) -> tuple[float, str]:
        """``(error rate against target_text, transcript)``."""
        hyp = self.transcribe(audio_24k, language)
        return error_rate(target_text, hyp, language), hyp


@dataclass
class VoiceScorer:
    """GE2E voice embeddings (``stages.voice``) and their cosine."""

    model_path: str | None = None

    def __post_init__(self) -> None:
        from stages.voice import VoiceEncoder

        self.encoder = VoiceEncoder(self.model_path)
        self.model_id = self.encoder.model_id

    def embed(self, audio_24k: np.ndarray) -> np.ndarray:
        """``(256,)`` unit embedding of a whole utterance."""
        return self.encoder.embed_utterance(to_16k(audio_24k))

    def similarity(self, reference_24k: np.ndarray, generated_24k: np.ndarray) -> float:
        """SIM-A: cosine of the two utterances' embeddings."""
        return cosine(self.embed(reference_24k), self.embed(generated_24k))


@dataclass
class SyncScorer:
    """The lip-sync model on a clip's mel and codes (``model.sync.scoring.score_clip``)."""

    model_path: str | None = None  # None: the shipped default weights
    max_lag_s: float = 0.6  # seconds: lags searched either way
    near_lag_s: float = 0.2  # seconds: the range of the near confidence

    def __post_init__(self) -> None:
        from model.sync.io import load_sync_model

        self.model, self.model_id = load_sync_model(self.model_path)

    def score(self, mel: np.ndarray, codes: np.ndarray) -> dict[str, float]:
        """``sync_conf``, ``sync_dist``, ``sync_offset_s`` (NaN when the clip is too short to score)."""
        from model.sync.scoring import score_clip

        try:
            s = score_clip(self.model, mel, codes, self.max_lag_s, self.near_lag_s)
        except ValueError:
            return {"sync_conf": math.nan, "sync_dist": math.nan, "sync_offset_s": math.nan}
        return {"sync_conf": s.conf, "sync_dist": s.dist, "sync_offset_s": s.offset_s}
