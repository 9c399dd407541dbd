"""Light-ASD (Liao et al., CVPR 2023): a lightweight audio-visual active-speaker detector.

Tensor-shape legend
-------------------
B   batch (face tracks)
T   video frames at 25 fps (one speaking logit per frame)
A   audio MFCC frames at 100 Hz; A = 4 T
M   MFCC coefficients (13)
H,W face crop size: 112 x 112 grayscale, pixel values 0-255
C   channels; the last stage's width is the embedding size E (128 in the paper)

Data flow
---------
faces (B, T, H, W) -> normalize -> (B, 1, T, H, W)
    -> VisualEncoder: 3 blocks of separable 3D convs (spatial 1xkxk then temporal kx1x1,
       kernels 3 and 5 in parallel, summed), spatial max-pools -> (B, E, T, H/8, W/8)
    -> global spatial max -> (B, T, E)
mfcc (B, A, M) -> (B, 1, M, A)
    -> AudioEncoder: 3 blocks of separable 2D convs (kx1 over MFCC, 1xk over time),
       time max-pools (stride 2 twice: A -> T) -> (B, E, M, T) -> mean over M -> (B, T, E)
audio + visual (B, T, E) -> BGRU (forward GRU, GELU, backward GRU, GELU) -> (B, T, E)
    -> head Linear(E, 2) -> logits (B, T, 2); speaking log-odds = logit[1] - logit[0]

Parameter names follow the authors' release (``visualEncoder.block1.s_3.weight``,
``audioEncoder.block2.m_5.weight``, ``GRU.gru_forward.weight_ih_l0``; their
``lossAV.FC`` is ``head`` here), so their checkpoint loads through
:func:`remap_state_dict`. Channel widths are configurable for tests (a tiny config).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

VISUAL_MEAN = 0.4161  # grayscale mean of the training crops (pixel / 255)
VISUAL_STD = 0.1688
BN = {"momentum": 0.01, "eps": 0.001}


@dataclass(frozen=True)
class LightAsdConfig:
    visual_channels: tuple[int, int, int] = (32, 64, 128)
    audio_channels: tuple[int, int, int] = (32, 64, 128)  # last must equal visual_channels[-1]
    n_mfcc: int = 13

    @property
    def embed_dim(self) -> int:
        return self.visual_channels[-1]


class VisualBlock(nn.Module):
    """Two parallel separable 3D conv paths (kernel 3 and 5), summed, then a 1x1x1 conv."""

    def __init__(self, c_in: int, c_out: int, downsample: bool = False) -> None:
        super().__init__()
        st = (1, 2, 2) if downsample else (1, 1, 1)
        self.relu = nn.ReLU()
        for k in (3, 5):
            p = k // 2
            setattr(self, f"s_{k}", nn.Conv3d(c_in, c_out, (1, k, k), stride=st, padding=(0, p, p), bias=False))
            setattr(self, f"bn_s_{k}", nn.BatchNorm3d(c_out, **BN))
            setattr(self, f"t_{k}", nn.Conv3d(c_out, c_out, (k, 1, 1), padding=(p, 0, 0), bias=False))
            setattr(self, f"bn_t_{k}", nn.BatchNorm3d(c_out, **BN))
        self.last = nn.Conv3d(c_out, c_out, (1, 1, 1), bias=False)
        self.bn_last = nn.BatchNorm3d(c_out, **BN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, T, H, W) -> (B, C_out, T, H', W')
        paths = []
        for k in (3, 5):
            y = self.relu(getattr(self, f"bn_s_{k}")(getattr(self, f"s_{k}")(x)))
            paths.append(self.relu(getattr(self, f"bn_t_{k}")(getattr(self, f"t_{k}")(y))))
        return self.relu(self.bn_last(self.last(paths[0] + paths[1])))


class VisualEncoder(nn.Module):
    def __init__(self, ch: tuple[int, int, int]) -> None:
        super().__init__()
        self.block1 = VisualBlock(1, ch[0], downsample=True)
        self.pool1 = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.block2 = VisualBlock(ch[0], ch[1])
        self.pool2 = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.block3 = VisualBlock(ch[1], ch[2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, T, H, W) -> (B, T, E)
        x = self.block3(self.pool2(self.block2(self.pool1(self.block1(x)))))
        return torch.amax(x, dim=(3, 4)).transpose(1, 2)


class AudioBlock(nn.Module):
    """Two parallel separable 2D conv paths over (MFCC, time), kernel 3 and 5, summed, then 1x1."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.relu = nn.ReLU()
        for k in (3, 5):
            p = k // 2
            setattr(self, f"m_{k}", nn.Conv2d(c_in, c_out, (k, 1), padding=(p, 0), bias=False))
            setattr(self, f"bn_m_{k}", nn.BatchNorm2d(c_out, **BN))
            setattr(self, f"t_{k}", nn.Conv2d(c_out, c_out, (1, k), padding=(0, p), bias=False))
            setattr(self, f"bn_t_{k}", nn.BatchNorm2d(c_out, **BN))
        self.last = nn.Conv2d(c_out, c_out, (1, 1), bias=False)
        self.bn_last = nn.BatchNorm2d(c_out, **BN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, M, A) -> (B, C_out, M, A)
        paths = []
        for k in (3, 5):
            y = self.relu(getattr(self, f"bn_m_{k}")(getattr(self, f"m_{k}")(x)))
            paths.append(self.relu(getattr(self, f"bn_t_{k}")(getattr(self, f"t_{k}")(y))))
        return self.relu(self.bn_last(self.last(paths[0] + paths[1])))


class AudioEncoder(nn.Module):
    def __init__(self, ch: tuple[int, int, int]) -> None:
        super().__init__()
        self.block1 = AudioBlock(1, ch[0])
        self.pool1 = nn.MaxPool2d((1, 3), stride=(1, 2), padding=(0, 1))
        self.block2 = AudioBlock(ch[0], ch[1])
        self.pool2 = nn.MaxPool2d((1, 3), stride=(1, 2), padding=(0, 1))
        self.block3 = AudioBlock(ch[1], ch[2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, M, A) -> (B, A/4, E)
        x = self.block3(self.pool2(self.block2(self.pool1(self.block1(x)))))
        return x.mean(dim=2).transpose(1, 2)


class BiGru(nn.Module):
    """A forward GRU, then a GRU over the time-reversed output (the authors' BGRU)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gru_forward = nn.GRU(dim, dim, num_layers=1, batch_first=True)
        self.gru_backward = nn.GRU(dim, dim, num_layers=1, batch_first=True)
        self.gelu = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, E) -> (B, T, E)
        x = self.gelu(self.gru_forward(x)[0])
        x = torch.flip(self.gru_backward(torch.flip(x, dims=[1]))[0], dims=[1])
        return self.gelu(x)


class LightAsd(nn.Module):
    """The full model: per-frame speaking logits for aligned faces and MFCCs."""

    def __init__(self, cfg: LightAsdConfig = LightAsdConfig()) -> None:
        super().__init__()
        if cfg.audio_channels[-1] != cfg.visual_channels[-1]:
            raise ValueError("audio and visual embeddings must have the same width")
        self.cfg = cfg
        self.visualEncoder = VisualEncoder(cfg.visual_channels)
        self.audioEncoder = AudioEncoder(cfg.audio_channels)
        self.GRU = BiGru(cfg.embed_dim)
        self.head = nn.Linear(cfg.embed_dim, 2)

    def encode_visual(self, faces: torch.Tensor) -> torch.Tensor:
        """(B, T, 112, 112) grayscale 0-255 -> (B, T, E)."""
        x = (faces.unsqueeze(1) / 255.0 - VISUAL_MEAN) / VISUAL_STD
        return self.visualEncoder(x)

    def encode_audio(self, mfcc: torch.Tensor) -> torch.Tensor:
        """(B, 4T, 13) -> (B, T, E)."""
        return self.audioEncoder(mfcc.unsqueeze(1).transpose(2, 3))

    def classify(self, audio_embed: torch.Tensor, visual_embed: torch.Tensor) -> torch.Tensor:
        """(B, T, E) x2 -> speaking log-odds (B, T)."""
        logits = self.head(self.GRU(audio_embed + visual_embed))
        return logits[..., 1] - logits[..., 0]

    def forward(self, mfcc: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """(B, 4T, 13), (B, T, 112, 112) -> speaking log-odds (B, T)."""
        return self.classify(self.encode_audio(mfcc), self.encode_visual(faces))


def remap_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map the authors' checkpoint keys to ours: drop ``module.``/``model.`` prefixes,
    ``lossAV.FC`` -> ``head``, and drop the visual-only auxiliary head ``lossV``."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        k = key.removeprefix("module.").removeprefix("model.")
        if k.startswith("lossV."):
            continue
        k = k.replace("lossAV.FC.", "head.")
        out[k] = value
    return out


def infer_config(state: dict[str, torch.Tensor]) -> LightAsdConfig:
    """Channel widths read off a (remapped) state dict's conv shapes."""
    vis = tuple(int(state[f"visualEncoder.block{i}.s_3.weight"].shape[0]) for i in (1, 2, 3))
    aud = tuple(int(state[f"audioEncoder.block{i}.m_3.weight"].shape[0]) for i in (1, 2, 3))
    return LightAsdConfig(visual_channels=vis, audio_channels=aud)  # type: ignore[arg-type]
