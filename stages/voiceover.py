"""voiceover: each kept clip's voice embedding, and clips whose voice is not their face track's.

Runs after active-speaker detection, when every clip has its speaker's face track (``track_id``).

* **Voice embedding.** A clip's GE2E embedding (256-d, unit length, ``stages/voice.py``) is the
  mean of the voice windows centred inside it. The offline diarizer leaves those windows on the
  item (``FileItem.voice_windows``); when another backend ran, or none, they are computed here
  over the clips, once per file. Stored per clip (``voice_embedding``) so users can group clips by
  speaker and pair a clip with another clip of the same voice.
* **Voice-over.** Within one face track, each clip's voice is compared with the mean voice of the
  track's other clips (``voice_track_cos``, cosine). Below ``min_track_voice_cos`` the clip's voice
  does not belong to the face on screen (a narrator, a dub, an interviewer over a cutaway): it is
  ledgered as ``voice_mismatch`` with the cosine and the threshold. A track with a single clip has
  nothing to compare against (``voice_track_cos`` null). With two clips that disagree neither can be
  trusted, so both go.

``python -m stages.voiceover FILE`` runs the job's stages up to here and prints each clip's track,
speaker label and voice cosine.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shards.spec import AUDIO_SR
from stages.base import Resources, Stage
from stages.item import MODEL_SR, FileItem, Reject, Segment, VoiceWindows

STAGE = "voiceover"


@dataclass
class VoiceoverConfig:
    enabled: bool = True  # False: no voice embeddings and no voice-over check
    model_path: str | None = None  # local GE2E pretrained.pt when the voice windows are computed here
    hop_s: float = 0.8  # seconds between voice windows computed here (the diarizer's own are reused)
    min_track_voice_cos: float = 0.7  # cosine: a clip's voice below this to the rest of its face track is voice_mismatch
    num_threads: int = 1  # torch intra-op threads


def mean_of_others(embs: np.ndarray, weights: np.ndarray, i: int) -> np.ndarray:
    """Unit mean of rows other than ``i``, weighted by ``weights`` (seconds)."""
    from stages.voice import normalize

    mask = np.arange(len(embs)) != i
    return normalize((embs[mask] * weights[mask, None]).sum(axis=0))


def check_tracks(segments: list[Segment], cfg: VoiceoverConfig) -> tuple[list[Segment], list[Reject]]:
    """Set ``voice_track_cos`` on each clip; return ``(keep, dropped)`` by the track voice check."""
    groups: dict[int, list[int]] = {}
    for k, seg in enumerate(segments):
        if seg.track_id is not None and seg.voice_embedding is not None:
            groups.setdefault(int(seg.track_id), []).append(k)
    cos: dict[int, float] = {}
    for members in groups.values():
        if len(members) < 2:
            continue
        embs = np.stack([np.asarray(segments[k].voice_embedding, np.float32) for k in members])
        w = np.asarray([segments[k].duration_s for k in members])
        for j, k in enumerate(members):
            cos[k] = float(embs[j] @ mean_of_others(embs, w, j))
    keep: list[Segment] = []
    dropped: list[Reject] = []
    for k, seg in enumerate(segments):
        c = cos.get(k)
        seg.voice_track_cos = None if c is None else round(c, 4)
        if c is not None and c < cfg.min_track_voice_cos:
            n = len(groups[int(seg.track_id)]) - 1  # type: ignore[arg-type]
            dropped.append(seg.reject(STAGE, "voice_mismatch", c, cfg.min_track_voice_cos,
                                      f"voice differs from the other {n} clip(s) of face track {seg.track_id} "
                                      f"(speaker {seg.speaker}): voice-over or dub"))
        else:
            keep.append(seg)
    return keep, dropped


@dataclass
class VoiceoverStage(Stage):
    name: str = STAGE
    cfg: VoiceoverConfig = field(default_factory=VoiceoverConfig)
    uses_actor: bool = True
    resources: Resources = field(default_factory=lambda: Resources(num_cpus=1, batch_size=1))
    _encoder: Any = field(default=None, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_encoder"] = None
        return state

    def setup(self) -> None:
        if self.cfg.hop_s <= 0:
            raise ValueError(f"voiceover.hop_s must be > 0 seconds, got {self.cfg.hop_s}")

    def encoder(self) -> Any:
        """The GE2E encoder, loaded on first need (most files reuse the diarizer's windows)."""
        if self._encoder is None:
            from stages.voice import VoiceEncoder

            self._encoder = VoiceEncoder(self.cfg.model_path, num_threads=self.cfg.num_threads)
        return self._encoder

    def compute_windows(self, item: FileItem) -> VoiceWindows:
        """Voice windows over the clips, when the diarizer left none.

        Works on the audio the item holds: the whole file, or a chunk's window (``item.audio_origin``
        is a whole number of the encoder's 10 ms mel hops); the volume is raised on that audio.
        """
        from stages.audio import resample_to
        from stages.voice import MEL_HOP_S, compute_voice_mel, raise_volume
        from stages.voice_diarizer import plan_windows

        audio = item.audio_16k
        if audio is None:  # asd released it: rebuild from the 24 kHz copy
            assert item.audio_24k is not None, "voiceover needs item.audio_24k or item.audio_16k"
            audio = resample_to(item.audio_24k, AUDIO_SR, MODEL_SR)
        spans = [(s.start_s, s.end_s) for s in item.segments]
        plan = plan_windows(spans, self.cfg.hop_s, item.total_samples / AUDIO_SR)
        mel = compute_voice_mel(audio, raise_volume(audio))
        origin_frames = int(round(item.audio_origin / AUDIO_SR / MEL_HOP_S))
        starts = np.maximum(np.asarray(plan.starts, int) - origin_frames, 0)
        embs = self.encoder().embed_mel_windows(mel, starts)
        return VoiceWindows(plan.centres_s, plan.owned, embs, [""] * len(plan.starts))

    def process_item(self, item: FileItem) -> None:
        from stages.voice_diarizer import embed_span

        if not self.cfg.enabled:
            item.record_skip(self.name, "voiceover.enabled is false")
            return
        if not item.segments:
            return
        windows = item.voice_windows
        if windows is None:
            windows = item.voice_windows = self.compute_windows(item)
            item.record_model(self.name, self.encoder().model_id)
        for seg in item.segments:
            emb = embed_span(windows, seg.start_s, seg.end_s)
            seg.voice_embedding = emb
        keep, dropped = check_tracks(item.segments, self.cfg)
        item.drop_segments(keep, dropped)


def main(argv: list[str] | None = None) -> int:
    """``python -m stages.voiceover FILE``: VAD segments, offline diarization, and the voice check with
    every segment taken as one face track (a single-face video), as JSON."""
    from stages.audio import AudioConfig, decode_mono, standardize
    from stages.diarize import DiarizeConfig, DiarizeStage
    from stages.vad import VadSegmentStage

    ap = argparse.ArgumentParser(prog="python -m stages.voiceover", description=main.__doc__)
    ap.add_argument("file")
    ap.add_argument("--min-track-voice-cos", type=float, default=VoiceoverConfig.min_track_voice_cos)
    args = ap.parse_args(argv)
    samples, rate, _ = decode_mono(args.file)
    a24, a16, _, _ = standardize(samples, rate, AudioConfig())
    item = FileItem(source_path=args.file, audio_24k=a24, audio_16k=a16)
    VadSegmentStage().process([item])
    DiarizeStage(cfg=DiarizeConfig(backend="voice")).process([item])
    for seg in item.segments:
        seg.track_id = 0
    segs = list(item.segments)
    VoiceoverStage(cfg=VoiceoverConfig(min_track_voice_cos=args.min_track_voice_cos)).process([item])
    reasons = {(r.start_s, r.end_s): r.reason for r in item.rejects if r.stage == STAGE}
    print(json.dumps({
        "model": item.provenance["models"].get("diarize"),
        "clips": [{"start_s": round(s.start_s, 3), "end_s": round(s.end_s, 3), "speaker": s.speaker,
                   "voice_track_cos": s.voice_track_cos,
                   "decision": reasons.get((s.start_s, s.end_s), "keep")} for s in segs],
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
