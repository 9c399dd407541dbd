"""asd: active-speaker detection: which face track, if any, is speaking in each segment.

For every segment the candidate tracks are the face tracks of the segment's
shot that cover at least ``min_track_coverage`` of it. An
:class:`ActiveSpeakerScorer` scores each candidate against the segment's audio;
the best one becomes ``seg.track_id`` with ``seg.asd_score`` (scorer-specific,
higher = speaking), ``seg.asd_lag_s`` (seconds, positive: the video lags the
audio) and ``seg.asd_scorer``.

Decisions, in order (each a ledger reason):

- ``no_face_track``: no track of the shot covers the segment (value: the best
  coverage, fraction of the segment's face frames).
- ``voice_over``: speech, but no candidate's mouth moves AND the best face is
  itself still (a photo or frozen frame under narration). value: the largest
  mouth motion, threshold ``min_mouth_motion``.
- ``off_screen_speaker``: speech, no candidate's mouth moves, but a face moves
  its head: the face is live, the voice belongs to someone not on screen.
- ``asd_low``: the best score is below ``min_asd_score``.
- ``asd_ambiguous``: more than one candidate and best - second < ``min_margin``.

The motion gate (:func:`measure_track_motion`) reads only the FaceTrack
(mouth opening and box), so it applies whichever scorer runs. Scorers:
``classical`` (stages/asd_classical.py, always available) and ``learned``
(stages/asd_learned.py, a Light-ASD checkpoint). A later contrastive lip-sync
model plugs in by implementing the same protocol.

Times are source seconds; ``item.vad_probs`` are silero probabilities per
32 ms window of ``item.audio_16k``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stages.asd_classical import ClassicalScorer
from stages.asd_learned import LearnedScorer
from stages.asd_scorer import (
    VAD_WINDOW,
    VAD_WINDOW_S,
    ActiveSpeakerScorer,
    AsdResult,
    sample_vad,
    slice_track,
)
from stages.asd_sync import SyncScorer
from stages.base import Resources, Stage
from stages.item import MODEL_SR, FaceTrack, FileItem, Reject, Segment


@dataclass
class AsdConfig:
    scorer: str = "classical"  # "classical" | "learned"
    learned_ckpt_path: str | None = None  # Light-ASD checkpoint (.safetensors or torch state dict); scorer=learned
    learned_threads: int = 1  # torch intra-op threads for the learned scorer
    min_asd_score: float = 0.3  # classical score (0-1) below which a segment is asd_low
    min_learned_score: float = 0.0  # learned score (mean speaking logit) below which a segment is asd_low
    max_lag_s: float = 0.2  # seconds: audio-visual lags searched, +-
    min_mouth_motion: float = 0.05  # mouth_open spread (P90 - P10, unitless) during speech; below: mouth still
    min_head_motion: float = 0.02  # box motion (fraction of face size); below: face still (voice_over)
    min_margin: float = 0.1  # best-vs-second score margin needed when several faces are candidates
    min_track_coverage: float = 0.5  # fraction of the segment's face frames a track must detect
    speech_threshold: float = 0.5  # silero probability counted as speech
    context_s: float = 0.5  # seconds of audio passed to the scorer either side of the segment
    sync_choice: bool = True  # several candidate faces: the lip-sync model (stages/asd_sync.py) picks the speaker
    sync_model_path: str | None = None  # lip-sync weights for sync_choice; None = the shipped default
    min_sync_margin: float = 0.03  # lip-sync confidence margin, best vs second face, needed by sync_choice


@dataclass
class TrackMotion:
    """How much a track's mouth and head move over a segment."""

    mouth_motion: float  # P90 - P10 of mouth_open over speech frames (unitless); NaN if no frames
    head_motion: float  # std of box centre / median box size + std of log box size; NaN if no frames
    coverage: float  # fraction of the segment's frames with a detection


def measure_coverage(track: FaceTrack, start_s: float, end_s: float, fps: float) -> float:
    """Fraction of the segment's frames (at ``fps`` Hz) that the track detected."""
    idx = slice_track(track, start_s, end_s)
    n_expected = max(1, int(round((end_s - start_s) * fps)))
    found = np.isfinite(track.boxes[idx, 0]).sum() if len(idx) else 0
    return float(min(1.0, found / n_expected))


def measure_track_motion(track: FaceTrack, start_s: float, end_s: float, speech: np.ndarray | None,
                         fps: float) -> TrackMotion:
    """Mouth and head motion of ``track`` inside ``[start_s, end_s)``.

    ``speech`` is a boolean per frame of the slice (from the VAD); the mouth spread is
    taken over speech frames when there are at least 5, else over all frames.
    """
    idx = slice_track(track, start_s, end_s)
    cov = measure_coverage(track, start_s, end_s, fps)
    if len(idx) == 0:
        return TrackMotion(float("nan"), float("nan"), cov)
    m = track.mouth_open[idx].astype(np.float64)
    ok = np.isfinite(m)
    if speech is not None and (ok & speech).sum() >= 5:
        ok = ok & speech
    mouth = float(np.percentile(m[ok], 90) - np.percentile(m[ok], 10)) if ok.sum() >= 2 else float("nan")
    b = track.boxes[idx].astype(np.float64)
    b = b[np.isfinite(b).all(axis=1)]
    if len(b) < 2:
        return TrackMotion(mouth, float("nan"), cov)
    size = np.sqrt(np.clip((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1e-6, None))
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    ref = float(np.median(size))
    head = float(np.hypot(cx.std(), cy.std()) / ref + np.log(size).std())
    return TrackMotion(mouth, head, cov)


def build_tracks_from_landmarks(lt: Any, shot_index: int = 0, track_id: int = 0) -> list[FaceTrack]:
    """One FaceTrack from a single-face ``blendshape_fit.landmarker.LandmarkTrack``.

    The box is the landmark extent; mouth opening and yaw come from ``stages.mouth``.
    Returns ``[]`` when no frame has a face. (The faces stage builds multi-face tracks;
    this is for the standalone CLI, tests and the bench.)
    """
    from stages.mouth import estimate_yaw_deg, measure_mouth_open

    mask = np.asarray(lt.face_mask, bool)
    if not mask.any():
        return []
    lms = np.asarray(lt.landmarks, np.float32)
    t = len(mask)
    boxes = np.full((t, 4), np.nan, np.float32)
    xy = lms[mask, :, :2]
    boxes[mask] = np.concatenate([xy.min(axis=1), xy.max(axis=1)], axis=1)
    mouth = np.full(t, np.nan, np.float32)
    mouth[mask] = measure_mouth_open(lms[mask])
    yaw = np.full(t, np.nan, np.float32)
    yaw[mask] = estimate_yaw_deg(np.asarray(lt.matrices)[mask])
    scores = np.where(mask, 1.0, np.nan).astype(np.float32)
    return [FaceTrack(track_id=track_id, shot_index=shot_index, times_s=np.asarray(lt.times_s, np.float64),
                      boxes=boxes, scores=scores, mouth_open=mouth, yaw_deg=yaw,
                      frame_w=int(lt.width_px), frame_h=int(lt.height_px))]


def make_scorer(cfg: AsdConfig) -> ActiveSpeakerScorer:
    """The configured scorer (models loaded here, once)."""
    if cfg.scorer == "classical":
        return ClassicalScorer(max_lag_s=cfg.max_lag_s, speech_threshold=cfg.speech_threshold)
    if cfg.scorer == "learned":
        return LearnedScorer(cfg.learned_ckpt_path, max_lag_s=cfg.max_lag_s, threads=cfg.learned_threads)
    raise ValueError(f"asd.scorer must be 'classical' or 'learned', got {cfg.scorer!r}")


def cut_audio_context(item: FileItem, start_s: float, end_s: float, context_s: float
                      ) -> tuple[np.ndarray, float, np.ndarray]:
    """``(audio_16k, audio_start_s, vad_probs)`` around ``[start_s, end_s)``, cut on a VAD window boundary."""
    assert item.audio_16k is not None
    w0 = max(0, int(np.floor((start_s - context_s) / VAD_WINDOW_S)))
    w1 = int(np.ceil((end_s + context_s) / VAD_WINDOW_S))
    audio = item.slice_audio_16k(w0 * VAD_WINDOW, w1 * VAD_WINDOW)
    probs = item.vad_probs[w0:w1] if item.vad_probs is not None else np.ones(w1 - w0, np.float32)
    return audio, w0 * VAD_WINDOW / MODEL_SR, np.asarray(probs, np.float32)


def decide(cands: list[tuple[FaceTrack, AsdResult, TrackMotion]], cfg: AsdConfig, min_score: float
           ) -> tuple[int, str | None, float | None, float | None, str]:
    """``(best index, reject reason or None, value, threshold, detail)`` for scored candidates (non-empty)."""
    scores = [r.score for _, r, _ in cands]
    best = int(np.argmax(scores))
    mouths = np.array([m.mouth_motion for _, _, m in cands], np.float64)
    heads = np.array([m.head_motion for _, _, m in cands], np.float64)
    max_mouth = float(np.nanmax(mouths)) if np.isfinite(mouths).any() else 0.0
    if max_mouth < cfg.min_mouth_motion:
        max_head = float(np.nanmax(heads)) if np.isfinite(heads).any() else 0.0
        reason = "off_screen_speaker" if max_head >= cfg.min_head_motion else "voice_over"
        return best, reason, max_mouth, cfg.min_mouth_motion, (
            f"speech but no visible mouth moves (mouth spread {max_mouth:.4f}); head motion {max_head:.4f} "
            f"vs min_head_motion {cfg.min_head_motion}")
    if scores[best] < min_score:
        return best, "asd_low", float(scores[best]), min_score, f"track {cands[best][0].track_id}"
    if len(cands) > 1:
        second = sorted(scores)[-2]
        margin = float(scores[best] - second)
        if margin < cfg.min_margin:
            return best, "asd_ambiguous", margin, cfg.min_margin, f"{len(cands)} faces; value = best - second score"
    return best, None, None, None, ""


@dataclass
class AsdStage(Stage):
    name: str = "asd"
    cfg: AsdConfig = field(default_factory=AsdConfig)
    uses_actor: bool = True
    resources: Resources = field(default_factory=lambda: Resources(num_cpus=1, batch_size=1))
    _scorer: ActiveSpeakerScorer | None = field(default=None, repr=False)
    _sync: SyncScorer | None = field(default=None, repr=False)  # created on the first segment with several faces

    def setup(self) -> None:
        if self._scorer is None:
            self._scorer = make_scorer(self.cfg)

    @property
    def min_score(self) -> float:
        return self.cfg.min_learned_score if self.cfg.scorer == "learned" else self.cfg.min_asd_score

    def find_candidates(self, item: FileItem, seg: Segment) -> tuple[list[FaceTrack], float]:
        """Tracks of the segment's shot covering enough of it, and the best coverage seen."""
        fps = item.face_fps or 25.0
        best_cov = 0.0
        out: list[FaceTrack] = []
        for tr in item.face_tracks:
            if tr.shot_index != seg.shot_index or tr.end_s < seg.start_s or tr.start_s >= seg.end_s:
                continue
            cov = measure_coverage(tr, seg.start_s, seg.end_s, fps)
            best_cov = max(best_cov, cov)
            if cov >= self.cfg.min_track_coverage:
                out.append(tr)
        return out, best_cov

    def score_segment(self, item: FileItem, seg: Segment) -> Reject | None:
        """Score the candidates of one segment, fill its ASD fields, and return a reject row or None."""
        assert self._scorer is not None
        tracks, best_cov = self.find_candidates(item, seg)
        if not tracks:
            return seg.reject(self.name, "no_face_track", best_cov, self.cfg.min_track_coverage,
                              detail="value: best fraction of the segment's frames a track of the shot detected")
        audio, a0, probs = cut_audio_context(item, seg.start_s, seg.end_s, self.cfg.context_s)
        fps = item.face_fps or 25.0
        cands = []
        for tr in tracks:
            res = self._scorer.score(tr, audio, a0, probs, seg.start_s, seg.end_s, item.source_path)
            idx = slice_track(tr, seg.start_s, seg.end_s)
            speech = sample_vad(probs, a0, tr.times_s[idx]) >= self.cfg.speech_threshold
            cands.append((tr, res, measure_track_motion(tr, seg.start_s, seg.end_s, speech, fps)))
        seg.extra["asd_candidates"] = [
            {"track_id": t.track_id, "score": round(r.score, 4), "lag_s": round(r.lag_s, 3),
             "mouth_motion": round(m.mouth_motion, 4), "head_motion": round(m.head_motion, 4),
             **{k: round(float(v), 4) for k, v in r.detail.items()}} for t, r, m in cands]
        scorer_name, min_score, cfg = self._scorer.name, self.min_score, self.cfg
        if len(cands) > 1 and self.cfg.sync_choice:
            if self._sync is None:
                self._sync = SyncScorer(self.cfg.sync_model_path, self.cfg.max_lag_s)
            cands = [(t, self._sync.score(t, audio, a0, probs, seg.start_s, seg.end_s, item.source_path), m)
                     for t, _, m in cands]
            for row, (_, r, _) in zip(seg.extra["asd_candidates"], cands, strict=True):
                row["sync_score"] = round(r.score, 4)
            scorer_name, min_score = self._sync.name, -0.5  # a face MediaPipe could not follow scores -1
            cfg = dataclasses.replace(self.cfg, min_margin=self.cfg.min_sync_margin)
        best, reason, value, threshold, detail = decide(cands, cfg, min_score)
        tr, res, _ = cands[best]
        seg.track_id, seg.asd_score, seg.asd_lag_s, seg.asd_scorer = tr.track_id, res.score, res.lag_s, scorer_name
        if reason is None:
            return None
        return seg.reject(self.name, reason, value, threshold, detail)

    def process_item(self, item: FileItem) -> None:
        if not item.probe.has_video:
            item.record_skip(self.name, "no video stream")
            item.audio_16k = None  # the last stage that needs the 16 kHz copy
            return
        if item.audio_16k is None:
            raise ValueError("asd needs item.audio_16k (run it before any stage that releases the 16 kHz audio)")
        self.setup()
        item.record_model(self.name, self._scorer.name)
        keep: list[Segment] = []
        dropped: list[Reject] = []
        for seg in item.segments:
            rej = self.score_segment(item, seg)
            if rej is None:
                keep.append(seg)
            else:
                dropped.append(rej)
        item.drop_segments(keep, dropped)
        item.audio_16k = None  # the last stage that needs the 16 kHz copy


def main(argv: list[str] | None = None) -> None:
    """``python -m stages.asd FILE``: VAD segments + landmark track + ASD for one file, as JSON."""
    from blendshape_fit.landmarker import FaceLandmarkExtractor
    from shards.spec import AUDIO_SR
    from stages.audio import AudioConfig, decode_mono, standardize
    from stages.vad import SileroVad, VadConfig, segment_speech

    ap = argparse.ArgumentParser(description="active-speaker detection for one file")
    ap.add_argument("file")
    ap.add_argument("--scorer", default="classical", choices=["classical", "learned"])
    ap.add_argument("--ckpt", default=None, help="Light-ASD checkpoint for --scorer learned")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    samples, rate, _ = decode_mono(args.file)
    a24, a16, _, _ = standardize(samples, rate, AudioConfig())
    item = FileItem(source_path=args.file, audio_24k=a24, audio_16k=a16)
    item.probe.has_video = True
    duration_s = len(a24) / AUDIO_SR
    item.vad_probs = SileroVad().compute_speech_probs(a16)
    spans = segment_speech(item.vad_probs, [(0.0, duration_s)], duration_s, VadConfig())
    item.segments = [Segment(int(round(s * AUDIO_SR)), int(round(e * AUDIO_SR)), shot_index=k) for s, e, k in spans]
    with FaceLandmarkExtractor(fps=25.0, max_side_px=640) as ex:
        lt = ex.extract(args.file, 0.0, duration_s)
    item.face_tracks, item.face_fps = build_tracks_from_landmarks(lt), lt.fps
    stage = AsdStage(cfg=AsdConfig(scorer=args.scorer, learned_ckpt_path=args.ckpt))
    segs = list(item.segments)
    stage.process([item])
    reasons = {(r.start_s, r.end_s): r.reason for r in item.rejects}
    out = [{"start_s": round(s.start_s, 3), "end_s": round(s.end_s, 3), "track": s.track_id,
            "score": s.asd_score, "lag_s": s.asd_lag_s, "scorer": s.asd_scorer,
            "decision": reasons.get((s.start_s, s.end_s), "keep"), "candidates": s.extra.get("asd_candidates")}
           for s in segs]
    print(json.dumps({"source": args.file, "segments": out, "rejects": [r.__dict__ for r in item.rejects],
                      "provenance": item.provenance}, indent=1, default=str))


if __name__ == "__main__":
    main()
