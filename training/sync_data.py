"""Training windows for the lip-sync model, from curated shards.

Every clip's ``mel (N, 100)`` and the lip features of its ``visual (N, 61)`` codes are read once
(they are small: 5 minutes of clips are ~28k frames). A batch holds ``batch_size`` anchors; an
anchor is a lip window at a random position of a clip (clips drawn in proportion to their
length), its positive is the audio window at the same position, and its candidates are that
positive, ``negatives`` audio windows of the same clip shifted by ``min_shift``..``max_shift``
frames either way, and the other anchors' positives (masked out when they come from the same
clip less than ``min_shift`` frames away).

Held-out sources (``holdout``: file names, e.g. one speaker's clips) are kept out of training and
give the validation windows.

Augmentation: with probability ``mirror_prob`` an anchor's lip window is that of the left-right
mirrored video (``shards.codes.mirror_codes``: the left and right mouth blendshapes swap), its audio
unchanged: a mirrored face says the same thing at the same time. With probability ``freq_mask_prob``
one band of ``freq_mask_min_bins``..``freq_mask_max_bins`` mel bins of an anchor's audio windows (the
positive and its shifted negatives alike) is flattened (SpecAugment's frequency mask), so the model
cannot lean on one part of one voice's spectrum.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

import numpy as np
import torch

from model.sync.model import lip_features
from shards.codes import mirror_codes
from shards.reader import iterate_mel_code_clips
from shards.spec import N_MELS


@dataclass
class SyncDataConfig:
    batch_size: int = 64  # anchors per batch
    negatives: int = 8  # shifted audio windows of the anchor's own clip per anchor
    min_shift_frames: int = 8  # frames (85 ms): the smallest shift used as a negative
    max_shift_frames: int = 60  # frames (0.64 s): the largest
    holdout: list[str] = field(default_factory=list)  # source file names (basename) kept for validation
    min_dnsmos_ovrl: float = 0.0  # clips below this DNSMOS OVRL are not used (0: every genuine clip)
    speed_range: float = 0.0  # +- fraction: each anchor's windows are taken this much faster or slower (0: off)
    mirror_prob: float = 0.0  # 0-1: probability that an anchor's lip window is left-right mirrored
    freq_mask_prob: float = 0.0  # 0-1: probability that an anchor's audio windows (positive and negatives) get one
    # mel band flattened to each window's per-bin mean (SpecAugment's frequency mask; 0: off)
    freq_mask_min_bins: int = 8  # the band's width in mel bins: from ...
    freq_mask_max_bins: int = 20  # ... to (inclusive)


@dataclass
class SyncClip:
    clip_id: str
    source: str  # the source file's name (basename)
    mel: np.ndarray  # (N, 100) float32
    lips: np.ndarray  # (N, 54) float32: lip features of the codes
    lips_mirrored: np.ndarray | None = None  # (N, 54) float32: the same of the mirrored codes


def load_sync_clips(shards_dir: str, window: int, cfg: SyncDataConfig) -> tuple[list[SyncClip], list[SyncClip]]:
    """``(training clips, held-out clips)`` long enough for a window and its shifts; errors name the shard."""
    train, held = [], []
    hold = {posixpath.basename(h) for h in cfg.holdout}
    need = window + 2 * cfg.min_shift_frames
    for clip_id, source, _path, mel, codes in iterate_mel_code_clips(shards_dir, need, cfg.min_dnsmos_ovrl):
        mirrored = lip_features(torch.from_numpy(mirror_codes(codes))).numpy() if cfg.mirror_prob > 0 else None
        clip = SyncClip(clip_id, source, mel, lip_features(torch.from_numpy(codes)).numpy(), mirrored)
        (held if source in hold else train).append(clip)
    return train, held


def sample_batch(clips: list[SyncClip], window: int, cfg: SyncDataConfig, rng: np.random.Generator,
                 aug_rng: np.random.Generator | None = None) -> dict[str, torch.Tensor]:
    """``lips (B, W, 54)``, ``audio (B, 1 + K, W, 100)`` (positive first), ``clip (B,)``, ``pos (B,)``.

    ``aug_rng`` draws the frequency masks (default ``rng``): a separate generator leaves the windows
    drawn the same as without masking."""
    lengths = np.array([len(c.mel) for c in clips], np.float64)
    pick = rng.choice(len(clips), size=cfg.batch_size, p=lengths / lengths.sum())
    lips = np.empty((cfg.batch_size, window, clips[0].lips.shape[1]), np.float32)
    audio = np.empty((cfg.batch_size, 1 + cfg.negatives, window, N_MELS), np.float32)
    pos = np.empty(cfg.batch_size, np.int64)
    for b, ci in enumerate(pick):
        clip = clips[ci]
        rate = 1.0 + float(rng.uniform(-cfg.speed_range, cfg.speed_range)) if cfg.speed_range > 0 else 1.0
        span = min(len(clip.mel) - 2 * cfg.min_shift_frames, max(2, int(round(window * rate))))
        last = len(clip.mel) - span
        p = int(rng.integers(0, last + 1))
        pos[b] = p
        mirror = clip.lips_mirrored is not None and cfg.mirror_prob > 0 and rng.random() < cfg.mirror_prob
        lips[b] = stretch((clip.lips_mirrored if mirror else clip.lips)[p:p + span], window)
        audio[b, 0] = stretch(clip.mel[p:p + span], window)
        for k in range(cfg.negatives):
            q = shifted_start(p, last, cfg, rng)
            audio[b, 1 + k] = stretch(clip.mel[q:q + span], window)
        if cfg.freq_mask_prob > 0:
            arng = rng if aug_rng is None else aug_rng
            if arng.random() < cfg.freq_mask_prob:
                mask_band(audio[b], arng, cfg.freq_mask_min_bins, cfg.freq_mask_max_bins)
    return {"lips": torch.from_numpy(lips), "audio": torch.from_numpy(audio),
            "clip": torch.from_numpy(pick.astype(np.int64)), "pos": torch.from_numpy(pos)}


def mask_band(windows: np.ndarray, rng: np.random.Generator, min_bins: int, max_bins: int) -> None:
    """In place: one random band of ``min_bins``..``max_bins`` mel bins of every window ``(K, W, C)`` set to that
    window's per-bin mean over time: after the model's per-window standardization those bins are 0 (and
    ``loss.input_noise``, scaled by the per-bin std, adds nothing to them)."""
    c = windows.shape[-1]
    width = int(rng.integers(min_bins, max_bins + 1))
    lo = int(rng.integers(0, c - width + 1))
    band = windows[..., lo:lo + width]
    band[...] = band.mean(axis=-2, keepdims=True)


def stretch(x: np.ndarray, n: int) -> np.ndarray:
    """``x (S, C)`` linearly resampled in time to ``(n, C)`` (identity when ``S == n``): speed augmentation."""
    if len(x) == n:
        return x
    pos = np.linspace(0.0, len(x) - 1, n)
    i0 = np.minimum(pos.astype(np.int64), len(x) - 2)
    frac = (pos - i0)[:, None].astype(np.float32)
    return x[i0] * (1.0 - frac) + x[i0 + 1] * frac


def shifted_start(p: int, last: int, cfg: SyncDataConfig, rng: np.random.Generator) -> int:
    """A window start ``min_shift``..``max_shift`` frames from ``p`` (either side) inside ``[0, last]``.

    Short clips that cannot move that far take the farthest start they have.
    """
    options = [q for q in range(max(0, p - cfg.max_shift_frames), min(last, p + cfg.max_shift_frames) + 1)
               if abs(q - p) >= cfg.min_shift_frames]
    if options:
        return int(options[rng.integers(0, len(options))])
    return 0 if p - 0 >= last - p else last
