"""Geometric prior for the 51 expression blendshapes, built on the canonical mesh.

Each blendshape is a hand-designed displacement field (cm per unit weight) made of a few
primitives: a jaw rotation about a hinge axis, lid closure towards the opposite lid,
region translations (mouth corners, lips, brows, cheeks, nose wings) with smooth masks.
The data-driven basis (:mod:`blendshape_fit.build_basis`) is regularized towards these
fields, so blendshapes that talking data rarely excites still deform plausibly.

Canonical frame: centimetres, x towards the subject's left, y up, z out of the face.
Iris rows (468-477) are zero: gaze lives in the eye basis, not in the expression basis.
"""

from __future__ import annotations

import numpy as np

from shards.codes import EXPRESSION_NAMES, N_EYE

# Landmark groups (MediaPipe face-mesh topology), ordered from the subject's right to left.
UPPER_LIP_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LOWER_LIP_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
UPPER_LIP_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_LIP_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
# Lids: upper/lower pairs in the same lateral order, plus the ring of skin just outside.
LIDS = {
    "Right": dict(upper=(246, 161, 160, 159, 158, 157, 173), lower=(7, 163, 144, 145, 153, 154, 155),
                  corners=(33, 133), upper_ring=(247, 30, 29, 27, 28, 56, 190),
                  lower_ring=(130, 25, 110, 24, 23, 22, 26, 112, 243)),
    "Left": dict(upper=(466, 388, 387, 386, 385, 384, 398), lower=(249, 390, 373, 374, 380, 381, 382),
                 corners=(263, 362), upper_ring=(467, 260, 259, 257, 258, 286, 414),
                 lower_ring=(359, 255, 339, 254, 253, 252, 256, 341, 463)),
}
BROW_INNER = {"Right": (107, 55, 66, 65), "Left": (336, 285, 296, 295)}
BROW_OUTER = {"Right": (70, 46, 63, 53), "Left": (300, 276, 293, 283)}
BROW_ALL = {"Right": (70, 63, 105, 66, 107, 46, 53, 52, 65, 55),
            "Left": (300, 293, 334, 296, 336, 276, 283, 282, 295, 285)}
CHEEK = {"Right": (50, 101, 118, 117, 123, 205, 36), "Left": (280, 330, 347, 346, 352, 425, 266)}
UNDER_EYE = {"Right": (117, 118, 119, 100, 111), "Left": (346, 347, 348, 329, 340)}
NOSE_WING = {"Right": (129, 98, 64, 48, 219, 102), "Left": (358, 327, 294, 278, 439, 331)}
MOUTH_CORNER = {"Right": (61, 78, 62, 76, 146, 185), "Left": (291, 308, 292, 306, 375, 409)}
SIDE_SIGN = {"Left": 1.0, "Right": -1.0}  # +x is the subject's left

JAW_OPEN_RAD = 0.38  # jaw rotation at jawOpen = 1 (~22 degrees)


def soft_mask(points: np.ndarray, anchors: np.ndarray, sigma_cm: float) -> np.ndarray:
    """Soft union of Gaussian bumps (sigma in cm) around anchor points; values in [0, 1]."""
    d2 = ((points[:, None, :] - anchors[None, :, :]) ** 2).sum(-1)
    return 1.0 - np.prod(1.0 - np.exp(-d2 / (2.0 * sigma_cm**2)), axis=1)


def interpolate_handles(points: np.ndarray, handles: np.ndarray, moves: np.ndarray, sigma_cm: float,
                        floor: float = 0.05) -> np.ndarray:
    """Spread handle displacements (k, 3) smoothly to all points; fades to 0 away from handles."""
    d2 = ((points[:, None, :] - handles[None, :, :]) ** 2).sum(-1)
    w = np.exp(-d2 / (2.0 * sigma_cm**2))
    return (w @ moves) / (w.sum(axis=1, keepdims=True) + floor)


def side_weight(points: np.ndarray, side: str, width_cm: float = 0.5) -> np.ndarray:
    """Smooth 0..1 weight for one half of the face (1 on ``side``, 0.5 on the midline)."""
    return 1.0 / (1.0 + np.exp(-SIDE_SIGN[side] * points[:, 0] / width_cm))


class MouthGeometry:
    """Lip contours of the canonical mesh as functions of x, and the lip-region masks."""

    def __init__(self, v: np.ndarray) -> None:
        self.v = v
        self.corner_x = float(abs(v[61, 0]))

        def curve(ids: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
            xy = v[list(ids), :2]
            order = np.argsort(xy[:, 0])
            return xy[order, 0], xy[order, 1]

        x = v[:, 0]
        self.y_uo = np.interp(x, *curve(UPPER_LIP_OUTER))
        self.y_lo = np.interp(x, *curve(LOWER_LIP_OUTER))
        self.y_mid = 0.5 * (np.interp(x, *curve(UPPER_LIP_INNER)) + np.interp(x, *curve(LOWER_LIP_INNER)))
        y = v[:, 1]
        lateral = np.exp(-np.maximum(np.abs(x) - self.corner_x, 0.0) ** 2 / (2 * 0.5**2))
        front = (v[:, 2] > 2.0).astype(float)
        above = np.exp(-np.maximum(y - self.y_uo, 0.0) ** 2 / (2 * 0.35**2))
        below = np.exp(-np.maximum(self.y_lo - y, 0.0) ** 2 / (2 * 0.35**2))
        self.upper = (y >= self.y_mid) * above * lateral * front  # upper-lip body (+ falloff)
        self.lower = (y < self.y_mid) * below * lateral * front  # lower-lip body (+ falloff)
        self.outer_upper = soft_mask(v, v[list(UPPER_LIP_OUTER[1:-1])], 0.25)
        self.outer_lower = soft_mask(v, v[list(LOWER_LIP_OUTER[1:-1])], 0.25)
        # Jaw: everything under the mouth line follows the mandible; the lips split at the
        # mid line (sharp), the cheeks blend over a wider band.
        band = np.where(np.abs(x) <= self.corner_x, 0.12, 0.12 + 0.7 * (np.abs(x) - self.corner_x))
        below_line = 1.0 / (1.0 + np.exp(-(self.y_mid - y) / band))
        self.jaw = below_line * (y < 1.0)


def rotate_about_x(points: np.ndarray, pivot: np.ndarray, angle_rad: float) -> np.ndarray:
    """Displacement of points rotated by ``angle_rad`` about the x axis through ``pivot``."""
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    rel = points - pivot
    out = np.zeros_like(points)
    out[:, 1] = c * rel[:, 1] - s * rel[:, 2] - rel[:, 1]
    out[:, 2] = s * rel[:, 1] + c * rel[:, 2] - rel[:, 2]
    return out


def _lid_moves(v: np.ndarray, side: str, upper_dy: float, lower_dy: float, ring_frac: float = 0.5,
               dx: float = 0.0, close: bool = False) -> np.ndarray:
    """Lid displacement field: upper/lower lid handles, fixed corners, softer outer rings."""
    lid = LIDS[side]
    up, lo = np.array(lid["upper"]), np.array(lid["lower"])
    handles, moves = [], []
    if close:  # upper lid meets the lower one at 80 % of the gap
        gap = v[lo] - v[up]
        moves_up, moves_lo = 0.8 * gap, -0.2 * gap
    else:
        moves_up = np.tile([dx, upper_dy, 0.0], (len(up), 1))
        moves_lo = np.tile([dx, lower_dy, 0.0], (len(lo), 1))
    handles += [v[up], v[lo], v[list(lid["corners"])]]
    moves += [moves_up, moves_lo, np.zeros((2, 3))]
    ur, lr = np.array(lid["upper_ring"]), np.array(lid["lower_ring"])
    handles += [v[ur], v[lr]]
    moves += [np.tile(ring_frac * moves_up.mean(0), (len(ur), 1)), np.tile(ring_frac * moves_lo.mean(0), (len(lr), 1))]
    return interpolate_handles(v, np.concatenate(handles), np.concatenate(moves), sigma_cm=0.25)


def build_prior(vertices: np.ndarray) -> np.ndarray:
    """Prior displacement fields (51, 478, 3) cm per unit weight for the 468 mesh vertices + 10 iris."""
    v = np.asarray(vertices, dtype=np.float64)[:468]
    mouth = MouthGeometry(v)
    pivot = np.array([0.0, -0.5, -3.0])  # jaw hinge, in front of the ears
    # Jaw rotation, the lips parting a little further than the mandible, and mouth corners
    # that follow the jaw only partly (measured on talking data: chin -2.1 cm, lower lip
    # -3.1 cm, corners -1.1 cm at MediaPipe jawOpen = 1).
    corners = soft_mask(v, v[list(MOUTH_CORNER["Left"] + MOUTH_CORNER["Right"])], 0.5)
    jaw_open = rotate_about_x(v, pivot, JAW_OPEN_RAD) * (mouth.jaw * (1.0 - 0.3 * corners))[:, None]
    jaw_open += (mouth.lower * (1.0 - corners))[:, None] * np.array([0.0, -0.5, 0.1])
    lips = np.maximum(mouth.upper, mouth.lower)
    chin = soft_mask(v, v[[152, 175, 199, 200, 18, 148, 377]], 1.0) * mouth.jaw
    fields: dict[str, np.ndarray] = {}

    def region(ids: tuple[int, ...], sigma: float) -> np.ndarray:
        return soft_mask(v, v[list(ids)], sigma)

    def vec(mask: np.ndarray, d: tuple[float, float, float]) -> np.ndarray:
        return mask[:, None] * np.asarray(d)[None, :]

    for side, sgn in SIDE_SIGN.items():
        half = side_weight(v, side)
        corner = region(MOUTH_CORNER[side], 0.7)
        brow = region(BROW_ALL[side], 0.7)
        fields[f"browDown{side}"] = vec(brow, (-0.2 * sgn, -0.45, 0.0)) + vec(region(BROW_INNER[side], 0.6), (-0.1 * sgn, -0.1, 0.0))
        fields[f"browOuterUp{side}"] = vec(region(BROW_OUTER[side], 0.8), (0.0, 0.5, 0.0))
        fields[f"cheekSquint{side}"] = vec(region(UNDER_EYE[side], 0.8), (0.0, 0.3, 0.1)) + _lid_moves(v, side, 0.0, 0.08)
        fields[f"eyeBlink{side}"] = _lid_moves(v, side, 0.0, 0.0, close=True)
        fields[f"eyeLookDown{side}"] = _lid_moves(v, side, -0.15, -0.08)
        fields[f"eyeLookUp{side}"] = _lid_moves(v, side, 0.12, 0.05)
        fields[f"eyeLookIn{side}"] = _lid_moves(v, side, 0.0, 0.0, dx=-0.06 * sgn)
        fields[f"eyeLookOut{side}"] = _lid_moves(v, side, 0.0, 0.0, dx=0.06 * sgn)
        fields[f"eyeSquint{side}"] = _lid_moves(v, side, -0.05, 0.18)
        fields[f"eyeWide{side}"] = _lid_moves(v, side, 0.2, -0.03)
        fields[f"jaw{side}"] = vec(mouth.jaw, (0.8 * sgn, 0.0, 0.0))
        fields[f"mouth{side}"] = vec(np.maximum(lips, region(MOUTH_CORNER["Left"] + MOUTH_CORNER["Right"], 0.8)), (0.6 * sgn, 0.0, 0.0))
        fields[f"mouthDimple{side}"] = vec(corner, (0.25 * sgn, 0.0, -0.3))
        fields[f"mouthFrown{side}"] = vec(corner, (0.1 * sgn, -0.45, 0.0))
        fields[f"mouthLowerDown{side}"] = vec(mouth.lower * half, (0.0, -0.35, 0.05))
        fields[f"mouthPress{side}"] = (vec(mouth.outer_upper * half, (0.0, -0.15, -0.05))
                                       + vec(mouth.outer_lower * half, (0.0, 0.15, -0.05)))
        fields[f"mouthSmile{side}"] = vec(corner, (0.35 * sgn, 0.45, -0.2)) + vec(region(CHEEK[side], 1.0), (0.05 * sgn, 0.15, 0.05))
        fields[f"mouthStretch{side}"] = vec(corner, (0.45 * sgn, -0.2, -0.1))
        fields[f"mouthUpperUp{side}"] = vec(mouth.upper * half, (0.0, 0.35, 0.05))
        fields[f"noseSneer{side}"] = vec(region(NOSE_WING[side], 0.6), (0.05 * sgn, 0.3, 0.0)) + vec(region(BROW_INNER[side], 0.6), (0.0, -0.08, 0.0))

    both_corners = region(MOUTH_CORNER["Left"] + MOUTH_CORNER["Right"], 0.7)
    inward = -np.sign(v[:, 0])
    fields["browInnerUp"] = vec(region(BROW_INNER["Left"] + BROW_INNER["Right"], 0.7), (0.0, 0.6, 0.0))
    cheeks = region(CHEEK["Left"] + CHEEK["Right"], 1.2)
    fields["cheekPuff"] = vec(cheeks, (0.0, 0.0, 0.2)) + (cheeks * np.sign(v[:, 0]) * 0.5)[:, None] * np.array([1.0, 0.0, 0.0])
    fields["jawForward"] = vec(mouth.jaw, (0.0, 0.0, 0.6))
    fields["jawOpen"] = jaw_open
    lower_open = rotate_about_x(v, pivot, JAW_OPEN_RAD) * mouth.lower[:, None]
    fields["mouthClose"] = -0.9 * lower_open + vec(mouth.upper, (0.0, -0.1, 0.0))
    fields["mouthFunnel"] = (vec(lips, (0.0, 0.0, 0.4)) + vec(mouth.upper, (0.0, 0.2, 0.0)) + vec(mouth.lower, (0.0, -0.25, 0.0))
                             + (both_corners * inward * 0.3)[:, None] * np.array([1.0, 0.0, 0.0]))
    fields["mouthPucker"] = (vec(lips, (0.0, 0.0, 0.5)) + (both_corners * inward * 0.6)[:, None] * np.array([1.0, 0.0, 0.0])
                             + vec(mouth.outer_upper, (0.0, -0.05, 0.0)) + vec(mouth.outer_lower, (0.0, 0.05, 0.0)))
    fields["mouthRollLower"] = vec(mouth.outer_lower, (0.0, 0.3, -0.3)) + vec(mouth.lower, (0.0, 0.05, -0.1))
    fields["mouthRollUpper"] = vec(mouth.outer_upper, (0.0, -0.3, -0.3)) + vec(mouth.upper, (0.0, -0.05, -0.1))
    fields["mouthShrugLower"] = vec(np.maximum(mouth.lower, chin), (0.0, 0.35, 0.2))
    fields["mouthShrugUpper"] = vec(mouth.upper, (0.0, 0.25, 0.05))

    missing = set(EXPRESSION_NAMES) - set(fields)
    if missing:
        raise AssertionError(f"prior lacks {sorted(missing)}")
    out = np.zeros((len(EXPRESSION_NAMES), 478, 3))
    for k, name in enumerate(EXPRESSION_NAMES):
        out[k, :468] = fields[name]
    return out


def build_eye_basis(mean: np.ndarray, eyeball_centres: np.ndarray) -> np.ndarray:
    """Eye basis (4, 478, 3): iris-point displacement per radian of eye yaw / pitch.

    Order: left yaw, left pitch, right yaw, right pitch. Linearized rotation of the five
    iris points about their eyeball centre: yaw about +y, pitch about +x (right-handed, so
    positive yaw moves the iris towards +x, positive pitch moves it down).
    """
    out = np.zeros((N_EYE, 478, 3))
    axes = (np.array([0.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0]))
    for k, (ids, centre) in enumerate(((range(473, 478), eyeball_centres[0]), (range(468, 473), eyeball_centres[1]))):
        idx = list(ids)
        rel = mean[idx] - centre
        for a, axis in enumerate(axes):
            out[2 * k + a, idx] = np.cross(axis, rel)
    return out
