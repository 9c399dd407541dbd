"""``--render``: lip sync on the rendered video, after MediaPipe re-detection.

Scoring the codes a model emits measures the motion model; what a viewer sees is the rendered face. For each
clip that gets a strip, every system's codes (93.75 Hz) are rendered onto the reference image by the baseline
mesh-warp renderer at ``RENDER_FPS`` (the frames stay in memory: no encoding), the project's landmarker re-detects
the face in each frame (``FaceLandmarkExtractor.extract_arrays``, tracking on), the least-squares fit turns the
landmarks back into 61-d codes (``blendshape_fit.track.fit_track``, identity offset on), those are interpolated
onto the mel grid, and the lip-sync model scores them against the system's own mel: ``sync_conf_rendered`` and
``sync_dist_rendered`` (same units as ``sync_conf`` / ``sync_dist``, 1 - cos).

With ``--syncnet-path`` (joonson's ``syncnet_v2.model``), SyncNet's own Sync-C and Sync-D are computed on the
same rendered frames as the papers compute them (``model.sync.syncnet.score_syncnet``: 224-px BGR crops of 1.4x the
re-detected landmark box at 25 fps against 13 MFCCs of the system's speech at 16 kHz): ``syncnet_c_rendered``,
``syncnet_d_rendered``. The speech is the system's own (vocoded) audio, or the clip's for audio-driven systems.

Rows: every system whose codes are rendered. ``reconstruction`` renders the clip's real codes: the ceiling the
renderer and the re-detection leave. ``ground_truth`` is the real video, which the curation already re-detected
(its ``sync_conf``); it gets no rendered value. At most ``MAX_RENDER_S`` seconds of each clip are rendered.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from shards.spec import AUDIO_SR, FRAME_RATE, FRAME_RATE_HZ, HOP, mel_frame_times
from stages.item import MODEL_SR

log = logging.getLogger(__name__)

RENDER_FPS = 25.0  # frames per second of the rendered video
MAX_RENDER_S = 6.0  # seconds of a clip rendered (the start of its target span)
MIN_FACE_FRAC = 0.8  # fraction of rendered frames where the face must be found again for a score
NOT_RENDERED = ("ground_truth", "audio_swapped")  # the real video, and the real video's codes under other audio


class RenderedSync:
    """Renderer, landmarker and fitter, built once; :meth:`score` per system output."""

    def __init__(self, sync_scorer: Any, size: int = 256, syncnet_path: str | None = None) -> None:
        from blendshape_fit.face_model import load_face_model
        from blendshape_fit.fit import BlendshapeFitter
        from blendshape_fit.landmarker import FaceLandmarkExtractor
        from inference.render import make_renderer

        self.sync = sync_scorer
        self.renderer = make_renderer("baseline", size)
        self.extractor = FaceLandmarkExtractor(fps=RENDER_FPS)
        self.fitter = BlendshapeFitter(load_face_model())
        self.model_id = f"{self.renderer.model_id} -> {self.extractor.model_id} -> {self.sync.model_id}"
        self.syncnet = None
        if syncnet_path:
            from model.sync.syncnet import load_syncnet

            self.syncnet = load_syncnet(syncnet_path)
            self.model_id += f" (+ SyncNet {Path(syncnet_path).name})"

    def close(self) -> None:
        self.extractor.close()

    def redetect(self, ref_rgb: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray | None, float, Any, list]:
        """Codes ``(N, 61)`` on the mel grid re-detected from ``codes (N, 61)`` rendered onto ``ref_rgb`` (None when
        faces are found in fewer than ``MIN_FACE_FRAC`` of the frames), that fraction, the landmark track and the
        rendered frames ``(H, W, 3)`` uint8 RGB at ``RENDER_FPS``."""
        from blendshape_fit.resample import resample_at_times
        from blendshape_fit.track import fit_track
        from inference.codes_io import CodeTrack, resample_codes
        from inference.render import render_frames

        out = resample_codes(CodeTrack(np.asarray(codes, np.float32), FRAME_RATE), RENDER_FPS)
        frames = [np.asarray(f) for f in render_frames(self.renderer, ref_rgb, out)]
        track = self.extractor.extract_arrays(frames)
        found = float(track.face_mask.mean()) if track.n_frames else 0.0
        if found < MIN_FACE_FRAC:
            return None, found, track, frames
        fit = fit_track(self.fitter, track)
        return resample_at_times(fit.codes, track.times_s, mel_frame_times(0.0, len(codes))), found, track, frames

    def score(self, ref_rgb: np.ndarray, codes: np.ndarray, mel: np.ndarray,
              audio: np.ndarray | None = None) -> dict[str, float]:
        """``sync_conf_rendered``, ``sync_dist_rendered``, ``face_found_rendered`` and, with SyncNet and the
        system's 24 kHz ``audio``, ``syncnet_c_rendered`` / ``syncnet_d_rendered`` (NaN when not scorable)."""
        n = min(len(codes), len(mel), int(MAX_RENDER_S * FRAME_RATE_HZ))
        redetected, found, track, frames = self.redetect(ref_rgb, np.asarray(codes)[:n])
        row = {"sync_conf_rendered": math.nan, "sync_dist_rendered": math.nan, "face_found_rendered": found}
        if redetected is None:
            return row
        s = self.sync.score(np.asarray(mel)[:n], redetected)
        row.update(sync_conf_rendered=s["sync_conf"], sync_dist_rendered=s["sync_dist"])
        if self.syncnet is not None and audio is not None:
            row.update(score_syncnet_frames(self.syncnet, frames, track, np.asarray(audio)[:n * HOP]))
        return row


def score_syncnet_frames(model: Any, frames: list[np.ndarray], track: Any, audio_24k: np.ndarray) -> dict[str, float]:
    """SyncNet's Sync-C / Sync-D of 25 fps RGB ``frames`` (face boxes from ``track``'s landmarks) against 24 kHz
    speech, cropped and featurized as ``stages.sync.measure_syncnet`` does for curated clips."""
    import cv2
    import torch

    from blendshape_fit.resample import interpolate_rows
    from model.sync.syncnet import CROP_PX, score_syncnet
    from stages.asd_learned import compute_mfcc
    from stages.audio import resample_to

    xy = track.landmarks[..., :2]
    face = np.flatnonzero(track.face_mask)
    boxes = np.concatenate([np.nanmin(xy[face], axis=1), np.nanmax(xy[face], axis=1)], axis=1).astype(np.float64)
    crops = []
    for i, rgb in enumerate(frames):
        box = interpolate_rows(boxes, track.times_s[face], np.array([track.times_s[i]]))[0]
        cx, cy, side = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, 1.4 * max(box[2] - box[0], box[3] - box[1])
        m = np.float32([[CROP_PX / side, 0, CROP_PX / 2 - cx * CROP_PX / side],
                        [0, CROP_PX / side, CROP_PX / 2 - cy * CROP_PX / side]])
        crop = cv2.warpAffine(rgb, m, (CROP_PX, CROP_PX), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        crops.append(crop[:, :, ::-1].copy())  # BGR, as the authors read frames with OpenCV
    mfcc = compute_mfcc(resample_to(np.asarray(audio_24k, np.float32), AUDIO_SR, MODEL_SR))
    try:
        s = score_syncnet(model, torch.from_numpy(np.stack(crops)), torch.from_numpy(mfcc))
    except ValueError:  # too short for SyncNet's windows
        return {"syncnet_c_rendered": math.nan, "syncnet_d_rendered": math.nan}
    return {"syncnet_c_rendered": s.conf, "syncnet_d_rendered": s.min_dist}


def score_rendered_sync(entries: list[dict[str, Any]], sync_scorer: Any, syncnet_path: str | None = None
                        ) -> tuple[dict[tuple[str, str], dict], str]:
    """``{(system, clip_id): row}`` for the strip clips (``entries`` as the harness collects them, with
    ``outputs``, ``mels`` and ``audios`` per system), and the chain's model id."""
    from inference.video_io import read_frame_at

    meter = RenderedSync(sync_scorer, syncnet_path=syncnet_path)
    out: dict[tuple[str, str], dict] = {}
    try:
        for entry in entries:
            item, ref_clip = entry["item"], entry["ref_clip"]
            ref_rgb = read_frame_at(ref_clip.source_path, ref_clip.start_s)
            for system, codes in entry["outputs"].items():
                if system in NOT_RENDERED:
                    continue
                try:
                    out[(system, item.clip.clip_id)] = meter.score(ref_rgb, codes, entry["mels"][system],
                                                                   entry.get("audios", {}).get(system))
                except Exception as e:  # a face the renderer cannot use must not lose the whole evaluation
                    log.warning("eval: no rendered sync for %s/%s: %s: %s", system, item.clip.clip_id,
                                type(e).__name__, e)
    finally:
        meter.close()
    return out, meter.model_id
