"""Euler ODE sampler with multi-condition classifier-free guidance and reference inpainting.

Tensor legend:

* ``N`` total frames at 93.75 Hz (reference + generated), ``N_ref`` reference frames,
  ``N_gen = N - N_ref``, ``T`` text tokens (reference text + target text), ``C_mel = 100``,
  ``C_code = 61``; ``K`` = number of guidance passes batched together (1 + non-zero scales).

Guidance formula (leave-one-out, F5-TTS sign convention, scale 0 = plain conditional):

    v = v(c) + s_text   * (v(c) - v(c without text))
             + s_audio  * (v(c) - v(c without reference mel))
             + s_visual * (v(c) - v(c without reference codes))

where ``c`` is the full condition (text, reference mel, reference codes) and "without" means
that condition is zeroed exactly as CFG dropout zeroes it in training. Each scale pushes the
sample away from what the model predicts without that one condition; with all scales 0 only
``v(c)`` is evaluated. The passes with a non-zero scale run as one batch.

Integration: ``x(0) ~ N(0, I)``; Euler steps over a time grid ``0 = t_0 < ... < t_S = 1``
(uniform, or F5-TTS sway sampling ``t + s (cos(pi t / 2) - 1 + t)`` when ``sway_coef`` is set);
at the end the reference frames are replaced by the reference itself (inpainting), so they
come back bit-exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from model.dit.backbone import OmniTalkerDiT
from model.dit.config import SamplerConfig


@dataclass
class SampleResult:
    mel: Tensor  # (N_gen, C_mel) generated log-mel frames
    codes: Tensor  # (N_gen, C_code) generated visual codes
    full_mel: Tensor  # (N, C_mel) reference frames followed by the generated ones
    full_codes: Tensor  # (N, C_code)


def build_time_grid(steps: int, sway_coef: float | None = None, device: torch.device | None = None) -> Tensor:
    """(steps + 1,) flow times from 0 to 1; sway sampling bends them toward t = 0 for ``sway_coef < 0``."""
    if steps < 1:
        raise ValueError("sampler.steps must be >= 1")
    t = torch.linspace(0.0, 1.0, steps + 1, device=device)
    if sway_coef is not None:
        t = t + sway_coef * (torch.cos(math.pi / 2 * t) - 1 + t)
    return t


def compute_guided_velocity(model: OmniTalkerDiT, x_mel: Tensor, x_code: Tensor, cond_mel: Tensor,
                            cond_code: Tensor, text: Tensor, t: Tensor, scales: tuple[float, float, float]
                            ) -> tuple[Tensor, Tensor]:
    """Guided velocity for one sample; inputs (1, N, ·), ``t`` scalar, ``scales`` (text, audio, visual)."""
    passes = [i for i, s in enumerate(scales) if s != 0.0]
    k = 1 + len(passes)
    drops = torch.zeros(3, k, dtype=torch.bool, device=x_mel.device)
    for row, cond_index in enumerate(passes, start=1):
        drops[cond_index, row] = True
    v_mel, v_code = model(x_mel.expand(k, -1, -1), x_code.expand(k, -1, -1), cond_mel.expand(k, -1, -1),
                          cond_code.expand(k, -1, -1), text.expand(k, -1), t.reshape(1).expand(k), None,
                          drops[0], drops[1], drops[2])
    out_mel, out_code = v_mel[:1], v_code[:1]
    for row, cond_index in enumerate(passes, start=1):
        s = scales[cond_index]
        out_mel = out_mel + s * (v_mel[:1] - v_mel[row:row + 1])
        out_code = out_code + s * (v_code[:1] - v_code[row:row + 1])
    return out_mel, out_code


def pad_text(text: Tensor, total_len: int) -> Tensor:
    """(T,) ids -> (1, N) padded with the filler id 0; T must not exceed N."""
    if text.dim() != 1:
        raise ValueError(f"text must be 1-D token ids (T,), got shape {tuple(text.shape)}")
    if text.shape[0] > total_len:
        raise ValueError(f"{text.shape[0]} text tokens do not fit in {total_len} frames; raise total_len")
    return torch.nn.functional.pad(text.long(), (0, total_len - text.shape[0]), value=0)[None]


@torch.no_grad()
def sample(model: OmniTalkerDiT, ref_mel: Tensor, ref_codes: Tensor, text: Tensor, total_len: int,
           cfg: SamplerConfig | None = None, driving_mel: Tensor | None = None) -> SampleResult:
    """Generate ``total_len - N_ref`` frames continuing the reference.

    ``ref_mel`` (N_ref, C_mel), ``ref_codes`` (N_ref, C_code), ``text`` (T,) ids of the reference
    text followed by the target text, ``total_len`` N frames (93.75 Hz) including the reference.

    Audio-driven mode (StyleTalker): ``driving_mel`` (N_gen, C_mel) is the target audio's mel. It
    joins the condition (nothing of the mel is masked), the mel stream is held on its known OT
    path ``(1 - t) x0 + t x1`` at every step, and only the codes are generated; the returned mel
    is ``driving_mel`` itself.
    """
    cfg = cfg or SamplerConfig()
    n_ref = ref_mel.shape[0]
    if ref_codes.shape[0] != n_ref:
        raise ValueError(f"ref_mel has {n_ref} frames but ref_codes has {ref_codes.shape[0]}")
    if total_len <= n_ref:
        raise ValueError(f"total_len ({total_len}) must exceed the reference length ({n_ref})")
    param = next(model.parameters())
    device, dtype = param.device, param.dtype
    cond_mel = torch.zeros(1, total_len, ref_mel.shape[1], device=device, dtype=dtype)
    cond_code = torch.zeros(1, total_len, ref_codes.shape[1], device=device, dtype=dtype)
    cond_mel[0, :n_ref] = ref_mel.to(device, dtype)
    cond_code[0, :n_ref] = ref_codes.to(device, dtype)
    if driving_mel is not None:
        if driving_mel.shape != (total_len - n_ref, ref_mel.shape[1]):
            raise ValueError(f"driving_mel must be ({total_len - n_ref}, {ref_mel.shape[1]}), "
                             f"got {tuple(driving_mel.shape)}")
        cond_mel[0, n_ref:] = driving_mel.to(device, dtype)
    ids = pad_text(text.to(device), total_len)

    generator = None
    if cfg.seed is not None:
        generator = torch.Generator(device=device).manual_seed(cfg.seed)
    x_mel = torch.randn(cond_mel.shape, generator=generator, device=device, dtype=dtype)
    x_code = torch.randn(cond_code.shape, generator=generator, device=device, dtype=dtype)
    mel_noise = x_mel.clone()
    grid = build_time_grid(cfg.steps, cfg.sway_coef, device).to(dtype)
    scales = (cfg.text_scale, cfg.audio_scale, cfg.visual_scale)

    was_training = model.training
    model.eval()
    try:
        for i in range(cfg.steps):
            v_mel, v_code = compute_guided_velocity(model, x_mel, x_code, cond_mel, cond_code, ids, grid[i], scales)
            dt = grid[i + 1] - grid[i]
            x_mel = x_mel + dt * v_mel
            x_code = x_code + dt * v_code
            if driving_mel is not None:  # the known audio stays on its path
                x_mel[:, n_ref:] = (1 - grid[i + 1]) * mel_noise[:, n_ref:] + grid[i + 1] * cond_mel[:, n_ref:]
    finally:
        model.train(was_training)

    full_mel = x_mel[0].clone()
    full_codes = x_code[0].clone()
    full_mel[:n_ref] = cond_mel[0, :n_ref]
    if driving_mel is not None:
        full_mel[n_ref:] = cond_mel[0, n_ref:]
    full_codes[:n_ref] = cond_code[0, :n_ref]
    return SampleResult(mel=full_mel[n_ref:], codes=full_codes[n_ref:], full_mel=full_mel, full_codes=full_codes)
