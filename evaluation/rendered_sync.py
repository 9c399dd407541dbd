"""``--render``: lip sync on the rendered video, after MediaPipe re-detection.

Scoring the codes a model emits measures the motion model; what a viewer sees is the rendered face. For each
clip that gets a strip, every system's codes (93.75 Hz) are rendered onto the reference image by the baseline
mesh-warp renderer at ``RENDER_FPS`` (the frames stay in memory: no encoding), the project's landmarker re-detects
the face in each frame (``FaceLandmarkExtractor.extract_arrays``, tracking on), the least-squares fit turns the
landmarks back into 61-d codes (``blendshape_fit.track.fit_track``, identity offset on), those are interpolated
onto the mel grid, and the lip-sync model scores them against the system's own mel: ``sync_conf_rendered`` and
``sync_dist_rendered`` (same units as ``sync_conf`` / ``sync_dist``, 1 - cos).

Rows: every system whose codes are rendered. ``reconstruction`` renders the clip's real codes: the ceiling the
renderer and the re-detection leave. ``ground_truth`` is the real video, which the curation already re-detected
(its ``sync_conf``); it gets no rendered value. At most ``MAX_RENDER_S`` seconds of each clip are rendered.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from shards.spec import FRAME_RATE, FRAME_RATE_HZ, mel_frame_times

log = logging.getLogger(__name__)

RENDER_FPS = 25.0  # frames per second of the rendered video
MAX_RENDER_S = 6.0  # seconds of a clip rendered (the start of its target span)
MIN_FACE_FRAC = 0.8  # fraction of rendered frames where the face must be found again for a score
NOT_RENDERED = ("ground_truth", "audio_swapped")  # the real video, and the real video's codes under other audio


class RenderedSync:
    """Renderer, landmarker and fitter, built once; :meth:`score` per system output."""

    def __init__(self, sync_scorer: Any, size: int = 256) -> None:
        from blendshape_fit.face_model import load_face_model
        from blendshape_fit.fit import BlendshapeFitter
        from blendshape_fit.landmarker import FaceLandmarkExtractor
        from inference.render import make_renderer

        self.sync = sync_scorer
        self.renderer = make_renderer("baseline", size)
        self.extractor = FaceLandmarkExtractor(fps=RENDER_FPS)
        self.fitter = BlendshapeFitter(load_face_model())
        self.model_id = f"{self.renderer.model_id} -> {self.extractor.model_id} -> {self.sync.model_id}"

    def close(self) -> None:
        self.extractor.close()

    def redetect(self, ref_rgb: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray | None, float]:
        """Codes ``(N, 61)`` on the mel grid re-detected from ``codes (N, 61)`` rendered onto ``ref_rgb``, and the
        fraction of frames with a face (None when below ``MIN_FACE_FRAC``)."""
        from blendshape_fit.resample import resample_at_times
        from blendshape_fit.track import fit_track
        from inference.codes_io import CodeTrack, resample_codes
        from inference.render import render_frames

        out = resample_codes(CodeTrack(np.asarray(codes, np.float32), FRAME_RATE), RENDER_FPS)
        frames = (np.asarray(f) for f in render_frames(self.renderer, ref_rgb, out))
        track = self.extractor.extract_arrays(frames)
        found = float(track.face_mask.mean()) if track.n_frames else 0.0
        if found < MIN_FACE_FRAC:
            return None, found
        fit = fit_track(self.fitter, track)
        return resample_at_times(fit.codes, track.times_s, mel_frame_times(0.0, len(codes))), found

    def score(self, ref_rgb: np.ndarray, codes: np.ndarray, mel: np.ndarray) -> dict[str, float]:
        """``sync_conf_rendered``, ``sync_dist_rendered``, ``face_found_rendered`` (NaN when not scorable)."""
        n = min(len(codes), len(mel), int(MAX_RENDER_S * FRAME_RATE_HZ))
        redetected, found = self.redetect(ref_rgb, np.asarray(codes)[:n])
        row = {"sync_conf_rendered": math.nan, "sync_dist_rendered": math.nan, "face_found_rendered": found}
        if redetected is not None:
            s = self.sync.score(np.asarray(mel)[:n], redetected)
            row.update(sync_conf_rendered=s["sync_conf"], sync_dist_rendered=s["sync_dist"])
        return row


def score_rendered_sync(entries: list[dict[str, Any]], sync_scorer: Any) -> tuple[dict[tuple[str, str], dict], str]:
    """``{(system, clip_id): row}`` for the strip clips (``entries`` as the harness collects them, with
    ``outputs`` and ``mels`` per system), and the chain's model id."""
    from inference.video_io import read_frame_at

    meter = RenderedSync(sync_scorer)
    out: dict[tuple[str, str], dict] = {}
    try:
        for entry in entries:
            item, ref_clip = entry["item"], entry["ref_clip"]
            ref_rgb = read_frame_at(ref_clip.source_path, ref_clip.start_s)
            for system, codes in entry["outputs"].items():
                if system in NOT_RENDERED:
                    continue
                try:
                    out[(system, item.clip.clip_id)] = meter.score(ref_rgb, codes, entry["mels"][system])
                except Exception as e:  # a face the renderer cannot use must not lose the whole evaluation
                    log.warning("eval: no rendered sync for %s/%s: %s: %s", system, item.clip.clip_id,
                                type(e).__name__, e)
    finally:
        meter.close()
    return out, meter.model_id
