"""The systems of the table: what each one produces for an :class:`~evaluation.tasks.EvalItem`.

Every system returns a :class:`SystemOutput` on the target span: the log-mel and codes the lip-sync model
scores together (``(N, 100)`` and ``(N, 61)`` at 93.75 Hz), the 24 kHz audio when the system makes the
speech (``None`` when the speech is the clip's own, so WER and SIM-A would only repeat ground truth), and
the wall seconds of the model alone and of the whole generation (RTF = seconds / output seconds).

* ``ground_truth``: the clip's real mel, codes and audio.
* ``reconstruction``: the real mel through the vocoder (the speech ceiling of any mel generator), the real
  codes; the mel scored is the vocoded audio's own.
* ``still_reference``: the reference's first code frame held for the whole span, with the real speech.
* ``audio_swapped``: the real codes against another test clip's speech (a control: sync must drop).
* ``dit_text``: OmniTalker text-driven (``inference.generate.generate``): reference + target text ->
  mel and codes; the audio is the vocoded mel.
* ``dit_audio``: the DiT's audio-driven mode (``driving_mel`` = the real target mel): codes only.
* ``styletalker``: ``inference.styletalker_generate.generate_styletalker_codes`` on the real mel with
  the reference's codes as style.

Stochastic systems also return the codes of every seed (``seed_codes``) for the pose-diversity metric.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from evaluation.tasks import EvalItem
from inference.generate import GenerateConfig, generate
from inference.styletalker_generate import generate_styletalker_codes
from model.styletalker.model import DEFAULT_TEMPERATURE

GENERATED_SYSTEMS = ("dit_text", "dit_audio", "styletalker")


@dataclass
class SystemOutput:
    system: str
    mel: np.ndarray  # (N, 100) log-mel the codes go with
    codes: np.ndarray  # (N, 61)
    audio: np.ndarray | None  # (n,) 24 kHz speech made by the system; None: the clip's own speech
    model_s: float = math.nan  # seconds in the model (sampling) for seed 0
    total_s: float = math.nan  # seconds for the whole output (model + vocoder)
    seed_codes: list[np.ndarray] = field(default_factory=list)  # codes of every seed (stochastic systems)


@dataclass
class DitBundle:
    """A loaded DiT checkpoint (``inference.generate.load_checkpoint_for_generation``)."""

    model: Any
    model_cfg: Any
    vocab: Any
    scaler: Any
    model_id: str
    steps: int = 16  # Euler steps


def fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """``x`` cut or tiled (repeated from its start) to ``n`` rows."""
    reps = int(math.ceil(n / max(len(x), 1)))
    return np.concatenate([x] * reps)[:n] if reps > 1 else x[:n]


def ground_truth(item: EvalItem) -> SystemOutput:
    return SystemOutput("ground_truth", item.target_mel, item.target_codes, item.target_audio)


def reconstruction(item: EvalItem, vocoder: Any, log_mel: Any) -> SystemOutput:
    """The real mel through ``vocoder``; ``log_mel`` (``stages.mel.LogMel``) re-measures the vocoded audio."""
    t0 = time.perf_counter()
    audio = vocoder.decode(item.target_mel)
    seconds = time.perf_counter() - t0
    mel = fit_length(np.asarray(log_mel(audio), np.float32), len(item.target_mel))
    return SystemOutput("reconstruction", mel, item.target_codes, audio, seconds, seconds)


def still_reference(item: EvalItem) -> SystemOutput:
    codes = np.repeat(item.ref.codes[:1], len(item.target_mel), axis=0)
    return SystemOutput("still_reference", item.target_mel, codes, None)


def audio_swapped(item: EvalItem, other: EvalItem) -> SystemOutput:
    return SystemOutput("audio_swapped", fit_length(other.target_mel, len(item.target_mel)), item.target_codes, None)


def dit_text(item: EvalItem, dit: DitBundle, vocoder: Any, seeds: list[int]) -> SystemOutput:
    """Text-driven OmniTalker: the reference continued with the target text; seed ``seeds[0]`` is scored."""
    outs = []
    for seed in seeds:
        cfg = GenerateConfig(sampler=replace(dit.model_cfg.sampler, steps=dit.steps, seed=seed))
        outs.append(generate(dit.model, dit.vocab, dit.scaler, item.ref, item.target_text, cfg))
    first = outs[0]
    t0 = time.perf_counter()
    audio = vocoder.decode(first.mel)
    voc_s = time.perf_counter() - t0
    return SystemOutput("dit_text", first.mel, first.codes, audio, first.seconds, first.seconds + voc_s,
                        [o.codes for o in outs])


def dit_audio(item: EvalItem, dit: DitBundle, seeds: list[int]) -> SystemOutput:
    """Audio-driven DiT: the real target mel is given, only the codes are sampled."""
    outs = []
    for seed in seeds:
        cfg = GenerateConfig(sampler=replace(dit.model_cfg.sampler, steps=dit.steps, seed=seed))
        outs.append(generate(dit.model, dit.vocab, dit.scaler, item.ref, item.target_text, cfg,
                             driving_mel=item.target_mel))
    first = outs[0]
    return SystemOutput("dit_audio", item.target_mel, first.codes, None, first.seconds, first.seconds,
                        [o.codes for o in outs])


def styletalker(item: EvalItem, model: Any, model_id: str, seeds: list[int], temperature: float = DEFAULT_TEMPERATURE
                ) -> SystemOutput:
    """StyleTalker: codes for the real target mel, styled by the reference's codes."""
    outs = [generate_styletalker_codes(model, item.target_mel, item.ref.codes, seed, temperature, None, model_id)
            for seed in seeds]
    first = outs[0]
    return SystemOutput("styletalker", item.target_mel, first.codes, None, first.seconds, first.seconds,
                        [o.codes for o in outs])
