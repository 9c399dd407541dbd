"""Training windows for the StyleTalker motion model, from curated shards.

Every clip's ``mel (N, 100)`` and ``visual (N, 61)`` codes are read once. A batch holds ``batch_size``
windows of ``window_frames`` frames at random positions of random clips (drawn in proportion to their
length); each window's reference is ``ref_frames`` frames of codes from another position of the same clip
(not overlapping the window when the clip is long enough, else anywhere in it).

Augmentation: with probability ``mirror_prob`` a window and its reference are the codes of the
left-right mirrored video (``shards.codes.mirror_codes``: left and right swapped, yaw, roll and eye
yaws negated, tx -> 1 - tx; the mel is unchanged). It doubles the head poses a small corpus shows,
which is what a driver unseen in training needs (docs/styletalker.md). The normalization statistics
then cover the mirrored codes too.

Batch tensors: ``mel (B, W, 100)``, ``codes (B, W, 61)``, ``ref (B, R, 61)``, ``clip (B,)``, ``mirrored (B,)``.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

import numpy as np
import torch

from shards.codes import CODE_DIM, mirror_codes
from shards.reader import iterate_mel_code_clips
from shards.spec import N_MELS
from training.split import SplitConfig


@dataclass
class StyleTalkerDataConfig:
    batch_size: int = 32  # windows per batch
    window_frames: int = 192  # frames per training window at 93.75 Hz (2.05 s)
    ref_frames: int = 128  # frames of the reference window (1.37 s), same clip, another position
    holdout: list[str] = field(default_factory=list)  # source file names (basename) kept out of training
    min_dnsmos_ovrl: float = 0.0  # clips below this DNSMOS OVRL are not used (0: every genuine clip)
    mirror_prob: float = 0.5  # 0-1: probability that a window (and its reference) is left-right mirrored
    split: SplitConfig = field(default_factory=SplitConfig)  # held-out test sources (training/split.py, split.json)


@dataclass
class MotionClip:
    clip_id: str
    source: str  # the source file's name (basename)
    mel: np.ndarray  # (N, 100) float32
    codes: np.ndarray  # (N, 61) float32


def load_motion_clips(shards_dir: str, cfg: StyleTalkerDataConfig) -> tuple[list[MotionClip], list[MotionClip]]:
    """``(training clips, held-out clips)`` of at least ``window_frames`` frames; errors name the shard."""
    train, held = [], []
    hold = {posixpath.basename(h) for h in cfg.holdout}
    need = max(cfg.window_frames, cfg.ref_frames)
    for clip_id, source, _path, mel, codes in iterate_mel_code_clips(shards_dir, need, cfg.min_dnsmos_ovrl):
        (held if source in hold else train).append(MotionClip(clip_id, source, mel, codes))
    return train, held


def clip_stats(clips: list[MotionClip], mirror_prob: float = 0.0) -> dict[str, np.ndarray]:
    """Per-column ``code_mean, code_std (61,)`` and ``mel_mean, mel_std (100,)`` over every frame of ``clips``
    (and, when ``mirror_prob > 0``, of their mirror images: the codes training sees)."""
    codes = np.concatenate([c.codes for c in clips]).astype(np.float64)
    if mirror_prob > 0:
        codes = np.concatenate([codes, mirror_codes(codes)])
    mel = np.concatenate([c.mel for c in clips]).astype(np.float64)
    return {"code_mean": codes.mean(0), "code_std": codes.std(0), "mel_mean": mel.mean(0), "mel_std": mel.std(0)}


def reference_start(p: int, n: int, w: int, r: int, rng: np.random.Generator) -> int:
    """A start for ``r`` reference frames in a clip of ``n``, outside ``[p, p + w)`` when there is room."""
    options = [q for q in range(0, n - r + 1) if q + r <= p or q >= p + w]
    if options:
        return int(options[rng.integers(0, len(options))])
    return int(rng.integers(0, n - r + 1))


def sample_motion_batch(clips: list[MotionClip], cfg: StyleTalkerDataConfig, rng: np.random.Generator
                        ) -> dict[str, torch.Tensor]:
    """``mel (B, W, 100)``, ``codes (B, W, 61)``, ``ref (B, R, 61)``, ``clip (B,)``, ``pos (B,)``, ``ref_pos (B,)``,
    ``mirrored (B,)`` bool (no random number is drawn for it when ``mirror_prob`` is 0)."""
    w, r, b = cfg.window_frames, cfg.ref_frames, cfg.batch_size
    lengths = np.array([len(c.mel) for c in clips], np.float64)
    pick = rng.choice(len(clips), size=b, p=lengths / lengths.sum())
    mel = np.empty((b, w, N_MELS), np.float32)
    codes = np.empty((b, w, CODE_DIM), np.float32)
    ref = np.empty((b, r, CODE_DIM), np.float32)
    pos, ref_pos = np.empty(b, np.int64), np.empty(b, np.int64)
    mirrored = np.zeros(b, bool)
    for i, ci in enumerate(pick):
        c = clips[ci]
        n = len(c.mel)
        p = int(rng.integers(0, n - w + 1))
        q = reference_start(p, n, w, r, rng)
        mel[i], codes[i], ref[i] = c.mel[p:p + w], c.codes[p:p + w], c.codes[q:q + r]
        pos[i], ref_pos[i] = p, q
        if cfg.mirror_prob > 0 and rng.random() < cfg.mirror_prob:
            codes[i], ref[i], mirrored[i] = mirror_codes(codes[i]), mirror_codes(ref[i]), True
    return {"mel": torch.from_numpy(mel), "codes": torch.from_numpy(codes), "ref": torch.from_numpy(ref),
            "clip": torch.from_numpy(pick.astype(np.int64)), "pos": torch.from_numpy(pos),
            "ref_pos": torch.from_numpy(ref_pos), "mirrored": torch.from_numpy(mirrored)}
