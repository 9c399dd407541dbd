"""Conditional flow matching (OT path) for joint mel + visual-code infilling.

Tensor legend:

* ``B`` batch, ``N`` frames at 93.75 Hz, ``C_mel = 100``, ``C_code = 61``;
* ``mel`` (B, N, C_mel) log-mel, ``codes`` (B, N, C_code) visual codes (``[0:51]`` blendshapes,
  ``[51:57]`` head pose, ``[57:61]`` eyes), ``text`` (B, N) int64 ids padded with 0;
* ``lengths`` (B,) valid frames per sample; ``mask`` (B, N) bool, True on valid frames;
* ``span`` (B, N) bool, True on the frames to generate (the target); the other valid frames
  are the reference condition; ``t`` (B,) flow time in (0, 1) (0 = noise, 1 = data).

One training step (:meth:`FlowMatching.compute_loss`):

1. ``t ~ sigmoid(N(mean, std))`` (logit-normal, per sample);
2. ``x0 ~ N(0, I)``, ``x_t = (1 - (1 - sigma_min) t) x0 + t x1``, target ``x1 - (1 - sigma_min) x0``
   (``sigma_min = 0`` by default: the straight path from noise to data, target ``x1 - x0``);
3. a random contiguous span covering a fraction in ``[mask_frac_min, mask_frac_max]`` of each
   sample's valid frames is the target; the condition is the data outside the span (zeros inside);
4. CFG dropout: text, reference mel and reference codes are each zeroed independently per sample;
5. the loss is the L1 between predicted and target velocity on span frames only (never
   padding), per part (mel, blendshape, pose, eye), summed with the configured weights.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from model.dit.backbone import OmniTalkerDiT
from model.dit.config import FlowMatchingConfig
from shards.codes import EXPRESSION_SLICE, EYE_SLICE, POSE_SLICE

CODE_PARTS = {"blendshape": EXPRESSION_SLICE, "pose": POSE_SLICE, "eye": EYE_SLICE}


def lengths_to_mask(lengths: Tensor, n: int) -> Tensor:
    """(B,) valid frame counts -> (B, N) bool mask, True on valid frames."""
    return torch.arange(n, device=lengths.device)[None, :] < lengths[:, None]


def sample_logit_normal_t(batch: int, mean: float = 0.0, std: float = 1.0,
                          generator: torch.Generator | None = None, device: torch.device | None = None) -> Tensor:
    """(B,) flow times in (0, 1): ``sigmoid(N(mean, std))``; the median is ``sigmoid(mean)``."""
    z = torch.randn(batch, generator=generator, device=device)
    return torch.sigmoid(mean + std * z)


def sample_span_mask(lengths: Tensor, n: int, frac_min: float, frac_max: float,
                     generator: torch.Generator | None = None) -> Tensor:
    """(B, N) bool: one contiguous span per sample covering ``U(frac_min, frac_max)`` of its valid frames.

    The span has at least one frame and lies within ``[0, lengths[b])``; its start is uniform.
    """
    lengths = lengths.long()
    frac = frac_min + (frac_max - frac_min) * torch.rand(lengths.shape, generator=generator, device=lengths.device)
    span_len = (frac * lengths).round().long().clamp(min=1)
    span_len = torch.minimum(span_len, lengths)
    room = (lengths - span_len).clamp(min=0)
    start = (torch.rand(lengths.shape, generator=generator, device=lengths.device) * (room + 1)).floor().long()
    start = torch.minimum(start, room)
    idx = torch.arange(n, device=lengths.device)[None, :]
    return (idx >= start[:, None]) & (idx < (start + span_len)[:, None])


def sample_cfg_drops(batch: int, probs: tuple[float, float, float], generator: torch.Generator | None = None,
                     device: torch.device | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Independent per-sample Bernoulli drops (B,) bool for (text, audio, visual) with ``probs``."""
    draws = torch.rand(3, batch, generator=generator, device=device)
    return tuple(draws[i] < p for i, p in enumerate(probs))  # type: ignore[return-value]


def compute_masked_l1(pred: Tensor, target: Tensor, loss_mask: Tensor) -> Tensor:
    """Mean |pred - target| over the frames where ``loss_mask`` (B, N) is True and all channels.

    ``pred``, ``target`` (B, N, C). Returns a scalar; 0 when no frame is selected.
    """
    weight = loss_mask.to(pred.dtype).unsqueeze(-1)
    denom = (weight.sum() * pred.shape[-1]).clamp(min=1.0)
    return ((pred - target).abs() * weight).sum() / denom


class FlowMatching(nn.Module):
    """Wraps :class:`OmniTalkerDiT` with the conditional flow-matching training objective."""

    def __init__(self, model: OmniTalkerDiT, cfg: FlowMatchingConfig | None = None) -> None:
        super().__init__()
        self.model = model
        self.cfg = cfg or FlowMatchingConfig()

    def interpolate(self, x0: Tensor, x1: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """OT path: ``x_t`` and the target velocity, for ``t`` (B,) broadcast over (B, N, C)."""
        s = self.cfg.sigma_min
        tt = t.view(-1, *([1] * (x1.dim() - 1))).to(x1.dtype)
        return (1 - (1 - s) * tt) * x0 + tt * x1, x1 - (1 - s) * x0

    def compute_loss(self, mel: Tensor, codes: Tensor, text: Tensor, lengths: Tensor | None = None,
                     generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Weighted masked L1 velocity loss and the per-part losses (detached, keys mel/blendshape/pose/eye).

        ``lengths`` (B,) valid frames (None = all N frames valid).
        """
        cfg = self.cfg
        b, n, _ = mel.shape
        device = mel.device
        if lengths is None:
            lengths = torch.full((b,), n, dtype=torch.long, device=device)
        mask = lengths_to_mask(lengths.to(device), n)
        t = sample_logit_normal_t(b, cfg.t_logit_mean, cfg.t_logit_std, generator, device).to(mel.dtype)
        span = sample_span_mask(lengths.to(device), n, cfg.mask_frac_min, cfg.mask_frac_max, generator) & mask
        drop_text, drop_audio, drop_visual = sample_cfg_drops(
            b, (cfg.drop_text_prob, cfg.drop_audio_prob, cfg.drop_visual_prob), generator, device)

        noise_mel = torch.randn(mel.shape, generator=generator, device=device, dtype=mel.dtype)
        noise_code = torch.randn(codes.shape, generator=generator, device=device, dtype=codes.dtype)
        xt_mel, target_mel = self.interpolate(noise_mel, mel, t)
        xt_code, target_code = self.interpolate(noise_code, codes, t)
        # Audio-driven samples: the mel is all condition (nothing of it to generate), codes as usual.
        audio_driven = torch.rand(b, generator=generator, device=device) < cfg.audio_driven_prob
        mel_span = span & ~audio_driven[:, None]
        keep = (~span).unsqueeze(-1).to(mel.dtype)
        keep_mel = (~mel_span).unsqueeze(-1).to(mel.dtype)
        pred_mel, pred_code = self.model(xt_mel, xt_code, mel * keep_mel, codes * keep, text, t, mask,
                                         drop_text, drop_audio, drop_visual)
        return self.weigh_losses(pred_mel, pred_code, target_mel, target_code, span, mel_span)

    def weigh_losses(self, pred_mel: Tensor, pred_code: Tensor, target_mel: Tensor, target_code: Tensor,
                     loss_mask: Tensor, mel_mask: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Per-part masked L1 on ``loss_mask`` (B, N) frames (``mel_mask`` for the mel, default the same);
        total = sum of weight * part."""
        w = self.cfg.loss_weights
        parts = {"mel": compute_masked_l1(pred_mel, target_mel, loss_mask if mel_mask is None else mel_mask)}
        for name, sl in CODE_PARTS.items():
            parts[name] = compute_masked_l1(pred_code[..., sl], target_code[..., sl], loss_mask)
        weights = {"mel": w.mel, "blendshape": w.blendshape, "pose": w.pose, "eye": w.eye}
        total = sum(weights[k] * parts[k] for k in parts)
        return total, {k: v.detach() for k, v in parts.items()}  # type: ignore[return-value]
