"""Load 61-d codes for rendering and resample them to the output frame rate.

Sources:

* the generator's ``.npz`` (``codes (N, 61)``, ``frame_rate`` "24000/256"): 93.75 Hz;
* a shard ``clip_id`` (``--shards DIR``): the row's ``visual`` column, 93.75 Hz;
* a ``.npy`` / ``.npz`` with ``codes`` and ``fps`` (e.g. a fit at 30 fps);
* a :class:`blendshape_fit.track.TrackFit` (30 fps, in memory).

Timing follows the curation (:mod:`blendshape_fit.resample`): code row ``k`` of a clip is centred
at ``k / rate`` seconds from the clip start (mel frame ``k`` at ``k * 256 / 24000`` s); output
frame ``i`` is at ``i / fps``. Rows are interpolated linearly, angles unwrapped, ends clamped.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from blendshape_fit.resample import interpolate_rows, unwrap_angles
from shards.codes import CODE_DIM
from shards.reader import find_clip
from shards.spec import FRAME_RATE


@dataclass
class CodeTrack:
    """Codes on a regular grid: row ``k`` at ``k / rate_hz`` seconds."""

    codes: np.ndarray  # (N, 61) float32
    rate_hz: Fraction  # rows per second (93.75 for mel-rate codes)
    source: str = ""

    @property
    def duration_s(self) -> float:
        """Seconds covered: ``N / rate``."""
        return self.codes.shape[0] / float(self.rate_hz)


def parse_rate(value: object) -> Fraction:
    """A frame rate from ``"24000/256"``, ``93.75``, ``30`` or a 0-d array of those."""
    if isinstance(value, np.ndarray):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode()
    return Fraction(str(value)).limit_denominator(1_000_000)


def check_codes(codes: np.ndarray, where: str) -> np.ndarray:
    arr = np.asarray(codes, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != CODE_DIM or arr.shape[0] == 0:
        raise ValueError(f"{where}: codes must be (N>0, {CODE_DIM}), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{where}: codes contain NaN or inf")
    return arr


def load_codes_file(path: str | Path, default_rate: Fraction = FRAME_RATE) -> CodeTrack:
    """Codes from the generator's ``.npz`` (``codes``, ``frame_rate``) or a ``.npy`` (at ``default_rate``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"codes file {path} not found")
    if path.suffix == ".npy":
        return CodeTrack(check_codes(np.load(path), str(path)), default_rate, str(path))
    with np.load(path, allow_pickle=False) as z:
        if "codes" not in z:
            raise ValueError(f"{path}: no 'codes' array (members: {list(z.keys())})")
        rate = default_rate
        for key in ("frame_rate", "fps", "rate_hz"):
            if key in z:
                rate = parse_rate(z[key])
                break
        return CodeTrack(check_codes(z["codes"], str(path)), rate, str(path))


def load_codes_from_shards(shards_dir: str, clip_id: str) -> tuple[CodeTrack, dict]:
    """The ``visual`` codes (93.75 Hz) of ``clip_id`` and its row facts (source_path, start_s, face_boxes)."""
    path, row = find_clip(shards_dir, clip_id, ["clip_id", "source_path", "start_s", "end_s", "visual", "face_boxes"])
    if row.get("visual") is None:
        raise ValueError(f"{path}: clip {clip_id} has no visual codes")
    codes = check_codes(np.asarray(row["visual"], dtype=np.float32), f"{path}:{clip_id}")
    return CodeTrack(codes, FRAME_RATE, f"{path}:{clip_id}"), row


def count_output_frames(duration_s: float, fps: float) -> int:
    """Output frames ``i / fps`` inside ``[0, duration_s)``."""
    return max(int(np.ceil(duration_s * fps - 1e-9)), 1)


def resample_codes(track: CodeTrack, fps: float, n_out: int | None = None) -> np.ndarray:
    """Codes (n_out, 61) float32 at output times ``i / fps`` (default: the track's duration).

    Source positions come from exact ratios (``i * rate / fps``), so long clips do not drift.
    """
    out_fps = Fraction(fps).limit_denominator(1_000_000)
    if n_out is None:
        n_out = count_output_frames(track.duration_s, float(out_fps))
    step = track.rate_hz / out_fps  # source rows per output frame
    pos = np.arange(n_out, dtype=np.float64) * step.numerator / step.denominator
    src = np.arange(track.codes.shape[0], dtype=np.float64)
    return interpolate_rows(unwrap_angles(track.codes), src, pos).astype(np.float32)
