"""The evaluation items: which clips are tested, their reference and their target span.

Per test clip (``split.json`` of the run for ``--split test``, every clip for ``--split all``):

* **reference**: the first seconds (at most ``ref_max_s``, cut between two whisper words) of another clip
  of the same source (``ref_mode = "same_source"``), else of the clip of another source whose GE2E voice
  is closest, when its cosine reaches ``speaker_cos`` (``"same_speaker"``). Without either, the clip's
  own first words are the reference and the rest of the clip is the target (``"continuation"``, the
  F5-TTS continuation task; the reference then takes at most ``continuation_frac`` of the clip).
* **target**: the clip (or, in continuation, the part after the cut): its real log-mel, codes, 24 kHz
  audio and text (the words of the span, joined as the ASR stage joins them).

Frames are on the shards' 93.75 Hz grid; frame ``k`` of a clip starts at audio sample ``k * 256``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import soundfile as sf

from inference.reference import Reference
from shards.codes import CODE_DIM
from shards.reader import list_shard_parts, open_shard, read_row_group
from shards.spec import FRAME_RATE_HZ, HOP, N_MELS
from stages.text_norm import join_word_texts, normalize_for_model

CLIP_COLUMNS = ("clip_id", "source_path", "source_sha256", "speaker", "language", "text", "text_model", "words",
                "start_s", "n_frames", "mel", "visual", "audio_flac", "voice_embedding")
MIN_TARGET_WORDS = 2  # words a target span needs


@dataclass
class ClipData:
    """One curated clip with everything the harness reads (frames at 93.75 Hz, audio at 24 kHz)."""

    clip_id: str
    source: str  # source_sha256 (or path)
    source_name: str
    source_path: str
    start_s: float  # seconds of source time where the clip starts
    speaker: str | None
    language: str | None
    text: str
    words: list[dict[str, Any]]  # whisper words, times in seconds from the clip start
    mel: np.ndarray  # (N, 100) log-mel
    codes: np.ndarray  # (N, 61)
    audio: np.ndarray  # (n,) float32, 24 kHz
    voice: np.ndarray | None  # (256,) unit GE2E embedding

    @property
    def n_frames(self) -> int:
        return int(len(self.mel))


@dataclass
class EvalItem:
    """One test clip: its reference and target span."""

    clip: ClipData
    ref_clip_id: str
    ref_mode: str  # same_source | same_speaker | continuation
    ref: Reference  # mel, codes and text of the reference span
    ref_audio: np.ndarray  # 24 kHz audio of the reference span
    target_start: int  # first target frame in the clip
    target_text: str

    @property
    def target_mel(self) -> np.ndarray:
        return self.clip.mel[self.target_start:]

    @property
    def target_codes(self) -> np.ndarray:
        return self.clip.codes[self.target_start:]

    @property
    def target_audio(self) -> np.ndarray:
        return self.clip.audio[self.target_start * HOP:]

    @property
    def target_s(self) -> float:
        return len(self.target_mel) / FRAME_RATE_HZ


def decode_flac(data: bytes | None) -> np.ndarray:
    """The clip's stored 24 kHz audio as float32 (empty when missing)."""
    if not data:
        return np.zeros(0, np.float32)
    audio, _ = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    return np.asarray(audio, np.float32)


def load_clips(shards_dir: str) -> dict[str, ClipData]:
    """Every clip of the shards with mel, codes, text and words, by clip id."""
    fs, parts = list_shard_parts(str(shards_dir))
    out: dict[str, ClipData] = {}
    for path in parts:
        pf = open_shard(path, fs)
        cols = [c for c in CLIP_COLUMNS if c in pf.schema_arrow.names]
        for rg in range(pf.num_row_groups):
            for r in read_row_group(pf, path, rg, cols).to_pylist():
                if r.get("mel") is None or r.get("visual") is None or not r.get("text_model"):
                    continue
                start = float(r["start_s"])
                words = [{**w, "start_s": w["start_s"] - start, "end_s": w["end_s"] - start} for w in r.get("words") or []]
                voice = r.get("voice_embedding")
                out[r["clip_id"]] = ClipData(
                    clip_id=r["clip_id"], source=r.get("source_sha256") or r.get("source_path") or "",
                    source_name=(r.get("source_path") or "").rsplit("/", 1)[-1],
                    source_path=r.get("source_path") or "", start_s=start, speaker=r.get("speaker"),
                    language=r.get("language"), text=r.get("text") or r["text_model"], words=words,
                    mel=np.asarray(r["mel"], np.float32).reshape(-1, N_MELS),
                    codes=np.asarray(r["visual"], np.float32).reshape(-1, CODE_DIM),
                    audio=decode_flac(r.get("audio_flac")),
                    voice=None if voice is None else np.asarray(voice, np.float32))
    return out


def words_text(words: list[dict[str, Any]], language: str | None) -> str:
    return join_word_texts([w["word"] for w in words], language)


def cut_after_words(clip: ClipData, limit_s: float, min_rest: int = 0) -> tuple[int, int] | None:
    """``(k words, cut frame)``: the most words ending by ``limit_s`` that leave ``min_rest`` words after them;
    the cut lies half-way between word ``k - 1``'s end and word ``k``'s start. None when not even one fits."""
    words = clip.words
    k = sum(1 for w in words if w["end_s"] <= limit_s)
    k = min(k, len(words) - min_rest)
    if k < 1:
        return None
    cut_s = words[k - 1]["end_s"] if k == len(words) else (words[k - 1]["end_s"] + words[k]["start_s"]) / 2
    return k, min(max(int(round(cut_s * FRAME_RATE_HZ)), 1), clip.n_frames)


def reference_span(clip: ClipData, cut: tuple[int, int] | None, name: str) -> tuple[Reference, np.ndarray]:
    """The clip's first ``cut`` frames and words as a :class:`Reference` (the whole clip when ``cut`` is None)."""
    if cut is None:
        text, end = clip.text, clip.n_frames
    else:
        k, end = cut
        text = words_text(clip.words[:k], clip.language)
    ref = Reference(name=name, mel=clip.mel[:end], codes=clip.codes[:end], text=text,
                    text_model=normalize_for_model(text, clip.language) or clip.text, language=clip.language,
                    source=clip.source_name, start_s=0.0, end_s=end / FRAME_RATE_HZ)
    return ref, clip.audio[:end * HOP]


def choose_reference_clip(clip: ClipData, pool: dict[str, ClipData], speaker_cos: float) -> tuple[str, str] | None:
    """``(clip id, mode)`` of the reference clip for ``clip``: same source first, else the closest voice."""
    same = sorted(c for c, d in pool.items() if c != clip.clip_id and d.source == clip.source)
    if same:
        return same[0], "same_source"
    if clip.voice is None:
        return None
    best, best_cos = None, speaker_cos
    for cid, d in sorted(pool.items()):
        if d.source == clip.source or d.voice is None:
            continue
        cos = float(np.dot(clip.voice, d.voice))
        if cos >= best_cos:
            best, best_cos = cid, cos
    return (best, "same_speaker") if best is not None else None


def build_item(clip: ClipData, pool: dict[str, ClipData], ref_max_s: float = 3.0, speaker_cos: float = 0.76,
               continuation_frac: float = 0.4) -> EvalItem | str:
    """The item of ``clip``, or a string saying why it cannot be evaluated."""
    choice = choose_reference_clip(clip, pool, speaker_cos)
    if choice is not None:
        other = pool[choice[0]]
        ref, ref_audio = reference_span(other, cut_after_words(other, ref_max_s), f"{other.clip_id}-ref")
        return EvalItem(clip, other.clip_id, choice[1], ref, ref_audio, 0, clip.text)
    cut = cut_after_words(clip, min(ref_max_s, continuation_frac * clip.n_frames / FRAME_RATE_HZ), MIN_TARGET_WORDS)
    if cut is None:
        return f"{clip.clip_id}: no other clip of its source or speaker, and too few words to continue"
    ref, ref_audio = reference_span(clip, cut, f"{clip.clip_id}-prefix")
    target = words_text(clip.words[cut[0]:], clip.language)
    return EvalItem(clip, clip.clip_id, "continuation", ref, ref_audio, cut[1], target)


def with_reference(item: EvalItem, ref: Reference) -> EvalItem:
    """A copy of ``item`` with another reference (tests)."""
    return replace(item, ref=ref)
