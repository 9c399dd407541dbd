"""Flow-matching objective and Euler / CFG sampler on the tiny DiT (real model, CPU, no mocks).

The model's inputs during ``compute_loss`` are captured with a forward pre-hook on the real
model (the hook only records; it changes nothing).
"""

from __future__ import annotations

import pytest
import torch

from model.dit import FlowMatching, OmniTalkerDiT, SamplerConfig, sample, tiny_config
from model.dit.config import FlowMatchingConfig, LossWeights
from model.dit.flow_matching import (
    lengths_to_mask,
    sample_cfg_drops,
    sample_logit_normal_t,
    sample_span_mask,
)
from model.dit.sampler import build_time_grid, compute_guided_velocity

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def tiny_model() -> OmniTalkerDiT:
    torch.manual_seed(0)
    model = OmniTalkerDiT(tiny_config().dit)
    with torch.no_grad():  # wake up the zero-initialised gates and heads
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def capture_inputs(model: OmniTalkerDiT) -> tuple[list[tuple], torch.utils.hooks.RemovableHandle]:
    calls: list[tuple] = []
    handle = model.register_forward_pre_hook(lambda _m, args: calls.append(args))
    return calls, handle


def test_logit_normal_t_in_open_interval_with_median_half() -> None:
    t = sample_logit_normal_t(20000, generator=torch.Generator().manual_seed(0))
    assert ((t > 0) & (t < 1)).all()
    assert abs(t.median().item() - 0.5) < 0.02
    logit = torch.log(t / (1 - t))
    assert abs(logit.std().item() - 1.0) < 0.03
    shifted = sample_logit_normal_t(20000, mean=1.0, generator=torch.Generator().manual_seed(0))
    assert abs(shifted.median().item() - torch.sigmoid(torch.tensor(1.0)).item()) < 0.02


def test_span_mask_is_one_contiguous_span_within_valid_frames() -> None:
    lengths = torch.randint(1, 200, (500,), generator=torch.Generator().manual_seed(0))
    span = sample_span_mask(lengths, 200, 0.7, 1.0, generator=torch.Generator().manual_seed(1))
    valid = lengths_to_mask(lengths, 200)
    assert not (span & ~valid).any()
    counts = span.sum(1)
    assert (counts >= 1).all()
    frac = counts.float() / lengths.float()
    long = lengths >= 20  # rounding dominates for very short samples
    assert (frac[long] >= 0.7 - 0.03).all() and (frac <= 1.0).all()
    assert frac[long].mean().item() == pytest.approx(0.85, abs=0.02)
    # contiguous: the mask switches on at most once and off at most once
    edges = (span[:, 1:] != span[:, :-1]).sum(1) + span[:, 0].long()
    assert (edges <= 2).all()
    starts = span.float().argmax(1)
    assert starts.float().std() > 0  # start positions vary


def test_cfg_drop_rate_per_condition() -> None:
    drops = sample_cfg_drops(20000, (0.2, 0.2, 0.2), generator=torch.Generator().manual_seed(0))
    for d in drops:
        assert abs(d.float().mean().item() - 0.2) < 0.015
    both = (drops[0] & drops[1]).float().mean().item()
    assert abs(both - 0.04) < 0.01  # independent conditions


def test_compute_loss_builds_inputs_and_drops_conditions(tiny_model: OmniTalkerDiT) -> None:
    fm = FlowMatching(tiny_model, FlowMatchingConfig(audio_driven_prob=0.0))
    calls, handle = capture_inputs(tiny_model)
    b, n = 400, 12
    g = torch.Generator().manual_seed(0)
    mel, codes = torch.randn(b, n, 100, generator=g) + 3.0, torch.randn(b, n, 61, generator=g) + 3.0
    lengths = torch.randint(4, n + 1, (b,), generator=g)
    with torch.no_grad():
        fm.compute_loss(mel, codes, torch.randint(0, 64, (b, n), generator=g), lengths, generator=g)
    handle.remove()
    x_mel, _, cond_mel, cond_code, _, t, mask, drop_text, drop_audio, drop_visual = calls[0]
    assert torch.equal(mask, lengths_to_mask(lengths, n))
    assert ((t > 0) & (t < 1)).all()
    span = (cond_mel == 0).all(-1) & mask  # data is shifted by +3, so only the span is exactly zero
    kept = ~span & mask
    assert torch.equal(cond_mel[kept], mel[kept]) and torch.equal(cond_code[kept], codes[kept])
    assert (cond_code[span] == 0).all()
    frac = span.sum(1).float() / lengths.float()
    assert (frac >= 0.5).all()  # 70-100 % after rounding on <= 12 frames
    for drop in (drop_text, drop_audio, drop_visual):
        assert 0.13 < drop.float().mean().item() < 0.27
    # x_t lies on the straight path: at the data mean (+3) weighted by t
    assert torch.corrcoef(torch.stack([x_mel.mean((1, 2)), t]))[0, 1] > 0.9


def test_audio_driven_samples_keep_the_whole_mel_as_condition(tiny_model: OmniTalkerDiT) -> None:
    fm = FlowMatching(tiny_model, FlowMatchingConfig(audio_driven_prob=1.0))
    calls, handle = capture_inputs(tiny_model)
    b, n = 16, 12
    g = torch.Generator().manual_seed(1)
    mel, codes = torch.randn(b, n, 100, generator=g) + 3.0, torch.randn(b, n, 61, generator=g) + 3.0
    lengths = torch.randint(4, n + 1, (b,), generator=g)
    with torch.no_grad():
        _, parts = fm.compute_loss(mel, codes, torch.randint(0, 64, (b, n), generator=g), lengths, generator=g)
    handle.remove()
    _, _, cond_mel, cond_code, _, _, mask, *_ = calls[0]
    assert torch.equal(cond_mel[mask], mel[mask])  # nothing of the audio is masked
    span = (cond_code == 0).all(-1) & mask
    assert span.any() and (span.sum(1) >= 0.5 * lengths).all()  # the codes' span is still generated
    assert parts["mel"].item() == 0.0 and parts["blendshape"].item() > 0.0  # no mel to learn

    fm_mixed = FlowMatching(tiny_model, FlowMatchingConfig())  # default: 10 % of samples audio-driven
    calls, handle = capture_inputs(tiny_model)
    big = 2000
    with torch.no_grad():
        fm_mixed.compute_loss(torch.randn(big, 8, 100) + 3.0, torch.randn(big, 8, 61) + 3.0,
                              torch.zeros(big, 8, dtype=torch.long), generator=torch.Generator().manual_seed(2))
    handle.remove()
    _, _, cond_mel, cond_code, *_ = calls[0]
    driven = ~(cond_mel == 0).all(-1).any(1) & (cond_code == 0).all(-1).any(1)
    assert 0.07 < driven.float().mean().item() < 0.13


def test_masked_l1_ignores_reference_frames_and_padding(tiny_model: OmniTalkerDiT) -> None:
    fm = FlowMatching(tiny_model, FlowMatchingConfig(loss_weights=LossWeights(pose=2.0)))
    target_mel, target_code = torch.randn(2, 10, 100), torch.randn(2, 10, 61)
    loss_mask = torch.zeros(2, 10, dtype=torch.bool)
    loss_mask[0, 2:6] = True
    loss_mask[1, 0:3] = True  # frames 3.. of sample 1 are reference or padding
    pred_mel, pred_code = target_mel.clone(), target_code.clone()
    pred_mel[~loss_mask] += 100.0
    pred_code[~loss_mask] -= 100.0
    total, parts = fm.weigh_losses(pred_mel, pred_code, target_mel, target_code, loss_mask)
    assert total.item() == 0.0 and all(v.item() == 0.0 for v in parts.values())
    pred_code[loss_mask] += torch.tensor([0.0] * 51 + [1.0] * 6 + [0.0] * 4)
    pred_mel[loss_mask] += 0.5
    total, parts = fm.weigh_losses(pred_mel, pred_code, target_mel, target_code, loss_mask)
    assert parts["mel"].item() == pytest.approx(0.5)
    assert parts["pose"].item() == pytest.approx(1.0)
    assert parts["blendshape"].item() == 0.0 and parts["eye"].item() == 0.0
    assert total.item() == pytest.approx(0.5 + 2.0 * 1.0)


def test_compute_loss_ignores_padding_values(tiny_model: OmniTalkerDiT) -> None:
    fm = FlowMatching(tiny_model)
    g = torch.Generator().manual_seed(0)
    mel, codes = torch.randn(2, 30, 100, generator=g), torch.randn(2, 30, 61, generator=g)
    text = torch.randint(1, 64, (2, 30), generator=g)
    lengths = torch.tensor([30, 18])
    loss_a, _ = fm.compute_loss(mel, codes, text, lengths, generator=torch.Generator().manual_seed(5))
    mel2, codes2, text2 = mel.clone(), codes.clone(), text.clone()
    mel2[1, 18:] = 50.0
    codes2[1, 18:] = -50.0
    text2[1, 18:] = 7
    loss_b, _ = fm.compute_loss(mel2, codes2, text2, lengths, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(loss_a, loss_b)


def test_ot_path_endpoints_and_velocity(tiny_model: OmniTalkerDiT) -> None:
    x0, x1 = torch.randn(3, 5, 100), torch.randn(3, 5, 100)
    fm = FlowMatching(tiny_model)
    xt, vel = fm.interpolate(x0, x1, torch.tensor([0.0, 1.0, 0.25]))
    torch.testing.assert_close(xt[0], x0[0])
    torch.testing.assert_close(xt[1], x1[1])
    torch.testing.assert_close(xt[2], 0.75 * x0[2] + 0.25 * x1[2])
    torch.testing.assert_close(vel, x1 - x0)
    fm_sigma = FlowMatching(tiny_model, FlowMatchingConfig(sigma_min=0.1))
    xt, vel = fm_sigma.interpolate(x0, x1, torch.tensor([1.0, 1.0, 1.0]))
    torch.testing.assert_close(xt, 0.1 * x0 + x1)
    torch.testing.assert_close(vel, x1 - 0.9 * x0)


def test_tiny_model_overfits_one_batch() -> None:
    """Same batch, noise, t and span every step: the loss must drop by more than half."""
    torch.manual_seed(0)
    cfg = tiny_config()
    fm = FlowMatching(OmniTalkerDiT(cfg.dit), cfg.flow)
    g = torch.Generator().manual_seed(0)
    mel, codes = torch.randn(2, 48, 100, generator=g), 0.3 * torch.randn(2, 48, 61, generator=g)
    text, lengths = torch.randint(1, 64, (2, 48), generator=g), torch.tensor([48, 40])
    opt = torch.optim.AdamW(fm.parameters(), lr=3e-3)
    losses = []
    for _ in range(120):
        loss, _ = fm.compute_loss(mel, codes, text, lengths, generator=torch.Generator().manual_seed(1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert min(losses[-10:]) < 0.5 * losses[0], (losses[0], losses[-10:])  # speed: bench/train.py


def test_sampler_keeps_reference_and_returns_generated_part(tiny_model: OmniTalkerDiT) -> None:
    n_ref, n = 20, 52
    ref_mel, ref_codes = torch.randn(n_ref, 100), torch.randn(n_ref, 61)
    text = torch.randint(1, 64, (30,))
    out = sample(tiny_model, ref_mel, ref_codes, text, n, SamplerConfig(steps=16, audio_scale=0.5))
    assert out.mel.shape == (n - n_ref, 100) and out.codes.shape == (n - n_ref, 61)
    assert out.full_mel.shape == (n, 100) and out.full_codes.shape == (n, 61)
    assert torch.isfinite(out.full_mel).all() and torch.isfinite(out.full_codes).all()
    assert torch.equal(out.full_mel[:n_ref], ref_mel) and torch.equal(out.full_codes[:n_ref], ref_codes)
    assert torch.equal(out.full_mel[n_ref:], out.mel)
    assert out.mel.std() > 0
    with pytest.raises(ValueError, match="do not fit"):
        sample(tiny_model, ref_mel, ref_codes, torch.ones(60, dtype=torch.long), n)


def test_audio_driven_sampling_keeps_the_given_mel_and_generates_codes(tiny_model: OmniTalkerDiT) -> None:
    n_ref, n = 20, 52
    ref_mel, ref_codes = torch.randn(n_ref, 100), torch.randn(n_ref, 61)
    text = torch.randint(1, 64, (10,))
    drive_a, drive_b = torch.randn(n - n_ref, 100), torch.randn(n - n_ref, 100) * 2.0
    cfg = SamplerConfig(steps=16, seed=0)
    out_a = sample(tiny_model, ref_mel, ref_codes, text, n, cfg, driving_mel=drive_a)
    out_b = sample(tiny_model, ref_mel, ref_codes, text, n, cfg, driving_mel=drive_b)
    assert torch.equal(out_a.mel, drive_a) and torch.equal(out_a.full_mel[:n_ref], ref_mel)
    assert torch.equal(out_a.full_codes[:n_ref], ref_codes) and torch.isfinite(out_a.codes).all()
    assert not torch.allclose(out_a.codes, out_b.codes)  # the codes follow the audio
    with pytest.raises(ValueError, match="driving_mel"):
        sample(tiny_model, ref_mel, ref_codes, text, n, cfg, driving_mel=torch.randn(5, 100))


def test_zero_scales_follow_the_conditional_path(tiny_model: OmniTalkerDiT) -> None:
    """With all CFG scales 0 the sampler is a plain Euler integration of v(c)."""
    tiny_model.eval()
    n_ref, n, steps = 8, 24, 4
    ref_mel, ref_codes, text = torch.randn(n_ref, 100), torch.randn(n_ref, 61), torch.randint(1, 64, (10,))
    cfg = SamplerConfig(steps=steps, text_scale=0.0, audio_scale=0.0, visual_scale=0.0, seed=3)
    out = sample(tiny_model, ref_mel, ref_codes, text, n, cfg)
    g = torch.Generator().manual_seed(3)
    x_mel, x_code = torch.randn(1, n, 100, generator=g), torch.randn(1, n, 61, generator=g)
    cond_mel, cond_code = torch.zeros(1, n, 100), torch.zeros(1, n, 61)
    cond_mel[0, :n_ref], cond_code[0, :n_ref] = ref_mel, ref_codes
    ids = torch.zeros(1, n, dtype=torch.long)
    ids[0, :10] = text
    with torch.no_grad():
        for i in range(steps):
            v_mel, v_code = tiny_model(x_mel, x_code, cond_mel, cond_code, ids, torch.tensor([i / steps]))
            x_mel, x_code = x_mel + v_mel / steps, x_code + v_code / steps
    torch.testing.assert_close(out.mel, x_mel[0, n_ref:], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.codes, x_code[0, n_ref:], atol=1e-5, rtol=1e-4)


def test_guided_velocity_matches_leave_one_out_formula(tiny_model: OmniTalkerDiT) -> None:
    tiny_model.eval()
    g = torch.Generator().manual_seed(0)
    n = 16
    x_mel, x_code = torch.randn(1, n, 100, generator=g), torch.randn(1, n, 61, generator=g)
    c_mel, c_code = torch.randn(1, n, 100, generator=g), torch.randn(1, n, 61, generator=g)
    text, t = torch.randint(1, 64, (1, n), generator=g), torch.tensor(0.4)
    scales = (2.0, 0.5, 1.5)
    with torch.no_grad():
        got = compute_guided_velocity(tiny_model, x_mel, x_code, c_mel, c_code, text, t, scales)
        full = tiny_model(x_mel, x_code, c_mel, c_code, text, t.reshape(1))
        no_text = tiny_model(x_mel, x_code, c_mel, c_code, text, t.reshape(1), drop_text=torch.tensor([True]))
        no_audio = tiny_model(x_mel, x_code, torch.zeros_like(c_mel), c_code, text, t.reshape(1))
        no_visual = tiny_model(x_mel, x_code, c_mel, torch.zeros_like(c_code), text, t.reshape(1))
    for k in range(2):
        want = (full[k] + 2.0 * (full[k] - no_text[k]) + 0.5 * (full[k] - no_audio[k])
                + 1.5 * (full[k] - no_visual[k]))
        torch.testing.assert_close(got[k], want, atol=1e-5, rtol=1e-4)


def test_time_grid_uniform_and_sway() -> None:
    torch.testing.assert_close(build_time_grid(16), torch.linspace(0, 1, 17))
    sway = build_time_grid(16, -1.0)
    assert sway[0] == 0 and sway[-1] == pytest.approx(1.0)
    assert (sway[1:] > sway[:-1]).all()
    assert (sway[1:-1] < torch.linspace(0, 1, 17)[1:-1]).all()  # denser near t = 0 (noise)
