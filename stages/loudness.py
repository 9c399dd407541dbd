"""Integrated loudness (ITU-R BS.1770-4) and loudness normalization.

K-weighting is a high-shelf pre-filter followed by the RLB high-pass. The two
biquads are designed for the signal's own sample rate from their analog
parameters (as in pyloudnorm), so 24 kHz audio is measured directly. Gating:
400 ms blocks with 75 % overlap, an absolute gate at -70 LUFS and a relative
gate 10 LU below the ungated mean.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import lfilter

ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0
BLOCK_S = 0.4  # seconds
OVERLAP = 0.75


def design_k_weighting(sample_rate: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The two K-weighting biquads ``[(b, a), (b, a)]`` at ``sample_rate`` Hz."""
    # Stage 1: high shelf (BS.1770 pre-filter), +4 dB above ~1.5 kHz.
    gain_db, q, fc = 3.99984385397, 0.7071752369554193, 1681.9744509555319
    k = math.tan(math.pi * fc / sample_rate)
    vh = 10 ** (gain_db / 20)
    vb = vh ** 0.4996667741545416
    a0 = 1 + k / q + k * k
    b_shelf = np.array([(vh + vb * k / q + k * k) / a0, 2 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0])
    a_shelf = np.array([1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0])
    # Stage 2: RLB high-pass at ~38 Hz.
    q, fc = 0.5003270373238773, 38.13547087602444
    k = math.tan(math.pi * fc / sample_rate)
    a0 = 1 + k / q + k * k
    b_hp = np.array([1.0, -2.0, 1.0])
    a_hp = np.array([1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0])
    return [(b_shelf, a_shelf), (b_hp, a_hp)]


def measure_integrated_loudness(audio: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness of mono ``audio`` in LUFS; ``-inf`` for silence or < 400 ms."""
    x = np.asarray(audio, dtype=np.float64)
    block = int(round(BLOCK_S * sample_rate))
    if len(x) < block:
        return float("-inf")
    for b, a in design_k_weighting(sample_rate):
        x = lfilter(b, a, x)
    step = int(round(block * (1 - OVERLAP)))
    n_blocks = 1 + (len(x) - block) // step
    csum = np.concatenate([[0.0], np.cumsum(x * x)])
    starts = np.arange(n_blocks) * step
    z = (csum[starts + block] - csum[starts]) / block  # mean square per block
    with np.errstate(divide="ignore"):
        loud = -0.691 + 10 * np.log10(z)
    z = z[loud > ABSOLUTE_GATE_LUFS]
    if len(z) == 0:
        return float("-inf")
    relative_gate = -0.691 + 10 * np.log10(z.mean()) + RELATIVE_GATE_LU
    with np.errstate(divide="ignore"):
        z = z[-0.691 + 10 * np.log10(z) > relative_gate]
    return float(-0.691 + 10 * np.log10(z.mean()))


def compute_normalization_gain_db(loudness_lufs: float, peak: float, target_lufs: float,
                                  max_peak_dbfs: float) -> float:
    """Gain (dB) that brings ``loudness_lufs`` to ``target_lufs`` without the peak passing ``max_peak_dbfs``."""
    if not math.isfinite(loudness_lufs) or peak <= 0:
        return 0.0
    gain = target_lufs - loudness_lufs
    peak_db = 20 * math.log10(peak)
    return min(gain, max_peak_dbfs - peak_db)
