"""Generation with the StyleTalker motion model: speech + a reference (+ a driver) -> 61-d codes at 93.75 Hz.

``omnitalker generate --model styletalker --ckpt RUN_DIR --audio WAV --ref CLIP_ID|VIDEO [--drive CLIP_ID|VIDEO]
[--seed N] [--temperature T] [--render]`` (the flags live in ``inference/generate.py``, which writes the same
``<name>.npz`` / ``<name>.wav`` / ``<name>.mp4`` as the DiT's audio-driven mode):

* the speech is decoded as the curation stores it and its log-mel ``(N, 100)`` sets ``N`` (one code per mel frame);
* mouth and jaw columns (``model.sync.model.LIP_INDEX``) always come from the lip stream on that mel;
* **audio-driven** (no ``--drive``): the other 34 columns come from the motion decoder on latents drawn from the
  flow prior (base noise times ``--temperature``, seeded by ``--seed``), decoded with the reference's style (the
  per-column mean and std of its codes ``(R, 61)``);
* **motion-controllable** (``--drive``): the motion latents start as the posterior mean ``q(m | driver codes, driver
  audio)`` on the driver's own codes and log-mel (cut or edge-padded to ``N`` frames: a driver shorter than the
  speech holds its last pose) and are refined ``--drive-refine-steps`` Adam steps (default 100, 0 = the mean alone)
  until their decoding explains the driver's motion (``StyleTalkerMotion.refine_latents``: the driver's motion
  projected onto what the decoder can produce, as GAN inversion does for images), its head pose counted
  ``--drive-pose-weight`` times (default 8, whatever the run trained with); they are decoded with the
  **driver's** style. Training only ever encodes and
  decodes one clip with that clip's own style; decoding a driver's latents with another identity's style is outside
  that and loses the driver's motion (docs/styletalker.md: pose r 0.98 with the driver's style, -0.3..0.85 with the
  reference's, on the same model). The reference then gives only the picture (the renderer retargets rotation
  relative to the first frame, translation and scale relative to the face size). The result does not depend on
  ``--seed`` or ``--temperature``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from model.styletalker.io import load_styletalker
from model.styletalker.model import (
    DEFAULT_TEMPERATURE,
    DRIVE_POSE_WEIGHT,
    DRIVE_REFINE_STEPS,
    StyleTalkerMotion,
)


@dataclass
class StyleTalkerOutput:
    codes: np.ndarray  # (N, 61) float32 visual codes, one per mel frame (93.75 Hz)
    model_id: str  # "<run>/<checkpoint>"
    mode: str  # "prior" | "drive"
    seconds: float  # wall time of the sampling


def generate_styletalker_codes(model: StyleTalkerMotion, mel: np.ndarray, ref_codes: np.ndarray, seed: int = 0,
                               temperature: float = DEFAULT_TEMPERATURE, drive_codes: np.ndarray | None = None,
                               model_id: str = "", drive_mel: np.ndarray | None = None,
                               refine_steps: int = DRIVE_REFINE_STEPS,
                               drive_pose_weight: float = DRIVE_POSE_WEIGHT) -> StyleTalkerOutput:
    """``(N, 61)`` codes for ``mel (N, 100)``: from the prior, or with ``drive_codes (N', 61)`` (and the driver's
    ``drive_mel (N', 100)``) from the driver, its latents refined ``refine_steps`` steps with head pose counted
    ``drive_pose_weight`` times (module docstring);
    deterministic for a given seed."""
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        codes = model.sample(mel, ref_codes, n_frames=int(mel.shape[0]), temperature=temperature, generator=gen,
                             drive_codes=drive_codes, drive_mel=drive_mel, refine_steps=refine_steps,
                             drive_pose_weight=drive_pose_weight)
    return StyleTalkerOutput(codes.float().cpu().numpy().astype(np.float32), model_id,
                             "drive" if drive_codes is not None else "prior", time.perf_counter() - t0)


def load_model(ckpt: str, device: str = "cpu") -> tuple[StyleTalkerMotion, str]:
    """The EMA model of a ``train-styletalker`` run folder or checkpoint folder and its id."""
    return load_styletalker(ckpt, device)
