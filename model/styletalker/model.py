"""StyleTalker's motion model on the project's 61-d codes (93.75 Hz): a lip stream and a motion VAE with a flow prior.

Tensor legend (all on the shards' mel grid, one row per frame at 93.75 Hz):

* ``B`` windows, ``T`` frames per window, ``R`` reference frames, ``D`` motion latent size (``latent_dim``);
* ``mel (B, T, 100)``: log-mel (``shards.spec``); ``codes (B, T, 61)``: visual codes (``shards.codes``);
* ``L = 27`` lip columns (``model.sync.model.LIP_INDEX``: mouth and jaw blendshapes), ``M = 34`` motion columns
  (everything else: brows, eyes, cheeks, nose, head pose, eye rotations) = :data:`MOTION_INDEX`;
* ``style (B, S)``: the reference summary, from the mean and std over ``R`` frames of the reference codes;
* ``a (B, T, A)``: per-frame audio features; ``m (B, T, D)``: motion latents.

Streams:

* lip stream ``mel -> lips (B, T, L)``: conv + bidirectional GRU + linear (lips always come from audio);
* motion VAE: posterior ``q(m_t | codes, audio)`` = bidirectional GRU over ``[motion codes, a]`` -> mean and
  log-variance per frame; decoder ``p(motion codes_t | m_t, style)`` = per-frame MLP; prior
  ``p(m_t | m_<t, audio, style)`` = a GRU over ``[m_{t-1}, a_t, style]`` whose state conditions an affine
  coupling flow (``model/styletalker/flow.py``) on a standard normal base;
* drive mode: the posterior mean on the driver ``(1, T, D)``, refined by Adam steps on the latents alone until their
  decoding explains the driver's motion (:meth:`StyleTalkerMotion.refine_latents`).

Loss (:func:`styletalker_loss`, per frame, in nats): ``elbo = recon + kl_weight * kl`` where ``recon`` is the
Gaussian NLL (fixed ``recon_sigma`` in normalized units, constant dropped) of all 61 normalized codes (lips from
the lip stream, motion from the decoder on a posterior sample) and ``kl = E_q[log q(m) - log p_prior(m)]``
(one sample, the flow's log-prob); ``loss = elbo + (pose_weight - 1) * recon_pose + sync_weight * sync`` with
``recon_pose`` the part of ``recon`` from the 6 head-pose columns (counted ``pose_weight`` times in what is
optimized, not in the reported ELBO) and ``sync`` the frozen lip-sync model's ``1 - cos`` distance
(``model/sync``) between the generated mouth codes and the mel.
Codes and mel are standardized inside the model with the training set's per-column mean and std (buffers).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from model.styletalker.flow import LOG_2PI, ConditionalFlow
from model.sync.model import LIP_INDEX, SyncModel, lip_features
from shards.codes import CODE_DIM, POSE_SLICE
from shards.spec import N_MELS

MOTION_INDEX: tuple[int, ...] = tuple(i for i in range(CODE_DIM) if i not in set(LIP_INDEX))
CODE_POSE_INDEX: tuple[int, ...] = tuple(range(POSE_SLICE.start, POSE_SLICE.stop))  # head pose among all 61 columns
# positions of the head-pose columns inside the motion columns (what motion_nll weights pose_weight times)
MOTION_POSE_INDEX: tuple[int, ...] = tuple(i for i, c in enumerate(MOTION_INDEX) if c in CODE_POSE_INDEX)
STD_FLOOR = 1e-3  # floor of the per-column std used to standardize codes and mel
# Prior temperature of audio-driven sampling (base noise scale). 1.0 jitters: on 8 held-out clips a 1500-step
# tiny model's head-speed gap was 144 deg/s at 1.0, 52 at 0.7, 33 at 0.5, 33 at 0.3, with pose FD 347, 274,
# 191, 191 and pose diversity across seeds 3.3, 2.2, 1.6, 1.0 deg (docs/styletalker.md).
DEFAULT_TEMPERATURE = 0.5
SUMMARY_DIM = 2 * CODE_DIM  # a reference summary: per-column mean then std of the reference codes
# Motion-controllable mode: Adam steps (and their learning rate, in standardized latent units) that refine the
# posterior mean on the driver into the latents whose decoding best explains the driver's motion (the decoder's
# likelihood, plus the learned prior's log-density weighted DRIVE_PRIOR_WEIGHT; 1 would be the MAP). 0 steps keep the
# amortized posterior mean. Two unseen drivers, two seeds, yaw r of the codes against the driver's (docs/styletalker.md,
# "Refining the driver's latents"): posterior mean 0.36-0.66 (face4) and 0.92-0.95 (KatieHill); 100 steps without
# the prior 0.93-0.95 and 0.99 in 0.2 s; with the prior at weight 1, 0.85 and 0.97 after 30 steps, at 0.1, 0.81-0.92
# and 0.98 (2.5-4 s: the prior's GRU runs on every step). A tiny model's prior is sharp (about +1 nat/frame over 16
# dims) and pulls an unseen face's latents towards the motion it predicts from the audio.
DRIVE_REFINE_STEPS = 100
DRIVE_REFINE_LR = 0.1
DRIVE_PRIOR_WEIGHT = 0.0
# Times the driver's 6 head-pose columns count in the refinement's likelihood, whatever the run trained with
# (``loss.pose_weight``): the goal of drive mode is the driver's head pose. On face4 (unseen, yaw std 2.5 deg), a
# model trained with pose weight 1 carried the rendered yaw at r 0.49 when refined under its own likelihood and at
# 0.84 with 8 (docs/styletalker.md, "Pose weight at drive time").
DRIVE_POSE_WEIGHT = 8.0


@dataclass
class StyleTalkerConfig:
    """Architecture (``configs/styletalker_*.yaml``, section ``model``)."""

    hidden: int = 256  # width of the conv stacks, GRUs and MLPs
    audio_dim: int = 128  # A: per-frame audio feature size of the motion stream
    style_dim: int = 64  # S: reference summary embedding size
    latent_dim: int = 16  # D: motion latent per frame
    flow_layers: int = 4  # affine coupling layers of the prior flow
    flow_hidden: int = 128  # MLP width inside each coupling layer
    flow_s_max: float = 2.0  # bound of each coupling's log-scale (nats)
    kernel: int = 5  # frames: conv kernel of the audio encoders (53 ms)
    n_mels: int = N_MELS  # audio input channels
    lip_dim: int = len(LIP_INDEX)  # L: mouth + jaw columns
    motion_dim: int = len(MOTION_INDEX)  # M: the other columns

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class StyleTalkerLossConfig:
    """Loss weights (``configs/styletalker_*.yaml``, section ``loss``)."""

    recon_sigma: float = 0.3  # std (normalized units) of the Gaussian likelihood of the codes
    kl_weight: float = 1.0  # weight of the KL term in the ELBO (beta)
    kl_warmup_steps: int = 0  # steps over which the KL weight ramps linearly from 0 (0: no ramp)
    sync_weight: float = 0.5  # weight of the lip-sync distance of the generated mouth
    sync_window_frames: int = 40  # frames per lip-sync window (the sync model's window_frames)
    pose_weight: float = 8.0  # times the 6 head-pose columns count in the optimized recon (1: as every other
    # column); the reported recon and ELBO stay unweighted (docs/styletalker.md: 8 carries unseen drivers' pose)


def conv_encoder(cin: int, hidden: int, cout: int, kernel: int) -> nn.Sequential:
    """``(B, cin, T) -> (B, cout, T)``: two same-length convs."""
    return nn.Sequential(nn.Conv1d(cin, hidden, kernel, padding=kernel // 2), nn.GELU(),
                         nn.Conv1d(hidden, cout, kernel, padding=kernel // 2), nn.GELU())


class LipStream(nn.Module):
    """``mel (B, T, 100)`` standardized -> ``lips (B, T, L)`` standardized."""

    def __init__(self, cfg: StyleTalkerConfig) -> None:
        super().__init__()
        self.conv = conv_encoder(cfg.n_mels, cfg.hidden, cfg.hidden, cfg.kernel)
        self.gru = nn.GRU(cfg.hidden, cfg.hidden // 2, batch_first=True, bidirectional=True)
        self.out = nn.Linear(cfg.hidden, cfg.lip_dim)

    def forward(self, mel: Tensor) -> Tensor:
        h = self.conv(mel.transpose(1, 2)).transpose(1, 2)
        return self.out(self.gru(h)[0])


class StyleTalkerMotion(nn.Module):
    """The lip stream and the motion VAE; :meth:`forward` gives the loss terms, :meth:`sample` generates."""

    def __init__(self, cfg: StyleTalkerConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or StyleTalkerConfig()
        self.register_buffer("code_mean", torch.zeros(CODE_DIM))
        self.register_buffer("code_std", torch.ones(CODE_DIM))
        self.register_buffer("mel_mean", torch.zeros(cfg.n_mels))
        self.register_buffer("mel_std", torch.ones(cfg.n_mels))
        self.register_buffer("lip_index", torch.tensor(LIP_INDEX, dtype=torch.long))
        self.register_buffer("motion_index", torch.tensor(MOTION_INDEX, dtype=torch.long))
        self.lip = LipStream(cfg)
        self.audio = conv_encoder(cfg.n_mels, cfg.hidden, cfg.audio_dim, cfg.kernel)
        self.style = nn.Sequential(nn.Linear(SUMMARY_DIM, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, cfg.style_dim))
        self.post_gru = nn.GRU(cfg.motion_dim + cfg.audio_dim, cfg.hidden // 2, batch_first=True, bidirectional=True)
        self.post_out = nn.Linear(cfg.hidden, 2 * cfg.latent_dim)
        self.decoder = nn.Sequential(nn.Linear(cfg.latent_dim + cfg.style_dim, cfg.hidden), nn.GELU(),
                                     nn.Linear(cfg.hidden, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, cfg.motion_dim))
        self.prior_gru = nn.GRU(cfg.latent_dim + cfg.audio_dim + cfg.style_dim, cfg.hidden, batch_first=True)
        self.flow = ConditionalFlow(cfg.latent_dim, cfg.hidden, cfg.flow_hidden, cfg.flow_layers, cfg.flow_s_max)
        # the likelihood the model was trained with (recon_sigma, pose_weight); drive mode's refinement uses its
        # recon_sigma, and its pose_weight only when asked to (pose_weight=None); load_styletalker sets the run's own
        self.loss_cfg = StyleTalkerLossConfig()

    # ------------------------------------------------------------------ normalization

    def set_stats(self, code_mean: Any, code_std: Any, mel_mean: Any, mel_std: Any) -> None:
        """The training set's per-column mean and std of codes ``(61,)`` and mel ``(100,)``."""
        for name, value in (("code_mean", code_mean), ("code_std", code_std), ("mel_mean", mel_mean),
                            ("mel_std", mel_std)):
            t = torch.as_tensor(np.asarray(value, np.float32))
            if name.endswith("std"):
                t = t.clamp(min=STD_FLOOR)
            getattr(self, name).copy_(t)

    def norm_codes(self, codes: Tensor) -> Tensor:
        return (codes - self.code_mean) / self.code_std

    def denorm_codes(self, codes: Tensor) -> Tensor:
        return codes * self.code_std + self.code_mean

    def norm_mel(self, mel: Tensor) -> Tensor:
        return (mel - self.mel_mean) / self.mel_std

    # ------------------------------------------------------------------ pieces

    def summarize(self, ref_codes: Tensor) -> Tensor:
        """``(B, R, 61)`` raw reference codes -> ``(B, 122)`` summary: per-column mean and std (raw units)."""
        return torch.cat([ref_codes.mean(dim=1), ref_codes.std(dim=1, unbiased=False)], dim=-1)

    def embed_style(self, summary: Tensor) -> Tensor:
        """``(B, 122)`` summary -> ``(B, S)``, on standardized statistics."""
        mean = (summary[:, :CODE_DIM] - self.code_mean) / self.code_std
        std = summary[:, CODE_DIM:] / self.code_std
        return self.style(torch.cat([mean, std], dim=-1))

    def audio_features(self, mel_n: Tensor) -> Tensor:
        """``(B, T, 100)`` standardized mel -> ``(B, T, A)``."""
        return self.audio(mel_n.transpose(1, 2)).transpose(1, 2)

    def posterior(self, codes_n: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
        """``(mean, logvar)`` each ``(B, T, D)`` of ``q(m_t | codes, audio)``."""
        h = self.post_gru(torch.cat([codes_n[..., self.motion_index], a], dim=-1))[0]
        mean, logvar = self.post_out(h).chunk(2, dim=-1)
        return mean, logvar.clamp(-10.0, 5.0)

    def decode(self, m: Tensor, style: Tensor) -> Tensor:
        """``(B, T, D)`` latents and ``(B, S)`` style -> ``(B, T, M)`` standardized motion codes."""
        return self.decoder(torch.cat([m, style[:, None].expand(-1, m.shape[1], -1)], dim=-1))

    def prior_inputs(self, m_prev: Tensor, a: Tensor, style: Tensor) -> Tensor:
        return torch.cat([m_prev, a, style[:, None].expand(-1, a.shape[1], -1)], dim=-1)

    def prior_log_prob(self, m: Tensor, a: Tensor, style: Tensor) -> Tensor:
        """``(B, T)`` ``log p(m_t | m_<t, audio, style)`` (teacher forcing on ``m``)."""
        m_prev = torch.cat([torch.zeros_like(m[:, :1]), m[:, :-1]], dim=1)
        h = self.prior_gru(self.prior_inputs(m_prev, a, style))[0]
        return self.flow.log_prob(m, h)

    def motion_nll(self, m: Tensor, style: Tensor, motion_n: Tensor, pose_weight: float | None = None) -> Tensor:
        """``(B, T)`` Gaussian NLL (nats, constant dropped) of standardized motion codes ``(B, T, M)`` given latents,
        with the run's ``recon_sigma`` (``loss_cfg``) and head pose counted ``pose_weight`` times (None: as the run
        trained, ``loss_cfg.pose_weight``)."""
        w = self.loss_cfg.pose_weight if pose_weight is None else pose_weight
        return gaussian_nll(self.decode(m, style) - motion_n, self.loss_cfg.recon_sigma, w, MOTION_POSE_INDEX)[1]

    def refine_latents(self, m0: Tensor, motion_n: Tensor, a: Tensor, style: Tensor, steps: int,
                       lr: float = DRIVE_REFINE_LR, prior_weight: float = DRIVE_PRIOR_WEIGHT,
                       pose_weight: float | None = DRIVE_POSE_WEIGHT) -> Tensor:
        """Latents ``(B, T, D)`` that explain observed motion ``(B, T, M)`` (standardized): ``steps`` Adam steps from
        ``m0`` (the posterior mean) on ``motion_nll(m, pose_weight) - prior_weight * log p_prior(m | audio, style)``
        per frame (``prior_weight`` 1 and ``pose_weight`` None, the run's own: the MAP). The amortized posterior of a
        small model trained on minutes of video reconstructs an unseen face's motion loosely; the decoder and prior
        stay fixed, only the latents move (semi-amortized inference). Weights get no gradient."""
        m = m0.detach().clone().requires_grad_(True)
        opt = torch.optim.Adam([m], lr=lr)
        with torch.enable_grad():
            for _ in range(int(steps)):
                loss = self.motion_nll(m, style, motion_n, pose_weight).mean()
                if prior_weight:
                    loss = loss - prior_weight * self.prior_log_prob(m, a, style).mean()
                (m.grad,) = torch.autograd.grad(loss, [m])
                opt.step()
        return m.detach()

    def assemble(self, lips_n: Tensor, motion_n: Tensor) -> Tensor:
        """Standardized lips ``(B, T, L)`` and motion ``(B, T, M)`` -> standardized codes ``(B, T, 61)``."""
        out = lips_n.new_zeros(*lips_n.shape[:-1], CODE_DIM)
        out[..., self.lip_index] = lips_n
        out[..., self.motion_index] = motion_n
        return out

    # ------------------------------------------------------------------ training

    def forward(self, mel: Tensor, codes: Tensor, ref_codes: Tensor, gen: torch.Generator | None = None
                ) -> dict[str, Tensor]:
        """Raw ``mel (B, T, 100)``, ``codes (B, T, 61)``, ``ref_codes (B, R, 61)`` -> the loss parts.

        Returns ``pred (B, T, 61)`` raw codes (lip stream + decoder on a posterior sample), ``recon (B, T)``
        Gaussian NLL, ``kl (B, T)`` one-sample ``log q - log p_prior`` (summed over ``D``).
        """
        mel_n, codes_n = self.norm_mel(mel), self.norm_codes(codes)
        style = self.embed_style(self.summarize(ref_codes))
        a = self.audio_features(mel_n)
        mean, logvar = self.posterior(codes_n, a)
        std = torch.exp(0.5 * logvar)
        eps = torch.randn(mean.shape, generator=gen, device=mean.device) if gen is not None else torch.randn_like(mean)
        m = mean + std * eps
        log_q = -0.5 * (eps.pow(2) + LOG_2PI + logvar).sum(dim=-1)
        log_p = self.prior_log_prob(m, a, style)
        pred_n = self.assemble(self.lip(mel_n), self.decode(m, style))
        return {"pred": self.denorm_codes(pred_n), "pred_n": pred_n, "target_n": codes_n, "kl": log_q - log_p,
                "post_logvar": logvar}

    # ------------------------------------------------------------------ sampling

    @torch.no_grad()
    def sample(self, mel: Any, ref: Any, n_frames: int | None = None, temperature: float = DEFAULT_TEMPERATURE,
               generator: torch.Generator | None = None, drive_codes: Any = None, drive_mel: Any = None,
               drive_style: str = "driver", refine_steps: int = DRIVE_REFINE_STEPS,
               drive_pose_weight: float | None = DRIVE_POSE_WEIGHT) -> Tensor:
        """Raw codes ``(N, 61)`` for ``mel (N', 100)`` (cut or edge-padded to ``n_frames``, default ``N'``).

        ``ref``: reference codes ``(R, 61)`` or a summary ``(122,)`` (:meth:`summarize`). Lips always come from
        ``mel``. Audio-driven: motion latents from the prior (base noise times ``temperature``; 0 = the flow's
        deterministic path), decoded with the reference's style. Motion-controllable (``drive_codes (N'', 61)``,
        with the driver's own ``drive_mel (N'', 100)`` when known; both cut or edge-padded to ``N``): the posterior
        mean on the driver refined ``refine_steps`` steps (:meth:`refine_latents`, head pose counted
        ``drive_pose_weight`` times; 0 steps: the mean alone), decoded with
        the driver's style (``drive_style="driver"``, what training does: a clip is only ever encoded and decoded
        with its own style) or, as an ablation, the reference's (``"reference"``; the latents
        are then fitted with the driver's style and decoded with the reference's).
        """
        if drive_style not in ("driver", "reference"):
            raise ValueError(f"drive_style must be 'driver' or 'reference', got {drive_style!r}")
        was_training = self.training
        self.eval()
        dev = self.code_mean.device
        mel_t = fit_length(torch.as_tensor(np.asarray(mel, np.float32), device=dev), n_frames)[None]
        n = mel_t.shape[1]
        ref_t = torch.as_tensor(np.asarray(ref, np.float32), device=dev)
        summary = ref_t[None] if ref_t.ndim == 1 else self.summarize(ref_t[None])
        style = self.embed_style(summary)
        mel_n = self.norm_mel(mel_t)
        a = self.audio_features(mel_n)
        if drive_codes is not None:
            drive_t = torch.as_tensor(np.asarray(drive_codes, np.float32), device=dev)
            drive_style_t = self.embed_style(self.summarize(drive_t[None]))
            if drive_style == "driver":
                style = drive_style_t
            a_drive = a
            if drive_mel is not None:
                a_drive = self.audio_features(self.norm_mel(
                    fit_length(torch.as_tensor(np.asarray(drive_mel, np.float32), device=dev), n)[None]))
            drive_n = self.norm_codes(fit_length(drive_t, n)[None])
            m, _ = self.posterior(drive_n, a_drive)
        threads = torch.get_num_threads()
        if dev.type == "cpu":  # hundreds of tiny sequential GRU steps: extra threads only add sync overhead
            torch.set_num_threads(1)
        try:
            if drive_codes is None:
                m = self.sample_prior(a, style, temperature, generator)
            elif refine_steps > 0:
                m = self.refine_latents(m, drive_n[..., self.motion_index], a_drive, drive_style_t, refine_steps,
                                        pose_weight=drive_pose_weight)
        finally:
            torch.set_num_threads(threads)
        out = self.denorm_codes(self.assemble(self.lip(mel_n), self.decode(m, style)))[0]
        self.train(was_training)
        return out

    def sample_prior(self, a: Tensor, style: Tensor, temperature: float, generator: torch.Generator | None) -> Tensor:
        """``(B, T, D)`` latents drawn frame by frame from the autoregressive flow prior."""
        b, t, _ = a.shape
        d = self.cfg.latent_dim
        noise = torch.randn((b, t, d), generator=generator, device="cpu").to(a.device) * float(temperature)
        m_prev = a.new_zeros(b, 1, d)
        h = None
        out = []
        for i in range(t):
            inp = self.prior_inputs(m_prev, a[:, i:i + 1], style)
            y, h = self.prior_gru(inp, h)
            m_prev = self.flow.inverse(noise[:, i:i + 1], y)
            out.append(m_prev)
        return torch.cat(out, dim=1)


def fit_length(x: Tensor, n: int | None) -> Tensor:
    """``(N', C)`` cut to ``n`` rows or padded with its last row (``n`` None: unchanged)."""
    if n is None or x.shape[0] == n:
        return x
    if x.shape[0] > n:
        return x[:n]
    return torch.cat([x, x[-1:].expand(n - x.shape[0], -1)], dim=0)


def sync_distance(sync: SyncModel, codes: Tensor, mel: Tensor, window: int) -> Tensor:
    """Mean ``1 - cos`` of the frozen lip-sync model over non-overlapping ``window``-frame windows of raw
    ``codes (B, T, 61)`` and ``mel (B, T, 100)`` (gradients flow to ``codes`` only)."""
    b, t, _ = codes.shape
    k = t // window
    if k == 0:
        return codes.new_zeros(())
    lips = lip_features(codes[:, :k * window]).reshape(b * k, window, -1)
    mels = mel[:, :k * window].reshape(b * k, window, -1)
    return sync.distance(mels, lips).mean()


def gaussian_nll(diff: Tensor, sigma: float, pose_weight: float, pose_index: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """``(nll, weighted)``, each ``(B, T)`` nats per frame (constant dropped), of residuals ``diff`` ``(B, T, C)`` in
    standardized units under ``N(0, sigma^2)``: ``weighted`` counts the columns ``pose_index`` (head pose)
    ``pose_weight`` times, ``nll`` counts every column once."""
    sq = 0.5 * diff.pow(2) / sigma ** 2
    nll = sq.sum(dim=-1)
    if pose_weight == 1.0:
        return nll, nll
    return nll, nll + (pose_weight - 1.0) * sq[..., list(pose_index)].sum(dim=-1)


def styletalker_loss(out: dict[str, Tensor], cfg: StyleTalkerLossConfig, mel: Tensor, sync: SyncModel | None,
                     step: int = 0) -> tuple[Tensor, dict[str, float]]:
    """``(loss, parts)`` from :meth:`StyleTalkerMotion.forward`'s output; parts are per-frame means in nats."""
    diff = out["pred_n"] - out["target_n"]
    sq_d = diff.detach().pow(2)
    nll, weighted = gaussian_nll(diff, cfg.recon_sigma, cfg.pose_weight, CODE_POSE_INDEX)
    recon = nll.mean()
    fit = weighted.mean()  # the reconstruction term the loss optimizes: head pose counted pose_weight times
    kl = out["kl"].mean()
    ramp = min(1.0, step / cfg.kl_warmup_steps) if cfg.kl_warmup_steps > 0 else 1.0
    elbo = recon + kl  # the negative ELBO per frame (what is reported; unweighted)
    loss = fit + cfg.kl_weight * ramp * kl
    sync_d = sync_distance(sync, out["pred"], mel, cfg.sync_window_frames) if sync is not None else recon.new_zeros(())
    loss = loss + cfg.sync_weight * sync_d
    lip_mse = float(sq_d[..., list(LIP_INDEX)].mean())
    motion_mse = float(sq_d[..., list(MOTION_INDEX)].mean())
    return loss, {"loss": float(loss.detach()), "elbo": float(elbo.detach()), "recon": float(recon.detach()),
                  "kl": float(kl.detach()), "sync": float(sync_d.detach()), "lip_mse": lip_mse,
                  "motion_mse": motion_mse}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
