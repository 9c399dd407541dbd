"""Configuration of the OmniTalker dual-branch DiT, its flow-matching objective and sampler.

Tensor legend (used by every file in ``model/dit``):

* ``B`` batch, ``N`` frames at 93.75 Hz (exactly 24000 / 256), ``T`` text tokens,
* ``D`` model dim, ``H`` attention heads, ``Dh = D / H`` head dim, ``Dt`` text dim,
* ``C_mel = 100`` log-mel bins, ``C_code = 61`` visual codes per frame:
  ``[0:51]`` ARKit blendshapes, ``[51:57]`` head pose (pitch, yaw, roll in radians, tx, ty, tz),
  ``[57:61]`` eyes (left yaw, left pitch, right yaw, right pitch, radians).

Three dataclasses, one per concern, grouped in :class:`ModelConfig`:

* :class:`DiTConfig` -- architecture (``paper`` sizes from OmniTalker Table 5, ``tiny`` for CPU tests);
* :class:`FlowMatchingConfig` -- OT conditional flow matching, span masking, CFG dropout, loss weights;
* :class:`SamplerConfig` -- Euler ODE steps, sway sampling, per-condition CFG scales.

``configs/model_paper.yaml`` and ``configs/model_tiny.yaml`` are the commented defaults;
:func:`load_model_config` overlays a YAML file (and ``key.sub=value`` overrides) on the
dataclass defaults and rejects unknown keys.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.overlay import load_layered_config, overlay_config
from shards.codes import CODE_DIM
from shards.spec import N_MELS

FUSION_KINDS = ("mm_attention", "add", "linear", "cross_attention")


@dataclass
class DiTConfig:
    """Architecture of the dual-branch DiT.

    Depth: ``fusion_depth`` audio-visual fusion blocks, then ``audio_depth`` audio-only and
    ``visual_depth`` visual-only DiT blocks.
    """

    mel_dim: int = N_MELS  # log-mel bins per frame (C_mel)
    code_dim: int = CODE_DIM  # visual codes per frame (C_code)
    vocab_size: int = 2546  # text vocabulary size including id 0 = padding / filler token
    dim: int = 1024  # D: model width of both streams
    heads: int = 16  # H: attention heads (D must be divisible by H)
    ffn_dim: int = 2048  # hidden width of each transformer feed-forward
    text_dim: int = 512  # Dt: width of the text embedding
    text_conv_layers: int = 4  # ConvNeXt-V2 blocks in the text embedding
    text_conv_kernel: int = 7  # frames: depthwise kernel of each ConvNeXt-V2 block
    text_ffn_mult: int = 2  # ConvNeXt-V2 pointwise MLP width = text_ffn_mult * Dt
    conv_pos_kernel: int = 31  # frames: kernel of the convolutional position embedding
    conv_pos_groups: int = 16  # groups of the convolutional position embedding
    time_freq_dim: int = 256  # width of the sinusoidal timestep features before the MLP
    fusion: str = "mm_attention"  # block type: mm_attention | add | linear | cross_attention
    fusion_depth: int = 22  # audio-visual fusion blocks
    audio_depth: int = 4  # audio-only DiT blocks after fusion
    visual_depth: int = 4  # visual-only DiT blocks after fusion
    dropout: float = 0.1  # dropout probability in attention and feed-forward
    rope_theta: float = 10000.0  # RoPE base frequency

    def __post_init__(self) -> None:
        if self.fusion not in FUSION_KINDS:
            raise ValueError(f"dit.fusion must be one of {FUSION_KINDS}, got {self.fusion!r}")
        if self.dim % self.heads:
            raise ValueError(f"dit.dim ({self.dim}) must be divisible by dit.heads ({self.heads})")
        if (self.dim // self.heads) % 2:
            raise ValueError("head dim (dim / heads) must be even for RoPE")
        if self.dim % self.conv_pos_groups:
            raise ValueError(f"dit.dim ({self.dim}) must be divisible by conv_pos_groups ({self.conv_pos_groups})")


@dataclass
class LossWeights:
    """Weights of the per-part masked L1 losses (summed into the total loss)."""

    mel: float = 1.0  # log-mel, 100 dims
    blendshape: float = 1.0  # codes[0:51]
    pose: float = 1.0  # codes[51:57]
    eye: float = 1.0  # codes[57:61]


@dataclass
class FlowMatchingConfig:
    """Conditional flow matching with the optimal-transport path (Lipman et al. 2023).

    ``x_t = (1 - (1 - sigma_min) t) x0 + t x1`` with ``x0 ~ N(0, I)`` and data ``x1``; the
    target velocity is ``x1 - (1 - sigma_min) x0`` (= ``x1 - x0`` for the default 0).
    """

    sigma_min: float = 0.0  # width of the path at t = 1; 0 as in F5-TTS
    t_logit_mean: float = 0.0  # logit-normal timestep: mean of the normal before the sigmoid
    t_logit_std: float = 1.0  # logit-normal timestep: std of the normal before the sigmoid
    mask_frac_min: float = 0.7  # fraction of each sample's valid frames in the masked (target) span, lower bound
    mask_frac_max: float = 1.0  # ... upper bound
    drop_text_prob: float = 0.2  # CFG dropout: probability of zeroing the text condition per sample
    drop_audio_prob: float = 0.2  # CFG dropout: probability of zeroing the reference mel per sample
    drop_visual_prob: float = 0.2  # CFG dropout: probability of zeroing the reference codes per sample
    # StyleTalker's audio-driven mode: this fraction of samples keeps the whole mel as condition
    # (unmasked) and learns only the codes of the masked span, so the same model and sampler can
    # generate codes for a given audio (model/dit/sampler.py ``driving_mel``).
    audio_driven_prob: float = 0.1
    loss_weights: LossWeights = field(default_factory=LossWeights)

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_frac_min <= self.mask_frac_max <= 1.0:
            raise ValueError("need 0 < flow.mask_frac_min <= flow.mask_frac_max <= 1")
        if not 0.0 <= self.sigma_min < 1.0:
            raise ValueError("flow.sigma_min must be in [0, 1)")


@dataclass
class SamplerConfig:
    """Euler ODE sampler with multi-condition classifier-free guidance (see ``sampler.py``)."""

    steps: int = 16  # Euler steps from t = 0 (noise) to t = 1 (data)
    sway_coef: float | None = None  # F5-TTS sway sampling coefficient (e.g. -1.0); None = uniform steps
    text_scale: float = 2.0  # CFG scale of the text condition (0 = no text guidance)
    audio_scale: float = 0.0  # CFG scale of the reference-mel condition
    visual_scale: float = 0.0  # CFG scale of the reference-codes condition
    seed: int | None = 0  # noise seed; None = torch's global generator


@dataclass
class ModelConfig:
    dit: DiTConfig = field(default_factory=DiTConfig)
    flow: FlowMatchingConfig = field(default_factory=FlowMatchingConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def paper_config() -> ModelConfig:
    """OmniTalker Table 5: 22 fusion blocks, 4 + 4 branch blocks, D 1024, 16 heads, FFN 2048, Dt 512."""
    return ModelConfig()


def tiny_config() -> ModelConfig:
    """A CPU-sized model for tests: D 64, 2 heads, 2 fusion blocks, 1 + 1 branch blocks."""
    dit = DiTConfig(vocab_size=64, dim=64, heads=2, ffn_dim=128, text_dim=32, conv_pos_groups=4,
                    time_freq_dim=64, fusion_depth=2, audio_depth=1, visual_depth=1, dropout=0.0)
    return ModelConfig(dit=dit)


def load_model_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ModelConfig:
    """Defaults (the paper config), then the YAML file, then ``key=value`` overrides."""
    return load_layered_config(ModelConfig(), path, overrides)


def model_config_from_dict(values: dict[str, Any]) -> ModelConfig:
    """Rebuild a :class:`ModelConfig` from ``ModelConfig.to_dict()`` (as stored in a checkpoint's state.json)."""
    return overlay_config(ModelConfig(), values)
