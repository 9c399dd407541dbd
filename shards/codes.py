"""Layout of the 61-d per-frame visual code (see docs/visual_codes.md).

=======  =====  ==========================================================================
columns  count  meaning
=======  =====  ==========================================================================
0-50     51     expression blendshapes in [0, 1], ARKit names in MediaPipe's order
51-53    3      head pitch, yaw, roll in radians (unwrapped over time)
54-55    2      head translation x, y in normalized image units (x / width, y / height)
56       1      z = -ln(s): s = image heights per canonical-mesh centimetre (larger = further)
57-60    4      eye rotations in radians: left yaw, left pitch, right yaw, right pitch
=======  =====  ==========================================================================

Sign conventions (camera frame: x image-right, y up, z towards the camera; rotations are
right-handed, ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)``): positive pitch tips the nose down,
positive yaw turns the nose towards image right (the subject's left), positive roll moves
the top of the head towards image left. Eye yaw/pitch follow the same rule for the eyeball.
"Left"/"Right" are the subject's.
"""

from __future__ import annotations

from typing import Any

from shards.spec import AUDIO_SR, FRAME_RATE_HZ, FRAME_RATE_TEXT, HOP

# MediaPipe FaceLandmarker's 52 blendshape categories, in its output order.
MP_BLENDSHAPE_NAMES: tuple[str, ...] = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight",
    "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft",
    "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight",
    "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight", "mouthFunnel",
    "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight",
    "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower",
    "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight",
)
EXPRESSION_NAMES: tuple[str, ...] = MP_BLENDSHAPE_NAMES[1:]  # 51, no _neutral (MediaPipe has no tongueOut)
POSE_NAMES: tuple[str, ...] = ("pitch", "yaw", "roll", "tx", "ty", "tz")
EYE_NAMES: tuple[str, ...] = ("eyeLeftYaw", "eyeLeftPitch", "eyeRightYaw", "eyeRightPitch")

N_EXPRESSION = len(EXPRESSION_NAMES)
N_POSE = len(POSE_NAMES)
N_EYE = len(EYE_NAMES)
CODE_DIM = N_EXPRESSION + N_POSE + N_EYE  # 61

EXPRESSION_SLICE = slice(0, N_EXPRESSION)  # 0:51
POSE_SLICE = slice(N_EXPRESSION, N_EXPRESSION + N_POSE)  # 51:57
ROTATION_SLICE = slice(N_EXPRESSION, N_EXPRESSION + 3)  # 51:54 pitch, yaw, roll
PITCH_COL, YAW_COL, ROLL_COL = range(ROTATION_SLICE.start, ROTATION_SLICE.stop)  # 51, 52, 53 (radians)
TRANSLATION_SLICE = slice(N_EXPRESSION + 3, N_EXPRESSION + 5)  # 54:56 tx, ty
DEPTH_INDEX = N_EXPRESSION + 5  # 56 tz
EYE_SLICE = slice(N_EXPRESSION + N_POSE, CODE_DIM)  # 57:61

CODE_NAMES: tuple[str, ...] = EXPRESSION_NAMES + POSE_NAMES + EYE_NAMES
ANGLE_COLUMNS: tuple[int, ...] = (51, 52, 53)  # unwrapped before interpolation

CODE_UNITS: dict[str, str] = {
    "expression": "blendshape weight in [0, 1]",
    "pitch": "rad", "yaw": "rad", "roll": "rad",
    "tx": "fraction of image width", "ty": "fraction of image height",
    "tz": "-ln(image heights per canonical cm)",
    "eye": "rad",
}


def describe_code_layout() -> dict[str, Any]:
    """A JSON-able description of the 61-d code, for the shard feature spec."""
    return {
        "dim": CODE_DIM,
        "dtype": "float32",
        "names": list(CODE_NAMES),
        "groups": {
            "expression": [EXPRESSION_SLICE.start, EXPRESSION_SLICE.stop],
            "rotation": [ROTATION_SLICE.start, ROTATION_SLICE.stop],
            "translation": [TRANSLATION_SLICE.start, TRANSLATION_SLICE.stop],
            "depth": [DEPTH_INDEX, DEPTH_INDEX + 1],
            "eye": [EYE_SLICE.start, EYE_SLICE.stop],
        },
        "units": dict(CODE_UNITS),
        "angle_columns": list(ANGLE_COLUMNS),
        "rotation_order": "R = Rz(roll) @ Ry(yaw) @ Rx(pitch); x image-right, y up, z to camera",
        "frame_rate": f"mel grid: {FRAME_RATE_TEXT} = {FRAME_RATE_HZ} Hz, frame k centred at clip start + k*{HOP}/{AUDIO_SR} s",
    }


CODE_LAYOUT: dict[str, Any] = describe_code_layout()


def find_mirror_partner(name: str) -> str:
    """The code column a column becomes in the left-right mirrored video ("browDownLeft" -> "browDownRight")."""
    for a, b in (("Left", "Right"), ("Right", "Left")):
        if a in name:
            return name.replace(a, b)
    return name


# Left-right mirror of a video (the image flipped about its vertical axis), in code space: column i of the mirrored
# codes is ``MIRROR_SIGN[i] * codes[MIRROR_SOURCE[i]]``, plus 1 for tx. The subject's left and right swap
# (blendshapes, eyes); yaw and roll change sign, pitch does not; eye yaws change sign; tx -> 1 - tx.
MIRROR_SOURCE: tuple[int, ...] = tuple(CODE_NAMES.index(find_mirror_partner(n)) for n in CODE_NAMES)
MIRROR_SIGN: tuple[float, ...] = tuple(
    -1.0 if n in ("yaw", "roll", "tx", "eyeLeftYaw", "eyeRightYaw") else 1.0 for n in CODE_NAMES)
MIRROR_OFFSET: tuple[float, ...] = tuple(1.0 if n == "tx" else 0.0 for n in CODE_NAMES)


def mirror_codes(codes: Any) -> Any:
    """Codes ``(..., 61)`` of the left-right mirrored video (numpy array in, numpy array out)."""
    import numpy as np

    c = np.asarray(codes)
    return (c[..., list(MIRROR_SOURCE)] * np.asarray(MIRROR_SIGN, c.dtype)
            + np.asarray(MIRROR_OFFSET, c.dtype)).astype(c.dtype, copy=False)
