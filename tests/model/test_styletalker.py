"""StyleTalker's motion model: shapes, the flow's exact inverse and log-determinant, the loss terms, sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.styletalker.flow import ConditionalFlow
from model.styletalker.model import (
    DRIVE_POSE_WEIGHT,
    MOTION_INDEX,
    StyleTalkerConfig,
    StyleTalkerLossConfig,
    StyleTalkerMotion,
    styletalker_loss,
)
from model.sync.io import load_sync_model
from model.sync.model import LIP_INDEX
from shards.codes import CODE_DIM, POSE_SLICE
from shards.spec import N_MELS

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny() -> StyleTalkerMotion:
    torch.manual_seed(0)
    return StyleTalkerMotion(StyleTalkerConfig(hidden=32, audio_dim=8, style_dim=8, latent_dim=6, flow_layers=3,
                                               flow_hidden=16))


def randomize_flow(flow: ConditionalFlow) -> None:
    """The couplings start as the identity (zeroed last layer): give them random weights to test something."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in flow.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g))


def test_layout_splits_the_code():
    assert sorted(LIP_INDEX + MOTION_INDEX) == list(range(CODE_DIM)) and len(MOTION_INDEX) == 34
    assert set(range(POSE_SLICE.start, POSE_SLICE.stop)) <= set(MOTION_INDEX)


def test_flow_inverse_and_exact_log_det():
    flow = ConditionalFlow(dim=4, cond_dim=3, hidden=8, layers=3)
    randomize_flow(flow)
    m, h = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    flow = flow.double()
    z, logdet = flow(m, h)
    torch.testing.assert_close(flow.inverse(z, h), m, atol=1e-10, rtol=1e-10)
    assert logdet.abs().max() > 0.1  # not the identity
    for i in range(5):
        jac = torch.autograd.functional.jacobian(lambda x, i=i: flow(x[None], h[i:i + 1])[0][0], m[i])
        torch.testing.assert_close(logdet[i], torch.linalg.slogdet(jac)[1], atol=1e-9, rtol=1e-9)
    # log_prob integrates the base density through the map: a 1-d check of the normalization is the
    # change of variables itself, so compare against the explicit formula.
    expected = -0.5 * (z.pow(2) + np.log(2 * np.pi)).sum(-1) + logdet
    torch.testing.assert_close(flow.log_prob(m, h), expected)


def test_forward_shapes_and_finite_loss():
    model = tiny()
    sync, _ = load_sync_model(None)
    sync.requires_grad_(False)
    g = torch.Generator().manual_seed(0)
    mel, codes, ref = torch.randn(3, 80, N_MELS), torch.rand(3, 80, CODE_DIM), torch.rand(3, 30, CODE_DIM)
    out = model(mel, codes, ref, g)
    assert out["pred"].shape == (3, 80, CODE_DIM) and out["kl"].shape == (3, 80)
    loss, parts = styletalker_loss(out, StyleTalkerLossConfig(), mel, sync)
    loss.backward()
    assert all(np.isfinite(v) for v in parts.values())
    assert parts["kl"] > -1.0  # a one-sample estimate of a KL: non-negative up to noise
    assert 0.0 < parts["sync"] < 2.0
    assert parts["elbo"] == pytest.approx(parts["recon"] + parts["kl"], rel=1e-5)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_pose_weight_counts_the_head_pose_columns_more_in_the_loss_only():
    """``loss.pose_weight``: the 6 pose columns' squared error counts w times in what is optimized; the reported
    recon and ELBO stay the unweighted likelihood, and the extra loss is exactly (w - 1) x the pose part."""
    model = tiny()
    g = torch.Generator().manual_seed(0)
    mel, codes, ref = torch.randn(2, 80, N_MELS), torch.rand(2, 80, CODE_DIM), torch.rand(2, 30, CODE_DIM)
    out = model(mel, codes, ref, g)
    plain_cfg = StyleTalkerLossConfig(sync_weight=0.0, pose_weight=1.0)
    heavy_cfg = StyleTalkerLossConfig(sync_weight=0.0, pose_weight=8.0)
    plain, p = styletalker_loss(out, plain_cfg, mel, None)
    heavy, h = styletalker_loss(out, heavy_cfg, mel, None)
    assert h["recon"] == pytest.approx(p["recon"]) and h["elbo"] == pytest.approx(p["elbo"])
    sq = (out["pred_n"] - out["target_n"]).pow(2)[..., POSE_SLICE]
    pose_part = float((0.5 * sq.detach() / plain_cfg.recon_sigma ** 2).sum(-1).mean())
    assert pose_part > 0.1 and float(heavy - plain) == pytest.approx(7.0 * pose_part, rel=1e-5)


def test_sampling_is_seeded_and_temperature_zero_is_the_flow_path():
    model = tiny()
    randomize_flow(model.flow)
    rng = np.random.default_rng(0)
    mel, ref = rng.standard_normal((50, N_MELS)).astype(np.float32), rng.random((20, CODE_DIM)).astype(np.float32)

    def run(seed, temp=1.0, **kw):
        return model.sample(mel, ref, n_frames=50, temperature=temp, generator=torch.Generator().manual_seed(seed), **kw)

    a, b, c = run(1), run(1), run(2)
    assert a.shape == (50, CODE_DIM)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert (a - c)[:, list(MOTION_INDEX)].abs().max() > 1e-3
    torch.testing.assert_close(a[:, list(LIP_INDEX)], c[:, list(LIP_INDEX)])  # lips: from the audio only
    t0a, t0b = run(1, 0.0), run(2, 0.0)
    torch.testing.assert_close(t0a, t0b, rtol=0, atol=0)
    # temperature 0 = m_t = f^{-1}(0; h_t) along the prior GRU, computed here by hand
    with torch.no_grad():
        mel_n = model.norm_mel(torch.from_numpy(mel)[None])
        a_feat = model.audio_features(mel_n)
        style = model.embed_style(model.summarize(torch.from_numpy(ref)[None]))
        m_prev, h, ms = torch.zeros(1, 1, 6), None, []
        for t in range(50):
            y, h = model.prior_gru(model.prior_inputs(m_prev, a_feat[:, t:t + 1], style), h)
            m_prev = model.flow.inverse(torch.zeros(1, 1, 6), y)
            ms.append(m_prev)
        motion = model.denorm_codes(model.assemble(model.lip(mel_n), model.decode(torch.cat(ms, 1), style)))[0]
    torch.testing.assert_close(t0a, motion, atol=1e-5, rtol=1e-5)
    # a summary instead of reference frames, and a different length
    summary = model.summarize(torch.from_numpy(ref)[None])[0].numpy()
    torch.testing.assert_close(model.sample(mel, summary, 50, 0.0), t0a)
    assert model.sample(mel, ref, 64, 0.5, torch.Generator().manual_seed(0)).shape == (64, CODE_DIM)
    drive = rng.random((40, CODE_DIM)).astype(np.float32)
    d1, d2 = run(1, drive_codes=drive), run(2, drive_codes=drive)
    torch.testing.assert_close(d1, d2, rtol=0, atol=0)  # drive mode: the posterior mean, no noise


@pytest.mark.parametrize("prior_weight", [0.0, 1.0])
def test_drive_refinement_explains_the_driver_and_leaves_the_weights_alone(prior_weight):
    """``refine_latents`` moves only the latents: from the posterior mean, its objective (the driver's motion NLL,
    minus ``prior_weight`` x the prior's log-density) falls towards the motion the decoder makes of known latents;
    ``sample(refine_steps=0)`` is the posterior mean alone, the default refines it."""
    model = tiny()
    randomize_flow(model.flow)
    rng = np.random.default_rng(3)
    mel, ref = rng.standard_normal((60, N_MELS)).astype(np.float32), rng.random((20, CODE_DIM)).astype(np.float32)
    drive = rng.random((60, CODE_DIM)).astype(np.float32)
    drive_n = model.norm_codes(torch.from_numpy(drive)[None])
    motion_n = drive_n[..., list(MOTION_INDEX)]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        a = model.audio_features(model.norm_mel(torch.from_numpy(mel)[None]))
        style = model.embed_style(model.summarize(torch.from_numpy(drive)[None]))
        m0, _ = model.posterior(drive_n, a)
        # a motion the decoder can make exactly (random decoders cannot fit random codes): its NLL minimum is 0
        m_true = torch.from_numpy(rng.standard_normal(m0.shape).astype(np.float32))
        motion_n = model.decode(m_true, style)

    def nll(m):
        with torch.no_grad():
            return float(model.motion_nll(m, style, motion_n).mean())

    def objective(m):
        with torch.no_grad():
            return nll(m) - prior_weight * float(model.prior_log_prob(m, a, style).mean())

    m = model.refine_latents(m0, motion_n, a, style, steps=60, prior_weight=prior_weight)
    assert m.shape == m0.shape and not m.requires_grad
    if prior_weight == 0:  # the decoder's own motion comes back
        assert nll(m) < 0.02 * nll(m0), (nll(m0), nll(m))
    else:  # the randomized prior dominates the objective (17 nats/frame at the mean): the sum falls, not the NLL
        assert 0 < objective(m) < 0.5 * objective(m0), (objective(m0), objective(m))
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    assert all(p.grad is None for p in model.parameters())
    # through sample(): 0 steps decodes the posterior mean; the default refines it and explains the driver better
    mean_only = model.sample(mel, ref, 60, drive_codes=drive, drive_mel=mel, refine_steps=0)
    refined = model.sample(mel, ref, 60, drive_codes=drive, drive_mel=mel)
    with torch.no_grad():
        expected = model.denorm_codes(model.assemble(model.lip(model.norm_mel(torch.from_numpy(mel)[None])),
                                                     model.decode(m0, style)))[0]
    torch.testing.assert_close(mean_only, expected, atol=1e-5, rtol=1e-5)
    motion = list(MOTION_INDEX)
    weight = torch.tensor([DRIVE_POSE_WEIGHT if POSE_SLICE.start <= c < POSE_SLICE.stop else 1.0
                           for c in motion])  # the refinement's weights (head pose counted DRIVE_POSE_WEIGHT times)
    err = {k: float(((v[:, motion] - torch.from_numpy(drive)[:, motion]) / model.code_std[motion]).pow(2).mul(weight)
                    .mean()) for k, v in (("mean", mean_only), ("refined", refined))}
    assert err["refined"] < 0.95 * err["mean"], err  # random codes: a random 6-latent decoder fits them little
    torch.testing.assert_close(refined[:, list(LIP_INDEX)], mean_only[:, list(LIP_INDEX)])  # lips: the audio's


def test_drive_refinement_weights_head_pose_whatever_the_run_trained_with():
    """A run trained with pose weight 1: ``motion_nll`` counts the 6 pose columns ``pose_weight`` times (None: the
    run's own), and drive mode's default refinement (``DRIVE_POSE_WEIGHT``) fits the driver's head pose closer than
    refining under the run's own likelihood does, at the price of the other motion columns."""
    model = tiny()
    model.loss_cfg = StyleTalkerLossConfig(pose_weight=1.0)
    rng = np.random.default_rng(5)
    mel, ref = rng.standard_normal((60, N_MELS)).astype(np.float32), rng.random((20, CODE_DIM)).astype(np.float32)
    drive = rng.random((60, CODE_DIM)).astype(np.float32)
    motion = list(MOTION_INDEX)
    pose = [i for i, c in enumerate(motion) if POSE_SLICE.start <= c < POSE_SLICE.stop]
    assert len(pose) == POSE_SLICE.stop - POSE_SLICE.start
    with torch.no_grad():
        style = model.embed_style(model.summarize(torch.from_numpy(drive)[None]))
        m = torch.from_numpy(rng.standard_normal((1, 60, model.cfg.latent_dim)).astype(np.float32))
        target = model.norm_codes(torch.from_numpy(drive)[None])[..., motion]
        sq = 0.5 * (model.decode(m, style) - target).pow(2) / model.loss_cfg.recon_sigma ** 2
        torch.testing.assert_close(model.motion_nll(m, style, target), sq.sum(-1))
        torch.testing.assert_close(model.motion_nll(m, style, target, pose_weight=5.0),
                                   sq.sum(-1) + 4.0 * sq[..., pose].sum(-1))

    def errors(codes):
        z = ((codes[:, motion] - torch.from_numpy(drive)[:, motion]) / model.code_std[motion]).pow(2)
        other = [i for i in range(len(motion)) if i not in pose]
        return float(z[:, pose].mean()), float(z[:, other].mean())

    drive_w = model.sample(mel, ref, 60, drive_codes=drive, drive_mel=mel)  # default: DRIVE_POSE_WEIGHT
    run_w = model.sample(mel, ref, 60, drive_codes=drive, drive_mel=mel, drive_pose_weight=None)
    (pose_d, other_d), (pose_r, other_r) = errors(drive_w), errors(run_w)
    assert DRIVE_POSE_WEIGHT > 1
    assert pose_d < 0.9 * pose_r, (pose_d, pose_r)
    assert other_d > other_r, (other_d, other_r)
