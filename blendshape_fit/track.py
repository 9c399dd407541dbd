"""Fit a whole :class:`LandmarkTrack`: identity offset, per-frame codes, gap filling, summaries."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from blendshape_fit.fit import BlendshapeFitter, FitResult
from blendshape_fit.landmarker import LandmarkTrack
from blendshape_fit.neutral import estimate_neutral
from blendshape_fit.resample import fill_missing_frames


@dataclass
class TrackFit:
    """Codes at the track's frame times (gaps filled by time) plus the raw fit."""

    codes: np.ndarray  # (T, 61) float64, faceless frames interpolated from their neighbours
    result: FitResult  # per-frame fit (NaN where no face)
    neutral: np.ndarray  # (478, 3) identity offset used, cm
    rmse_iod_median: float  # median over frames with a face; NaN if none
    face_area_frac: float  # median landmark bounding-box area / frame area; NaN if no face


def measure_face_area(track: LandmarkTrack) -> float:
    """Median over face frames of the landmark bounding-box area as a fraction of the frame."""
    m = track.face_mask
    if not m.any() or track.width_px <= 0 or track.height_px <= 0:
        return float("nan")
    xy = track.landmarks[m, :, :2]
    span = xy.max(axis=1) - xy.min(axis=1)
    return float(np.median(span[:, 0] * span[:, 1]) / (track.width_px * track.height_px))


def fit_track(fitter: BlendshapeFitter, track: LandmarkTrack, identity: bool = True,
              init_codes: np.ndarray | None = None) -> TrackFit:
    """Fit every face frame of ``track``; ``identity`` estimates the per-clip neutral offset first."""
    neutral = np.zeros_like(fitter.model.mean)
    if identity and track.face_mask.any():
        neutral = estimate_neutral(track.landmarks, track.blendshapes, fitter.model, track.face_mask)
    result = fitter.fit(track.landmarks[..., :2], track.width_px, track.height_px, track.face_mask,
                        init_codes=init_codes, neutral=neutral)
    codes = fill_missing_frames(result.codes, result.valid, times_s=track.times_s)
    rmse = result.rmse_iod[result.valid]
    return TrackFit(codes=codes, result=result, neutral=neutral,
                    rmse_iod_median=float(np.median(rmse)) if rmse.size else float("nan"),
                    face_area_frac=measure_face_area(track))
