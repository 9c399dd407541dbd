"""Inner-mouth fill: a dark cavity with a soft edge where the mouth opens beyond the reference.

A warp can only stretch the reference's pixels: a closed reference mouth opened by the codes
would show stretched lip colour. Here the inner-lip polygon of the destination landmarks is
compared with the reference's; the extra opening (in inter-ocular units, so it does not depend
on the face size) sets the cavity's opacity. The cavity is a dark red-brown, darker towards its
centre, blended in through a Gaussian-blurred polygon mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Inner-lip contour of the MediaPipe face mesh, in order around the opening.
INNER_LIP_RING = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
UPPER_INNER_MID, LOWER_INNER_MID = 13, 14
MOUTH_CORNERS = (78, 308)
EYE_CORNERS = (33, 263)  # outer eye corners, for the inter-ocular distance


@dataclass(frozen=True)
class MouthConfig:
    """Cavity look and the opening that triggers it."""

    min_extra_opening_iod: float = 0.02  # extra lip gap (x inter-ocular distance) before any fill
    full_extra_opening_iod: float = 0.10  # extra lip gap at which the cavity is fully opaque
    edge_sigma_mouth: float = 0.06  # Gaussian edge softness, x mouth width
    shrink: float = 0.92  # polygon shrink towards its centre (keeps the lip edge visible)
    cavity_rgb: tuple[int, int, int] = (58, 22, 24)  # colour at the cavity's rim
    centre_darkening: float = 0.55  # colour factor at the cavity's centre (1 = flat)


def measure_lip_gap(landmarks_px: np.ndarray) -> float:
    """Inner lip gap (upper to lower inner-lip midpoint) in inter-ocular distances."""
    iod = float(np.linalg.norm(landmarks_px[EYE_CORNERS[0], :2] - landmarks_px[EYE_CORNERS[1], :2])) or 1.0
    gap = float(np.linalg.norm(landmarks_px[UPPER_INNER_MID, :2] - landmarks_px[LOWER_INNER_MID, :2]))
    return gap / iod


def compute_cavity_alpha(ref_gap_iod: float, dst_gap_iod: float, cfg: MouthConfig) -> float:
    """Cavity opacity in [0, 1] from the reference and destination lip gaps (inter-ocular units)."""
    extra = dst_gap_iod - ref_gap_iod - cfg.min_extra_opening_iod
    span = max(cfg.full_extra_opening_iod - cfg.min_extra_opening_iod, 1e-6)
    return float(np.clip(extra / span, 0.0, 1.0))


def fill_mouth(frame: np.ndarray, dst_landmarks: np.ndarray, ref_gap_iod: float,
               cfg: MouthConfig | None = None) -> np.ndarray:
    """Blend a dark cavity into ``frame`` (H, W, 3) uint8 in place where the mouth opens; returns it."""
    cfg = cfg or MouthConfig()
    alpha = compute_cavity_alpha(ref_gap_iod, measure_lip_gap(dst_landmarks), cfg)
    if alpha <= 0.0:
        return frame
    ring = dst_landmarks[list(INNER_LIP_RING), :2]
    centre = ring.mean(axis=0)
    poly = centre + cfg.shrink * (ring - centre)
    width = float(np.linalg.norm(dst_landmarks[MOUTH_CORNERS[0], :2] - dst_landmarks[MOUTH_CORNERS[1], :2]))
    sigma = max(cfg.edge_sigma_mouth * width, 0.5)
    pad = int(np.ceil(3 * sigma)) + 2
    h, w = frame.shape[:2]
    x0, y0 = (int(max(np.floor(poly[:, 0].min()) - pad, 0)), int(max(np.floor(poly[:, 1].min()) - pad, 0)))
    x1, y1 = (int(min(np.ceil(poly[:, 0].max()) + pad, w)), int(min(np.ceil(poly[:, 1].max()) + pad, h)))
    if x1 <= x0 or y1 <= y0:
        return frame
    mask = np.zeros((y1 - y0, x1 - x0), dtype=np.float32)
    cv2.fillPoly(mask, [np.round((poly - (x0, y0)) * 16).astype(np.int32)], 1.0, lineType=cv2.LINE_AA, shift=4)
    mask = cv2.GaussianBlur(mask, (0, 0), sigma)
    # Darker towards the centre: a radial falloff over the polygon's extent.
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    half = np.maximum((poly.max(axis=0) - poly.min(axis=0)) / 2.0, 1.0)
    r = np.sqrt(((xx - centre[0]) / half[0]) ** 2 + ((yy - centre[1]) / half[1]) ** 2)
    shade = cfg.centre_darkening + (1.0 - cfg.centre_darkening) * np.clip(r, 0.0, 1.0)
    colour = np.asarray(cfg.cavity_rgb, dtype=np.float32)[None, None, :] * shade[..., None]
    a = (alpha * mask)[..., None]
    roi = frame[y0:y1, x0:x1].astype(np.float32)
    frame[y0:y1, x0:x1] = np.clip(roi * (1.0 - a) + colour * a, 0, 255).astype(np.uint8)
    return frame
