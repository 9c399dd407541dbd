"""sync: is the face on screen saying this audio, and when? The lip-sync model on every kept clip.

After ``visual`` (codes on the mel grid) the lip-sync model (``model/sync``, the trained default
unless ``sync.model_path`` names another) scores each clip's mel against its mouth and jaw codes
at every lag within ``max_lag_s`` (``model.sync.scoring``). Per clip it stores:

* ``av_offset_s``: the best lag, seconds; positive when the audio is late (the sound of a lip
  movement comes after it), negative when it is early;
* ``sync_dist``: the mean ``1 - cos`` distance there (0 = perfectly matched);
* ``sync_conf``: how much that lag stands out, median distance minus the best one; a dubbed clip
  (someone else's voice) has a flat curve and a low confidence;
* the lip-sync score the clip is kept on, ``sync_conf + (1 - sync_dist) - 0.5 |av_offset_s|``
  (``shards.sync_score``): the confidence plus how well lips and sound match at that lag, less a
  cost for a lag far from 0;
* ``av_shift_applied_s``: the offset corrected, see below; ``sync_model``: the weights that ran.

Decisions, each a ledger row with its value and threshold:

- ``av_offset``: the clip is confidently in sync at a lag beyond ``max_correct_s`` (value: the
  offset in seconds): too far to trust a correction;
- ``lip_sync_low``: the lip-sync score within ``max_correct_s`` is below ``min_score`` (value: the
  score): no lag stands out, or lips and sound match poorly at the one that does;
- otherwise an offset of at least half a mel frame is corrected: the codes, MediaPipe's scores
  and the face boxes are re-interpolated from the video frames at ``t - offset``, so the audio
  (and the clip id, text and words) stays as it was and the video moves onto it.

CLI: ``python -m stages.sync VIDEO [--audio OTHER_AUDIO] [--start S --end S]`` prints the scores
of that span, with the file's own audio or with OTHER_AUDIO in its place (to try dubbing by hand).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from blendshape_fit.resample import interpolate_rows, resample_at_times
from model.sync.io import load_sync_model
from model.sync.model import SyncModel
from model.sync.scoring import MIN_PAIRS, SyncScore, score_clip
from model.sync.scoring import STRIDE as SCORE_STRIDE
from model.sync.syncnet import CROP_PX, SyncNet, load_syncnet, score_syncnet
from model.sync.syncnet import VIDEO_FPS as SYNCNET_FPS
from shards.spec import AUDIO_SR, FRAME_RATE_HZ, mel_frame_times
from shards.sync_score import LAG_COST_PER_S
from stages.base import Resources, Stage
from stages.item import MODEL_SR, FileItem, Reject, Segment, VideoFrames
from stages.visual import to_video_grid


@dataclass
class SyncConfig:
    enabled: bool = True  # false: skip the stage (recorded), e.g. to curate the corpus a first sync model learns from
    model_path: str | None = None  # lip-sync weights (.safetensors, or a train-sync run); None = the shipped default
    max_lag_s: float = 0.6  # seconds: audio-visual lags searched, +- (SyncNet's 15 frames at 25 fps)
    max_correct_s: float = 0.2  # seconds: offsets up to this are corrected; a confident larger one is av_offset
    min_score: float = 0.50  # lip-sync score (shards.sync_score: sync_conf + (1 - sync_dist) less the lag's cost; 1 - cos
    # units) below which a clip is lip_sync_low (docs/sync.md: calibration on held-out speakers)
    min_offset_conf: float = 0.2  # confidence (all lags) a lag beyond max_correct_s needs to count as av_offset
    torch_threads: int = 1  # intra-op threads of the model (per actor)
    syncnet_path: str | None = None  # joonson's syncnet_v2.model: also report SyncNet's Sync-C / Sync-D per clip


def shift_video(seg: Segment, frames: VideoFrames, shift_s: float) -> None:
    """Re-interpolate the segment's video-side columns from source time ``t - shift_s`` onto its grids."""
    n = seg.visual.shape[0] if seg.visual is not None else 0
    seg.visual = resample_at_times(frames.codes, frames.times_s, mel_frame_times(seg.start_s - shift_s, n))
    seg.mp_blendshapes, seg.face_boxes = to_video_grid(frames, seg.start_s - shift_s, seg.end_s - shift_s)


@dataclass
class SyncStage(Stage):
    """Lip-sync scores, offset correction and the sync rejects. Holds the model (actor)."""

    name: str = "sync"
    cfg: SyncConfig = field(default_factory=SyncConfig)
    resources: Resources = field(default_factory=lambda: Resources(num_cpus=1.0))
    uses_actor: bool = True
    _model: SyncModel | None = field(default=None, init=False, repr=False)
    _model_id: str = field(default="", init=False, repr=False)
    _syncnet: Any = field(default=None, init=False, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_model"] = state["_syncnet"] = None
        return state

    def setup(self) -> None:
        if self._model is None and self.cfg.enabled:
            torch.set_num_threads(self.cfg.torch_threads)
            self._model, self._model_id = load_sync_model(self.cfg.model_path)
            if self.cfg.syncnet_path:
                self._syncnet = load_syncnet(self.cfg.syncnet_path)

    @property
    def min_duration_s(self) -> float:
        """Seconds a clip needs for the lip-sync model to score it (a window and a few strides)."""
        assert self._model is not None
        return (self._model.cfg.window_frames + MIN_PAIRS * SCORE_STRIDE) / FRAME_RATE_HZ

    def score(self, seg: Segment) -> SyncScore:
        assert self._model is not None and seg.mel is not None and seg.visual is not None
        return score_clip(self._model, seg.mel, seg.visual, self.cfg.max_lag_s, self.cfg.max_correct_s)

    def decide(self, seg: Segment, s: SyncScore) -> Reject | None:
        """The ledger row that drops ``seg``, or None after recording (and applying) its offset."""
        c = self.cfg
        far = abs(s.offset_s) > c.max_correct_s + 1e-9
        if far and s.conf >= c.min_offset_conf:
            return seg.reject(self.name, "av_offset", s.offset_s, c.max_correct_s,
                              detail=f"in sync {s.offset_s * 1000:+.0f} ms away (conf {s.conf:.3f}); "
                                     "value: offset in seconds, positive = audio late")
        seg.av_offset_s, seg.sync_dist, seg.sync_conf = s.near_offset_s, s.near_dist, s.conf_near
        if s.score_near < c.min_score:
            return seg.reject(self.name, "lip_sync_low", s.score_near, c.min_score,
                              detail=f"value: sync_conf + (1 - sync_dist) - {LAG_COST_PER_S:g} |lag| within "
                                     f"{c.max_correct_s:g} s; conf "
                                     f"{s.conf_near:.3f}, dist {s.near_dist:.3f} at lag {s.near_offset_s * 1000:+.0f} ms")
        seg.av_shift_applied_s = 0.0
        if abs(s.near_offset_s) >= 0.5 / FRAME_RATE_HZ and seg.video_frames is not None:
            shift_video(seg, seg.video_frames, s.near_offset_s)
            seg.av_shift_applied_s = s.near_offset_s
        return None

    def process_item(self, item: FileItem) -> None:
        if not self.cfg.enabled:
            item.record_skip(self.name, "sync.enabled is false")
            return
        if not item.probe.has_video:
            item.record_skip(self.name, "no video stream")
            return
        self.setup()
        item.record_model(self.name, self._model_id)
        keep: list[Segment] = []
        rejects: list[Reject] = []
        for seg in item.segments:
            try:
                s = self.score(seg)
            except ValueError as e:  # shorter than the model's windows: nothing to measure
                rejects.append(seg.reject(self.name, "too_short_for_sync", seg.duration_s, self.min_duration_s,
                                          detail=f"seconds; {e}"))
                continue
            seg.extra["sync"] = {k: round(v, 4) for k, v in s.to_dict().items()}
            failed = self.decide(seg, s)
            seg.sync_model = self._model_id
            if failed is None and self._syncnet is not None and seg.video_frames is not None:
                seg.extra["syncnet"] = measure_syncnet(self._syncnet, item, seg)
            seg.video_frames = None  # done with the per-frame face: nothing downstream needs it
            if failed is None:
                keep.append(seg)
            else:
                rejects.append(failed)
        item.drop_segments(keep, rejects)


# --------------------------------------------------------------------------- SyncNet's numbers


def measure_syncnet(model: SyncNet, item: FileItem, seg: Segment) -> dict[str, float]:
    """Sync-C, Sync-D and offset of a kept clip as SyncNet's evaluation computes them.

    The speaker's face is cropped (a square 1.4 times the landmark box, 224 px, BGR) from the
    source frames on SyncNet's 25 fps grid, at the video time the clip's rows come from
    (``t - av_shift_applied_s``); the audio is the clip's own 16 kHz audio as MFCCs.
    """
    import cv2

    from blendshape_fit.landmarker import iterate_grid_frames
    from stages.asd_learned import compute_mfcc
    from stages.audio import resample_to

    frames = seg.video_frames
    assert frames is not None and item.audio_24k is not None
    shift = seg.av_shift_applied_s or 0.0
    t0, t1 = seg.start_s - shift, seg.end_s - shift
    face = np.flatnonzero(frames.face_mask)
    crops: list[np.ndarray] = []
    last: np.ndarray | None = None
    for _i, t, index, rgb, _wh in iterate_grid_frames(item.source_path, t0, t1, SYNCNET_FPS, 100000):
        if index < 0 or not face.size:
            break
        rgb = last = rgb if rgb is not None else last  # a repeated source frame comes as None
        box = interpolate_rows(frames.boxes[face].astype(np.float64), frames.times_s[face], np.array([t]))[0]
        cx, cy, side = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, 1.4 * max(box[2] - box[0], box[3] - box[1])
        m = np.float32([[CROP_PX / side, 0, CROP_PX / 2 - cx * CROP_PX / side],
                        [0, CROP_PX / side, CROP_PX / 2 - cy * CROP_PX / side]])
        crop = cv2.warpAffine(rgb, m, (CROP_PX, CROP_PX), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        crops.append(crop[:, :, ::-1].copy())  # BGR, as the authors read frames with OpenCV
    # The 16 kHz copy is released after asd: resample the clip's own 24 kHz audio, as SyncNet wants 16 kHz.
    a16 = resample_to(item.audio_24k[seg.start_sample:seg.end_sample], AUDIO_SR, MODEL_SR)
    s = score_syncnet(model, torch.from_numpy(np.stack(crops)), torch.from_numpy(compute_mfcc(a16)))
    return {"sync_c": round(s.conf, 4), "sync_d": round(s.min_dist, 4), "offset_frames": s.offset_frames,
            "av_offset_s": round(s.av_offset_s, 4)}


# --------------------------------------------------------------------------- command line


def measure_span(video: str, audio_path: str | None, start_s: float, end_s: float | None,
                 model_path: str | None = None) -> dict[str, Any]:
    """Score ``[start_s, end_s)`` of ``video``'s face against its own audio or ``audio_path``'s (same span)."""
    from blendshape_fit.landmarker import probe_duration_s
    from stages.audio import AudioConfig, decode_mono, standardize
    from stages.mel import LogMel
    from stages.visual import VisualCodesStage

    samples, rate, _ = decode_mono(audio_path or video)
    a24 = standardize(samples, rate, AudioConfig())[0]
    end = end_s if end_s is not None else min(probe_duration_s(video), len(a24) / AUDIO_SR)
    seg = Segment(start_sample=int(round(start_s * AUDIO_SR)), end_sample=int(round(end * AUDIO_SR)))
    if seg.end_sample > len(a24):
        raise ValueError(f"the audio is {len(a24) / AUDIO_SR:.2f} s long, shorter than the span")
    seg.mel = LogMel()(a24[seg.start_sample:seg.end_sample])
    item = FileItem(source_path=video)
    item.probe.has_video = True
    item.segments = [seg]
    VisualCodesStage().process_item(item)
    if not item.segments:
        return {"video": video, "audio": audio_path or video, "rejects": [r.__dict__ for r in item.rejects]}
    model, model_id = load_sync_model(model_path)
    s = score_clip(model, seg.mel, item.segments[0].visual)
    return {"video": video, "audio": audio_path or video, "start_s": start_s, "end_s": end,
            "sync_conf": s.conf_near, "sync_dist": s.near_dist, "sync_score": s.score_near,
            "av_offset_s": s.near_offset_s, "conf_all_lags": s.conf, "offset_all_lags_s": s.offset_s, "sync_model": model_id}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="lip-sync scores of a video span, with its own or another audio")
    ap.add_argument("video")
    ap.add_argument("--audio", default=None, help="another file whose audio replaces the video's (dubbing test)")
    ap.add_argument("--start", type=float, default=0.0, help="span start, seconds")
    ap.add_argument("--end", type=float, default=None, help="span end, seconds (default: the shorter stream's end)")
    ap.add_argument("--model-path", default=None, help="lip-sync weights (default: the shipped model)")
    args = ap.parse_args(argv)
    print(json.dumps(measure_span(args.video, args.audio, args.start, args.end, args.model_path), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
