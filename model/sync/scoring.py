"""SyncNet-style scoring of a whole clip with the lip-sync model: a distance per audio-visual lag.

Tensor legend: ``N`` frames of the clip at 93.75 Hz, ``W`` window frames, ``P`` lip windows
(every ``stride`` frames), ``Q = N - W + 1`` audio windows (every frame), ``E`` embedding size.

For every lag ``l`` (frames, ``|l| <= max_lag``) the distance is the mean ``1 - cos`` between the
lip window at ``p`` and the audio window at ``p + l``, over the lip windows whose partner exists.
Sign convention: the best lag ``l*`` means the sound of a lip movement comes ``l*`` frames *after*
it, so ``offset_s = l* / 93.75`` is positive when the audio is late (the video leads) and negative
when the audio is early. SyncNet reports the same quantity with frames of 25 fps video.

Two confidences, both ``median(distance over all lags) - min(distance over a lag range)``:
``conf`` over every lag (SyncNet's definition) and ``conf_near`` over ``|l| <= near_lag``
(the lags a clip may legitimately have). A dubbed clip has no lag where lips and audio agree, so
its distance curve is flat and both confidences are low. Curation gates on ``score_near``, the
near confidence plus the similarity at that lag, less a cost for the lag (``shards.sync_score``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from model.sync.model import SyncModel, lip_features
from shards.spec import FRAME_RATE_HZ
from shards.sync_score import combine_sync_score

MIN_PAIRS = 4  # lip windows a lag needs to count
STRIDE = 2  # frames between lip windows


@dataclass
class SyncScore:
    """The distance curve of one clip and what is read from it."""

    lags: np.ndarray  # (K,) int frames, increasing
    dists: np.ndarray  # (K,) float mean 1 - cos per lag (inf where too few pairs)
    offset_s: float  # best lag over all lags, seconds (positive: audio late)
    dist: float  # the distance at that lag
    conf: float  # median - min over all lags (SyncNet)
    near_offset_s: float  # best lag within |lag| <= near_lag, seconds
    near_dist: float  # the distance there
    conf_near: float  # median - min within |lag| <= near_lag

    @property
    def score_near(self) -> float:
        """The curation gate's lip-sync score within ``near_lag``: ``conf_near + (1 - near_dist)`` less the lag's
        cost at ``near_offset_s`` (shards.sync_score)."""
        return float(combine_sync_score(self.conf_near, self.near_dist, self.near_offset_s))

    def to_dict(self) -> dict[str, float]:
        return {"offset_s": self.offset_s, "dist": self.dist, "conf": self.conf,
                "near_offset_s": self.near_offset_s, "near_dist": self.near_dist, "conf_near": self.conf_near,
                "score_near": self.score_near}


def unfold_windows(x: torch.Tensor, window: int, stride: int = 1) -> torch.Tensor:
    """``(N, C)`` -> ``(Q, W, C)`` windows starting every ``stride`` frames."""
    return x.unfold(0, window, stride).transpose(1, 2).contiguous()


@torch.no_grad()
def embed_clip(model: SyncModel, mel: np.ndarray, codes: np.ndarray, stride: int = STRIDE, chunk: int = 512
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(lip embeddings (P, E) every stride frames, audio embeddings (Q, E) every frame)``."""
    w = model.cfg.window_frames
    mel_t = torch.as_tensor(np.asarray(mel, np.float32))
    lips_t = lip_features(torch.as_tensor(np.asarray(codes, np.float32)))
    audio_w = unfold_windows(mel_t, w)
    lip_w = unfold_windows(lips_t, w, stride)
    audio = torch.cat([model.embed_audio(audio_w[i:i + chunk]) for i in range(0, len(audio_w), chunk)])
    lips = torch.cat([model.embed_lips(lip_w[i:i + chunk]) for i in range(0, len(lip_w), chunk)])
    return lips, audio


def distance_curve(lips: torch.Tensor, audio: torch.Tensor, stride: int, max_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """``(lags, dists)``: mean ``1 - cos`` of lip window ``p`` (at frame ``p * stride``) and audio window ``p*stride + l``."""
    sims = lips @ audio.T  # (P, Q)
    starts = torch.arange(lips.shape[0]) * stride
    lags = np.arange(-max_lag, max_lag + 1)
    dists = np.full(len(lags), np.inf)
    for i, lag in enumerate(lags):
        q = starts + int(lag)
        ok = (q >= 0) & (q < audio.shape[0])
        if int(ok.sum()) >= MIN_PAIRS:
            dists[i] = float(1.0 - sims[ok.nonzero()[:, 0], q[ok]].mean())
    return lags, dists


def read_curve(lags: np.ndarray, dists: np.ndarray, near_lag: int) -> SyncScore:
    finite = np.isfinite(dists)
    if not finite.any():
        raise ValueError("clip too short to score: no lag has enough window pairs")
    med = float(np.median(dists[finite]))
    best = int(np.argmin(np.where(finite, dists, np.inf)))
    near = np.abs(lags) <= near_lag
    near_d = np.where(near & finite, dists, np.inf)
    nbest = int(np.argmin(near_d))
    return SyncScore(lags=lags, dists=dists, offset_s=float(lags[best]) / FRAME_RATE_HZ, dist=float(dists[best]),
                     conf=med - float(dists[best]), near_offset_s=float(lags[nbest]) / FRAME_RATE_HZ,
                     near_dist=float(near_d[nbest]), conf_near=med - float(near_d[nbest]))


def score_clip(model: SyncModel, mel: np.ndarray, codes: np.ndarray, max_lag_s: float = 0.6,
               near_lag_s: float = 0.2, stride: int = STRIDE) -> SyncScore:
    """Score a clip's ``mel (N, 100)`` against its ``codes (N, 61)`` (same 93.75 Hz grid).

    Raises ``ValueError`` when the clip is shorter than two windows.
    """
    n = min(len(mel), len(codes))
    if n < model.cfg.window_frames + MIN_PAIRS * stride:
        raise ValueError(f"clip of {n} frames is too short to score (window {model.cfg.window_frames})")
    model.eval()
    lips, audio = embed_clip(model, mel[:n], codes[:n], stride)
    lags, dists = distance_curve(lips, audio, stride, int(round(max_lag_s * FRAME_RATE_HZ)))
    return read_curve(lags, dists, int(round(near_lag_s * FRAME_RATE_HZ)))
