"""Held-out measurement of the StyleTalker motion model while it trains (``val_every_steps``).

The clips of the ``data.holdout`` sources are never trained on. Every ``val_every_steps`` the EMA model
reconstructs each of them in the motion-controllable mode, as ``generate --drive`` does: the posterior
mean on the clip's own codes and audio, decoded with the clip's own style, the lips from the audio
(:meth:`model.styletalker.model.StyleTalkerMotion.sample` with ``drive_codes``). Reported, as means over
the held-out clips (each cut to ``val_max_frames``):

* ``val_pitch_r``, ``val_yaw_r``: Pearson r of the reconstructed head pitch and yaw (radians) with the
  clip's own. The drive goal of issue #16 is r >= 0.8 after rendering and MediaPipe re-detection;
  rendering and re-detection lose at most about 0.05 (``bench/styletalker_drive.py``), so this is
  what decides it, measured on faces the model has not seen. A clip whose pose column does not move
  (std below ``MIN_POSE_STD_RAD``) has no r and is left out of that mean;
* ``val_motion_mse``, ``val_lip_mse``: mean squared error of the motion and the lip columns in the
  model's standardized units (per-column z-scores of the training set); ``val_lip_base_mse``: the same
  error for a constant prediction, the training set's mean (what a lip stream must beat to have learned
  anything that transfers to these speakers; it is 1.0 only when they move their lips as the training
  speakers do);
* ``val_clips``: how many clips were measured.

:func:`heldout_score` (the mean of the two r) ranks measurements: the training loop exports the best one
to ``RUN_DIR/best`` (``training/styletalker_loop.py``).

Shapes: a clip's ``mel (N, 100)`` and ``codes (N, 61)`` at 93.75 Hz.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from core.signals import pearson
from model.styletalker.model import StyleTalkerMotion
from shards.codes import PITCH_COL, YAW_COL
from training.styletalker_data import MotionClip

MIN_POSE_STD_RAD = 1e-3  # a pose column that moves less than this over a clip has no correlation to report


def pose_r(true: np.ndarray, pred: np.ndarray) -> float:
    """Pearson r of a reconstructed pose column with the true one (radians); NaN when the true head does not
    move in that axis (std below ``MIN_POSE_STD_RAD``) or the reconstruction is constant."""
    return math.nan if np.std(true) < MIN_POSE_STD_RAD else pearson(true, pred)


def reconstruct_driven(model: StyleTalkerMotion, clip: MotionClip, ref_frames: int, max_frames: int) -> np.ndarray:
    """Raw codes ``(n, 61)`` of the clip's first ``n = min(N, max_frames)`` frames, driven by themselves."""
    n = min(len(clip.mel), max_frames)
    mel, codes = clip.mel[:n], clip.codes[:n]
    out = model.sample(mel, codes[:ref_frames], n, temperature=0.0, drive_codes=codes, drive_mel=mel)
    return out.detach().cpu().numpy()


@torch.no_grad()
def measure_heldout(model: StyleTalkerMotion, clips: list[MotionClip], ref_frames: int,
                    max_frames: int) -> dict[str, float]:
    """``val_pitch_r, val_yaw_r, val_motion_mse, val_lip_mse, val_lip_base_mse, val_clips`` over ``clips`` (see the
    module doc)."""
    pitch, yaw, motion, lips, lips_base = [], [], [], [], []
    lip_cols, motion_cols = model.lip_index.tolist(), model.motion_index.tolist()
    mean, std = model.code_mean.cpu().numpy(), model.code_std.cpu().numpy()  # std floored at STD_FLOOR
    for clip in clips:
        pred = reconstruct_driven(model, clip, ref_frames, max_frames)
        true = clip.codes[:len(pred)]
        pitch.append(pose_r(true[:, PITCH_COL], pred[:, PITCH_COL]))
        yaw.append(pose_r(true[:, YAW_COL], pred[:, YAW_COL]))
        err = ((pred - true) / std) ** 2
        motion.append(float(err[:, motion_cols].mean()))
        lips.append(float(err[:, lip_cols].mean()))
        lips_base.append(float((((true - mean) / std)[:, lip_cols] ** 2).mean()))
    return {"val_pitch_r": nan_mean(pitch), "val_yaw_r": nan_mean(yaw), "val_motion_mse": nan_mean(motion),
            "val_lip_mse": nan_mean(lips), "val_lip_base_mse": nan_mean(lips_base), "val_clips": len(clips)}


def nan_mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def heldout_score(row: dict[str, float]) -> float:
    """The mean of ``val_pitch_r`` and ``val_yaw_r`` (NaN when either is missing)."""
    return 0.5 * (row.get("val_pitch_r", math.nan) + row.get("val_yaw_r", math.nan))
