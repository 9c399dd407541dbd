"""The classical active-speaker scorer: mouth motion against the speech envelope.

Always available (numpy + scipy, no model). Two measures per track and segment:

- activity: how much the mouth opening (``FaceTrack.mouth_open``, inner-lip gap /
  mouth width) varies during speech, as ``P90 - P10`` over VAD speech frames,
  divided by ``full_motion`` (0.1) and clipped to ``[0, 1]``. A still photo or
  a head that moves without moving its mouth stays near 0.
- sync: the best Pearson correlation, over lags in ``[-max_lag_s, max_lag_s]``,
  between the mouth's speed ``|d mouth_open / dt|`` and the speed of the
  300-3000 Hz log-energy envelope ``|d envelope / dt|``, both on the track's
  frame grid (25 Hz) and smoothed over 3 frames (120 ms). In ``[-1, 1]``.

``score = activity * (1 + sync) / 2`` lies in ``[0, 1]``: 0 for a still mouth,
about 0.5 for a moving mouth unrelated to the audio, higher when mouth and
speech move together. The best lag is returned as ``lag_s`` (positive: the
video lags the audio: mouth at ``t`` matches audio at ``t - lag``).

Measured on the shared talking clips (bench/asd_auc.py, 3-s windows): the
sync term separates true pairs from swapped/2-s-shifted audio with AUC of
about 0.74 only, so dubbing is NOT reliably caught by this scorer; what it
catches reliably is voice-over and off-screen speech (activity near 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import signal

from stages.asd_scorer import AsdResult, LastAudioFeature, fill_gaps, sample_vad, slice_track
from stages.item import MODEL_SR, FaceTrack

ENV_HOP = 160  # samples at 16 kHz per envelope frame (10 ms, 100 Hz)
ENV_BAND_HZ = (300.0, 3000.0)  # speech band of the envelope


def compute_envelope(audio_16k: np.ndarray) -> np.ndarray:
    """Log energy (natural log of mean power) of the 300-3000 Hz band per 10 ms frame.

    Frame ``k`` is centred ``(k + 0.5) * 0.01`` s after the first sample.
    """
    n = len(audio_16k) // ENV_HOP
    if n == 0:
        return np.zeros(0, np.float64)
    sos = signal.butter(4, ENV_BAND_HZ, btype="band", fs=MODEL_SR, output="sos")
    x = signal.sosfilt(sos, np.asarray(audio_16k, np.float64))
    frames = x[: n * ENV_HOP].reshape(n, ENV_HOP)
    return np.log(np.mean(frames**2, axis=1) + 1e-8)


def correlate(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; 0 when either input is constant."""
    a = a - a.mean()
    b = b - b.mean()
    d = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / d) if d > 1e-12 else 0.0


def smooth_speed(x: np.ndarray, width: int = 3) -> np.ndarray:
    """``|diff(x)|`` smoothed by a ``width``-frame moving average."""
    v = np.abs(np.diff(x))
    return np.convolve(v, np.ones(width) / width, mode="same") if len(v) >= width else v


@dataclass
class ClassicalScorer:
    """Landmark mouth motion vs. audio envelope; see the module docstring for the score."""

    max_lag_s: float = 0.2  # seconds, +- lags searched
    lag_step_s: float = 0.02  # seconds between lags tried
    speech_threshold: float = 0.5  # silero probability counted as speech
    full_motion: float = 0.1  # mouth_open spread (P90 - P10) that counts as fully active
    smooth_frames: int = 3  # frames of the speed moving average
    name: str = "classical-mouth-envelope-v1"
    envelopes: LastAudioFeature = field(default_factory=LastAudioFeature, repr=False, compare=False)

    def score(self, track: FaceTrack, audio_16k: np.ndarray, audio_start_s: float, vad_probs: np.ndarray,
              start_s: float, end_s: float, source_path: str | None = None) -> AsdResult:
        """Score ``track`` over ``[start_s, end_s)``; see :class:`stages.asd.ActiveSpeakerScorer`."""
        idx = slice_track(track, start_s, end_s)
        m_raw = track.mouth_open[idx] if len(idx) else np.zeros(0)
        if len(idx) < 4 or np.isfinite(m_raw).sum() < 4:
            return AsdResult(0.0, 0.0, {"activity": 0.0, "sync": 0.0, "n_frames": float(len(idx))})
        t = track.times_s[idx]
        m = fill_gaps(t, m_raw)
        speech = sample_vad(vad_probs, audio_start_s, t) >= self.speech_threshold
        on = m[speech & np.isfinite(m_raw)] if (speech & np.isfinite(m_raw)).sum() >= 5 else m
        spread = float(np.percentile(on, 90) - np.percentile(on, 10))
        activity = float(np.clip(spread / self.full_motion, 0.0, 1.0))
        env = self.envelopes.get(audio_16k, compute_envelope)
        t_env = audio_start_s + (np.arange(len(env)) + 0.5) * ENV_HOP / MODEL_SR
        v_m = smooth_speed(m, self.smooth_frames)
        best_r, best_lag = -1.0, 0.0
        n_lags = int(round(self.max_lag_s / self.lag_step_s))
        for k in range(-n_lags, n_lags + 1):
            lag = k * self.lag_step_s
            if len(env) < 2:
                break
            e = np.interp(t - lag, t_env, env)
            r = correlate(v_m, smooth_speed(e, self.smooth_frames))
            if r > best_r or (r == best_r and abs(lag) < abs(best_lag)):
                best_r, best_lag = r, lag
        sync = float(np.clip(best_r, -1.0, 1.0))
        return AsdResult(score=activity * (1.0 + sync) / 2.0, lag_s=float(best_lag),
                         detail={"activity": activity, "sync": sync, "mouth_spread": spread,
                                 "speech_frac": float(speech.mean())})
