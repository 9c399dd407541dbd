"""SyncNet (Chung and Zisserman 2016) as published, for the standard Sync-C / Sync-D / offset numbers.

Tensor legend: ``B`` samples; lip input ``(B, 3, 5, 224, 224)``: 5 consecutive 25 fps face crops,
BGR, values 0-255; audio input ``(B, 1, 13, 20)``: 13 MFCCs x 20 frames at 100 Hz (0.2 s) of
16 kHz audio on the int16 scale; both encoders give ``(B, 1024)`` features.

The module layout (``netcnnaud``, ``netfcaud``, ``netcnnlip``, ``netfclip``) is that of the
authors' ``syncnet_v2.model``, so their state dict loads as it is (``sync.syncnet_path``). No
weights can be installed here: tests build a random state dict with the same keys.

The metric (:func:`compute_sync_metric`) follows the authors' evaluation: for every video frame
``i`` the lip feature of frames ``i..i+4`` is compared (Euclidean distance) with the audio
features of frames ``i - vshift .. i + vshift`` (zero-padded); the per-shift mean over frames
gives a curve whose minimum is Sync-D (``min_dist``), whose median minus minimum is Sync-C
(``conf``), and whose argmin gives the offset. SyncNet's offset is in video frames and positive
when the audio leads the video; ``av_offset_s`` restates it in this project's convention
(seconds, positive when the audio is late).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

VIDEO_FPS = 25.0  # SyncNet's frame rate
MFCC_PER_FRAME = 4  # 100 Hz MFCC frames per video frame
LIP_FRAMES = 5  # frames per lip sample
AUDIO_FRAMES = 20  # MFCC frames per audio sample (0.2 s)
CROP_PX = 224  # face crop side


class SyncNet(nn.Module):
    """The two SyncNet streams, with the authors' layer names."""

    def __init__(self, embed_dim: int = 1024) -> None:
        super().__init__()
        self.netcnnaud = nn.Sequential(
            nn.Conv2d(1, 64, (3, 3), stride=(1, 1), padding=(1, 1)), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            nn.MaxPool2d((1, 1), stride=(1, 1)),
            nn.Conv2d(64, 192, (3, 3), stride=(1, 1), padding=(1, 1)), nn.BatchNorm2d(192), nn.ReLU(inplace=True),
            nn.MaxPool2d((3, 3), stride=(1, 2)),
            nn.Conv2d(192, 384, (3, 3), padding=(1, 1)), nn.BatchNorm2d(384), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, (3, 3), padding=(1, 1)), nn.BatchNorm2d(256), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, (3, 3), padding=(1, 1)), nn.BatchNorm2d(256), nn.ReLU(inplace=True),
            nn.MaxPool2d((3, 3), stride=(2, 2)),
            nn.Conv2d(256, 512, (5, 4), padding=(0, 0)), nn.BatchNorm2d(512), nn.ReLU(),
        )
        self.netfcaud = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, embed_dim))
        self.netfclip = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, embed_dim))
        self.netcnnlip = nn.Sequential(
            nn.Conv3d(3, 96, (5, 7, 7), stride=(1, 2, 2), padding=0), nn.BatchNorm3d(96), nn.ReLU(inplace=True),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),
            nn.Conv3d(96, 256, (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)), nn.BatchNorm3d(256),
            nn.ReLU(inplace=True),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256), nn.ReLU(inplace=True),
            nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256), nn.ReLU(inplace=True),
            nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256), nn.ReLU(inplace=True),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),
            nn.Conv3d(256, 512, (1, 6, 6), padding=0), nn.BatchNorm3d(512), nn.ReLU(inplace=True),
        )

    def forward_aud(self, x: Tensor) -> Tensor:
        """``(B, 1, 13, 20)`` MFCC windows -> ``(B, 1024)``."""
        return self.netfcaud(self.netcnnaud(x).flatten(1))

    def forward_lip(self, x: Tensor) -> Tensor:
        """``(B, 3, 5, 224, 224)`` face crops -> ``(B, 1024)``."""
        return self.netfclip(self.netcnnlip(x).flatten(1))


class SyncNetWeightsError(RuntimeError):
    """``sync.syncnet_path`` does not hold SyncNet's weights; the message says what was found."""


def load_syncnet(path: str | Path, device: str | torch.device = "cpu") -> SyncNet:
    """The authors' ``syncnet_v2.model`` (a torch state dict) in eval mode; every key must match."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise SyncNetWeightsError(f"sync.syncnet_path={str(path)!r} does not exist (joonson/syncnet_python's "
                                  "syncnet_v2.model)")
    state = torch.load(p, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    model = SyncNet()
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise SyncNetWeightsError(f"{p}: not SyncNet's weights ({len(missing)} missing keys, e.g. {missing[:2]}; "
                                  f"{len(unexpected)} unexpected, e.g. {unexpected[:2]})")
    return model.to(device).eval()


@dataclass
class SyncNetScore:
    offset_frames: int  # SyncNet's offset: video frames, positive = audio leads
    conf: float  # Sync-C: median - min of the mean distance curve
    min_dist: float  # Sync-D: the minimum
    av_offset_s: float  # the same offset in seconds, positive = audio late (this project's convention)


def compute_sync_metric(lip_feat: Tensor, aud_feat: Tensor, vshift: int = 15) -> SyncNetScore:
    """Sync-C, Sync-D and the offset from per-frame lip ``(T, F)`` and audio ``(T, F)`` features."""
    win = 2 * vshift + 1
    padded = nn.functional.pad(aud_feat, (0, 0, vshift, vshift))
    dists = torch.stack([nn.functional.pairwise_distance(lip_feat[[i], :].repeat(win, 1), padded[i:i + win, :])
                         for i in range(len(lip_feat))])  # (T, win): shift j compares audio frame i - vshift + j
    mdist = dists.mean(dim=0)
    minval, minidx = torch.min(mdist, 0)
    offset = vshift - int(minidx)
    return SyncNetScore(offset_frames=offset, conf=float(torch.median(mdist) - minval), min_dist=float(minval),
                        av_offset_s=-offset / VIDEO_FPS)


@torch.no_grad()
def score_syncnet(model: SyncNet, crops_bgr: Tensor, mfcc: Tensor, vshift: int = 15, batch: int = 20) -> SyncNetScore:
    """``crops_bgr (T, 224, 224, 3)`` uint8/float 25 fps face crops and ``mfcc (M, 13)`` at 100 Hz of the same span."""
    n = min(len(crops_bgr), len(mfcc) // MFCC_PER_FRAME) - LIP_FRAMES
    if n < 1:
        raise ValueError(f"too short for SyncNet: {len(crops_bgr)} frames, {len(mfcc)} MFCC frames")
    video = crops_bgr.float().permute(3, 0, 1, 2)[None]  # (1, 3, T, H, W)
    cc = mfcc.float().T[None, None]  # (1, 1, 13, M)
    lips, auds = [], []
    for i in range(0, n, batch):
        idx = range(i, min(n, i + batch))
        lips.append(model.forward_lip(torch.cat([video[:, :, v:v + LIP_FRAMES] for v in idx])))
        auds.append(model.forward_aud(torch.cat([cc[:, :, :, v * MFCC_PER_FRAME:v * MFCC_PER_FRAME + AUDIO_FRAMES]
                                                 for v in idx])))
    return compute_sync_metric(torch.cat(lips), torch.cat(auds), vshift)
