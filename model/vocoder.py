"""Vocoders: 100-bin log-mel (``stages/mel.py``, Vocos ``mel_24khz`` features) -> 24 kHz audio.

Two implementations behind one interface (:class:`Vocoder.decode`, ``(N, 100)`` log-mel at
93.75 Hz -> float32 mono audio at 24 kHz):

* :class:`VocosVocoder` -- the neural vocoder the features were designed for. Loaded from a
  local directory in Vocos' ``from_pretrained`` layout (``config.yaml`` + ``pytorch_model.bin``,
  e.g. a copy of ``charactr/vocos-mel-24khz``); needs the ``vocos`` package. Nothing is
  downloaded.
* :class:`GriffinLimVocoder` -- a fallback in plain torch, clearly logged: ``exp`` undoes the
  natural log, the mel magnitudes are mapped back to linear STFT magnitudes by non-negative
  least squares against the very filterbank of ``shards.spec`` (pseudo-inverse start, then
  multiplicative NNLS updates), then fast Griffin-Lim (Perraudin et al. 2013, momentum 0.99)
  with the same STFT (n_fft 1024, hop 256, periodic Hann, centred).

Output length: ``(N - 1) * 256`` samples for ``N`` frames, for both vocoders (Vocos' centred
ISTFT head gives the same). Re-analysing that audio with ``stages.mel.LogMel`` gives ``N``
frames again, since ``1 + ((N - 1) * 256) // 256 = N``.

Choice (:func:`load_vocoder`): ``kind="vocos"`` or a ``vocos_path`` asks for Vocos explicitly and
fails with a message naming what to install or set when it cannot load; ``kind="auto"`` without
a path falls back to Griffin-Lim with a warning; ``kind="griffin_lim"`` always uses the fallback.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from shards.spec import AUDIO_SR, HOP, N_FFT, N_MELS, WIN, build_mel_filterbank

log = logging.getLogger(__name__)

VOCOS_FILES = ("config.yaml", "pytorch_model.bin")  # Vocos.from_pretrained layout
VOCODER_KINDS = ("auto", "vocos", "griffin_lim")


class VocoderUnavailable(RuntimeError):
    """The requested vocoder cannot be loaded (package or weights missing)."""


@dataclass
class VocoderConfig:
    kind: str = "auto"  # auto | vocos | griffin_lim (auto: Vocos if vocos_path is set, else Griffin-Lim)
    vocos_path: str | None = None  # local dir with config.yaml + pytorch_model.bin (Vocos mel_24khz layout)
    griffin_lim_iters: int = 48  # Griffin-Lim phase iterations
    griffin_lim_momentum: float = 0.99  # fast Griffin-Lim momentum (0 = plain Griffin-Lim)
    nnls_iters: int = 64  # multiplicative NNLS updates of the mel -> linear magnitude inversion
    seed: int = 0  # seed of the initial random phase
    device: str = "cpu"  # torch device

    def __post_init__(self) -> None:
        if self.kind not in VOCODER_KINDS:
            raise ValueError(f"vocoder kind must be one of {VOCODER_KINDS}, got {self.kind!r}")


def num_output_samples(n_frames: int) -> int:
    """Samples at 24 kHz that a vocoder returns for ``n_frames`` mel frames: ``(N - 1) * 256``."""
    return max(0, n_frames - 1) * HOP


class Vocoder:
    """Interface: ``decode((N, 100) log-mel) -> (num_output_samples(N),) float32 audio at 24 kHz``."""

    name: str = "vocoder"
    sample_rate: int = AUDIO_SR

    def decode(self, mel: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class GriffinLimVocoder(Vocoder):
    """Log-mel inversion (NNLS against the ``shards.spec`` filterbank) plus fast Griffin-Lim."""

    def __init__(self, cfg: VocoderConfig | None = None) -> None:
        self.cfg = cfg or VocoderConfig(kind="griffin_lim")
        self.device = torch.device(self.cfg.device)
        fb = torch.from_numpy(build_mel_filterbank().astype(np.float64))  # (513, 100)
        self.fb = fb.to(self.device)
        self.fb_pinv = torch.linalg.pinv(fb).to(self.device)  # (100, 513)
        self.window = torch.hann_window(WIN, periodic=True, dtype=torch.float32, device=self.device)
        self.name = f"griffin_lim-{self.cfg.griffin_lim_iters}it"

    def mel_to_linear(self, mel: np.ndarray) -> torch.Tensor:
        """``(N, 100)`` log-mel -> ``(513, N)`` non-negative linear STFT magnitudes.

        Solves ``min_S ||fb^T S - exp(mel)^T||^2`` with ``S >= 0``: pseudo-inverse (clamped) start,
        then ``nnls_iters`` Lee-Seung multiplicative updates ``S <- S * (fb M) / (fb fb^T S)``.
        """
        m = torch.from_numpy(np.asarray(mel, dtype=np.float64)).to(self.device).exp().T  # (100, N)
        s = (self.fb_pinv.T @ m).clamp(min=1e-8)  # (513, N)
        num = self.fb @ m
        gram = self.fb @ self.fb.T  # (513, 513)
        for _ in range(self.cfg.nnls_iters):
            s = s * num / (gram @ s).clamp(min=1e-12)
        return s.float()

    def stft(self, audio: torch.Tensor) -> torch.Tensor:
        pad_mode = "reflect" if audio.shape[-1] > N_FFT // 2 else "constant"  # as stages.mel.LogMel
        return torch.stft(audio, N_FFT, HOP, WIN, self.window, center=True, pad_mode=pad_mode,
                          return_complex=True)

    def griffin_lim(self, magnitude: torch.Tensor) -> torch.Tensor:
        """``(513, N)`` magnitudes -> ``((N - 1) * 256,)`` audio; fast Griffin-Lim with momentum."""
        n = magnitude.shape[1]
        length = num_output_samples(n)
        gen = torch.Generator(device="cpu").manual_seed(self.cfg.seed)
        phase = torch.rand(magnitude.shape, generator=gen).to(self.device) * (2 * np.pi)
        angles = torch.polar(torch.ones_like(magnitude), phase)
        prev = torch.zeros_like(angles)
        alpha = self.cfg.griffin_lim_momentum / (1.0 + self.cfg.griffin_lim_momentum)
        for _ in range(self.cfg.griffin_lim_iters):
            audio = torch.istft(magnitude * angles, N_FFT, HOP, WIN, self.window, center=True, length=length)
            rebuilt = self.stft(audio)
            angles = rebuilt - alpha * prev
            angles = angles / (angles.abs() + 1e-16)
            prev = rebuilt
        return torch.istft(magnitude * angles, N_FFT, HOP, WIN, self.window, center=True, length=length)

    @torch.no_grad()
    def decode(self, mel: np.ndarray) -> np.ndarray:
        if mel.ndim != 2 or mel.shape[1] != N_MELS:
            raise ValueError(f"expected log-mel of shape (N, {N_MELS}), got {mel.shape}")
        if mel.shape[0] < 2:
            return np.zeros(num_output_samples(mel.shape[0]), np.float32)
        audio = self.griffin_lim(self.mel_to_linear(mel))
        return audio.cpu().numpy().astype(np.float32)


def check_vocos_dir(path: str | Path) -> Path:
    """The Vocos directory, or :class:`VocoderUnavailable` naming the missing file."""
    root = Path(path).expanduser()
    missing = [f for f in VOCOS_FILES if not (root / f).is_file()]
    if missing:
        raise VocoderUnavailable(
            f"vocoder.vocos_path={str(path)!r} lacks {', '.join(missing)}: point it at a local copy of "
            "charactr/vocos-mel-24khz (config.yaml + pytorch_model.bin), or use the Griffin-Lim fallback "
            "(--vocoder griffin_lim)")
    return root


class VocosVocoder(Vocoder):
    """Vocos (``vocos`` package) from a local ``from_pretrained``-layout directory."""

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        if importlib.util.find_spec("vocos") is None:
            raise VocoderUnavailable(
                "the Vocos vocoder needs the 'vocos' package, which is not installed: pip install vocos "
                "(and set vocoder.vocos_path to a local charactr/vocos-mel-24khz copy), or use the "
                "Griffin-Lim fallback (--vocoder griffin_lim)")
        root = check_vocos_dir(path)
        from vocos import Vocos

        model = Vocos.from_hparams(str(root / "config.yaml"))
        state = torch.load(root / "pytorch_model.bin", map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        self.name = f"vocos:{root.name}"

    @torch.no_grad()
    def decode(self, mel: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.asarray(mel, dtype=np.float32)).T[None].to(self.device)  # (1, 100, N)
        audio = self.model.decode(x)[0].cpu().numpy().astype(np.float32)
        n = num_output_samples(mel.shape[0])
        return audio[:n] if len(audio) >= n else np.pad(audio, (0, n - len(audio)))


def load_vocoder(cfg: VocoderConfig | None = None) -> Vocoder:
    """Vocos when asked for (``kind="vocos"`` or a ``vocos_path``), else the logged Griffin-Lim fallback."""
    cfg = cfg or VocoderConfig()
    if cfg.kind == "vocos" or (cfg.kind == "auto" and cfg.vocos_path):
        if not cfg.vocos_path:
            raise VocoderUnavailable(
                "vocoder 'vocos' needs vocoder.vocos_path (--vocos-path): a local directory with config.yaml "
                "and pytorch_model.bin (charactr/vocos-mel-24khz); nothing is downloaded")
        return VocosVocoder(cfg.vocos_path, cfg.device)
    if cfg.kind == "auto":
        log.warning("vocoder: no Vocos weights given (--vocos-path); using the Griffin-Lim fallback, "
                    "expect phasey audio")
    else:
        log.warning("vocoder: using the Griffin-Lim fallback (%d iterations)", cfg.griffin_lim_iters)
    return GriffinLimVocoder(cfg)
