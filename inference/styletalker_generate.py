"""Audio-driven generation with the StyleTalker motion model: speech + a reference -> 61-d codes at 93.75 Hz.

``omnitalker generate --model styletalker --ckpt RUN_DIR --audio WAV --ref CLIP_ID|VIDEO [--drive CLIP_ID|VIDEO]
[--seed N] [--temperature T] [--render]`` (the flags live in ``inference/generate.py``, which writes the same
``<name>.npz`` / ``<name>.wav`` / ``<name>.mp4`` as the DiT's audio-driven mode):

* the speech is decoded as the curation stores it and its log-mel ``(N, 100)`` sets ``N`` (one code per mel frame);
* the reference's codes ``(R, 61)`` give the style summary (per-column mean and std);
* mouth and jaw columns come from the lip stream on the mel; the other 34 columns come from the motion decoder
  on latents drawn from the flow prior (base noise times ``--temperature``, seeded by ``--seed``), or with
  ``--drive`` from the posterior mean on the driving reference's codes (motion-controllable mode).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from model.styletalker.io import load_styletalker
from model.styletalker.model import StyleTalkerMotion


@dataclass
class StyleTalkerOutput:
    codes: np.ndarray  # (N, 61) float32 visual codes, one per mel frame
    model_id: str  # "<run>/<checkpoint>"
    mode: str  # "prior" | "drive"
    seconds: float  # wall time of the sampling


def generate_styletalker_codes(model: StyleTalkerMotion, mel: np.ndarray, ref_codes: np.ndarray, seed: int = 0,
                               temperature: float = 1.0, drive_codes: np.ndarray | None = None,
                               model_id: str = "") -> StyleTalkerOutput:
    """``(N, 61)`` codes for ``mel (N, 100)``; deterministic for a given seed."""
    gen = torch.Generator().manual_seed(int(seed))
    t0 = time.perf_counter()
    codes = model.sample(mel, ref_codes, n_frames=int(mel.shape[0]), temperature=temperature, generator=gen,
                         drive_codes=drive_codes)
    return StyleTalkerOutput(codes.float().cpu().numpy().astype(np.float32), model_id,
                             "drive" if drive_codes is not None else "prior", time.perf_counter() - t0)


def load_model(ckpt: str, device: str = "cpu") -> tuple[StyleTalkerMotion, str]:
    """The EMA model of a ``train-styletalker`` run folder or checkpoint folder and its id."""
    return load_styletalker(ckpt, device)
