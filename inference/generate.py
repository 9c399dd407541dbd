"""Generate speech (log-mel -> 24 kHz audio) and 61-d visual codes for a new text, from a reference.

Method (OmniTalker / F5-TTS infilling):

1. Reference (``inference/reference.py``): a shard ``clip_id`` or a short video -> ``mel (N_ref, 100)``,
   ``codes (N_ref, 61)``, ``text_model``, ``language``.
2. Target text: ``stages.text_norm.normalize_for_model(text, language)`` with the reference's
   language (or ``--language``). Text ids: ``vocab.encode(ref.text_model + " " + target_model)``.
3. Length rule (frames at 93.75 Hz)::

       N_gen = round(N_ref * T_target / T_ref)

   where ``T_*`` are token counts of ``vocab.encode`` (= characters for Latin text, pinyin
   syllables + punctuation for Chinese, so a syllable counts like one Han character). ``N_gen``
   is then clamped to ``[min_gen_s, max_gen_s] * 93.75`` (rounded), and finally raised if needed
   so that ``N_ref + N_gen`` holds every text token (the model needs ``T <= N``).
   ``--duration S`` replaces the rule by ``N_gen = round(S * 93.75)`` (same clamp and fit).
4. Normalize the reference with the checkpoint's feature stats (codes when the trainer's
   ``features.normalize_codes`` was on, mel when ``features.normalize_mel`` was), sample ``N_ref +
   N_gen`` frames with ``model.dit.sampler.sample`` (Euler, default 16 steps, multi-condition
   CFG scales from the flags, falling back to the checkpoint's sampler config), un-normalize.
   The reference frames come back bit-exact from the sampler (inpainting).
5. Write ``DIR/<name>.npz`` (``mel (N_gen, 100)``, ``codes (N_gen, 61)``, ``frame_rate`` "24000/256",
   ``text`` (the raw target), ``text_model``, ``n_ref``, ``reference``) and ``DIR/<name>.wav`` (24 kHz
   mono PCM16, ``(N_gen - 1) * 256`` samples, see ``model/vocoder.py``).

CLI: ``python -m inference.generate --ckpt RUN_DIR --ref REF [--shards OUT/shards] --text "..." --out DIR``.

``--model styletalker`` (``inference/styletalker_generate.py``): ``--ckpt`` is a ``train-styletalker`` run,
``--audio`` is required, the codes come from the StyleTalker motion model (``--seed``, ``--temperature``,
``--drive CLIP_ID|VIDEO``), and the same ``<name>.npz`` (``mel`` = the speech's log-mel, ``n_ref`` 0),
``<name>.wav`` (the given speech) and, with ``--render``, ``<name>.mp4`` are written.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import soundfile as sf
import torch

from inference.reference import Reference, ReferenceConfig, load_reference
from model.dit.backbone import OmniTalkerDiT
from model.dit.config import ModelConfig, SamplerConfig
from model.dit.sampler import sample
from model.normalizer import FeatureNormalizer
from model.styletalker.model import DEFAULT_TEMPERATURE, DRIVE_POSE_WEIGHT, DRIVE_REFINE_STEPS
from model.vocoder import VOCODER_KINDS, Vocoder, VocoderConfig, load_vocoder
from shards.spec import AUDIO_SR, FRAME_RATE_HZ, FRAME_RATE_TEXT
from stages.text_norm import contains_han, normalize_for_model

log = logging.getLogger(__name__)



class TextVocab(Protocol):
    def encode(self, text_model: str) -> list[int]: ...


@dataclass
class GenerateConfig:
    sampler: SamplerConfig = field(default_factory=SamplerConfig)  # steps, CFG scales, seed
    min_gen_s: float = 0.5  # seconds: shortest generated span
    max_gen_s: float = 30.0  # seconds: longest generated span
    duration_s: float | None = None  # seconds: fixed generated length instead of the text-length rule
    language: str | None = None  # ISO 639-1 of the target text; None = the reference's


@dataclass
class GenerationResult:
    mel: np.ndarray  # (N_gen, 100) log-mel, un-normalized
    codes: np.ndarray  # (N_gen, 61) visual codes, un-normalized
    full_mel: np.ndarray  # (N_ref + N_gen, 100): reference then generated
    full_codes: np.ndarray  # (N_ref + N_gen, 61)
    n_ref: int  # reference frames
    text: str  # raw target text
    text_model: str  # normalized target text
    text_ids: list[int]  # reference + target token ids fed to the model
    seconds: float = 0.0  # wall time of the sampling


# --------------------------------------------------------------------------- length rule


def compute_gen_frames(n_ref: int, ref_tokens: int, target_tokens: int, min_gen_s: float = 0.5,
                       max_gen_s: float = 30.0, total_tokens: int = 0, duration_s: float | None = None) -> int:
    """Frames to generate (93.75 Hz); the exact rule is in the module docstring (step 3)."""
    if duration_s is not None:
        n_gen = round(duration_s * FRAME_RATE_HZ)
    else:
        if ref_tokens <= 0:
            raise ValueError("the reference has no text tokens: cannot scale the target length")
        n_gen = round(n_ref * target_tokens / ref_tokens)
    n_gen = min(max(n_gen, round(min_gen_s * FRAME_RATE_HZ)), round(max_gen_s * FRAME_RATE_HZ))
    return max(n_gen, total_tokens - n_ref, 1)


# --------------------------------------------------------------------------- generation


def normalize_target_text(text: str, language: str | None) -> str:
    """The target text as model text (``stages.text_norm.normalize_for_model``)."""
    if language is None:
        language = "zh" if contains_han(text) else None
    out = normalize_for_model(text, language)
    if not out:
        raise ValueError("the target text is empty after normalization")
    return out


@torch.no_grad()
def generate(model: OmniTalkerDiT, vocab: TextVocab, scaler: FeatureNormalizer, ref: Reference, text: str,
             cfg: GenerateConfig | None = None, driving_mel: np.ndarray | None = None) -> GenerationResult:
    """Continue ``ref`` with ``text``: ``N_gen`` new mel + code frames (rule in the module docstring).

    Audio-driven mode: with ``driving_mel`` (N_gen, 100), the log-mel of a target audio, ``N_gen`` is
    its length, the mel is kept as given and only the codes are generated. ``text`` (its
    transcript) may then be empty: the text condition is the reference's alone.
    """
    cfg = cfg or GenerateConfig()
    n_ref = ref.n_frames
    if driving_mel is not None and not text.strip():
        target_model = ""
        ids = vocab.encode(ref.text_model)
    else:
        target_model = normalize_target_text(text, cfg.language or ref.language)
        ids = vocab.encode(f"{ref.text_model} {target_model}")
    if driving_mel is not None:
        n_gen = int(driving_mel.shape[0])
    else:
        n_gen = compute_gen_frames(n_ref, len(vocab.encode(ref.text_model)), len(vocab.encode(target_model)),
                                   cfg.min_gen_s, cfg.max_gen_s, total_tokens=len(ids), duration_s=cfg.duration_s)
    ref_mel, ref_codes = scaler.normalize(torch.from_numpy(ref.mel).float(), torch.from_numpy(ref.codes).float())
    drive = None
    if driving_mel is not None:
        drive, _ = scaler.normalize(torch.from_numpy(np.asarray(driving_mel, np.float32)), torch.zeros(n_gen, 61))
    t0 = time.perf_counter()
    out = sample(model, ref_mel, ref_codes, torch.tensor(ids, dtype=torch.long), n_ref + n_gen, cfg.sampler, drive)
    seconds = time.perf_counter() - t0
    full_mel, full_codes = (x.float().cpu().numpy() for x in scaler.denormalize(out.full_mel.float().cpu(),
                                                                                 out.full_codes.float().cpu()))
    full_mel[:n_ref] = ref.mel  # exact reference frames (no float round trip through the scaler)
    if driving_mel is not None:
        full_mel[n_ref:] = driving_mel
    full_codes[:n_ref] = ref.codes
    return GenerationResult(mel=full_mel[n_ref:], codes=full_codes[n_ref:], full_mel=full_mel, full_codes=full_codes,
                            n_ref=n_ref, text=text, text_model=target_model, text_ids=ids, seconds=seconds)


def sanitize_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "generated"


def write_outputs(result: GenerationResult, out_dir: str | Path, name: str, vocoder: Vocoder | None,
                  reference: str = "") -> dict[str, Any]:
    """``<name>.npz`` always, ``<name>.wav`` when a vocoder is given; returns the paths and sizes."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    npz = out / f"{name}.npz"
    np.savez(npz, mel=result.mel, codes=result.codes, frame_rate=np.array(FRAME_RATE_TEXT), text=np.array(result.text),
             text_model=np.array(result.text_model), n_ref=np.array(result.n_ref), reference=np.array(reference))
    info: dict[str, Any] = {"npz": str(npz), "n_gen": int(result.mel.shape[0]), "n_ref": result.n_ref}
    if vocoder is not None:
        audio = vocoder.decode(result.mel)
        wav = out / f"{name}.wav"
        sf.write(wav, np.clip(audio, -1.0, 1.0), AUDIO_SR, subtype="PCM_16")
        info.update(wav=str(wav), n_samples=int(len(audio)), vocoder=vocoder.name)
    return info


def load_driving_audio(path: str) -> tuple[np.ndarray, np.ndarray]:
    """A speech file as the curation stores it (24 kHz mono, loudness-normalized, 16-bit) and its log-mel.

    Returns ``(audio (n,) float32, mel (1 + n // 256, 100) float32)``.
    """
    from shards.spec import quantize_pcm16
    from stages.audio import AudioConfig, decode_mono, standardize
    from stages.mel import LogMel

    samples, rate, _ = decode_mono(path)
    audio_24k, _, _, _ = standardize(samples, rate, AudioConfig())
    audio = quantize_pcm16(audio_24k)
    return audio, np.asarray(LogMel()(audio), np.float32)


def load_checkpoint_for_generation(ckpt: str, device: str = "cpu"
                                   ) -> tuple[OmniTalkerDiT, ModelConfig, TextVocab, FeatureNormalizer]:
    """EMA model, config, vocabulary and the trainer's feature normalizer of a run or checkpoint folder."""
    from model.checkpoint import load_for_inference

    model, model_cfg, vocab, stats = load_for_inference(ckpt, device)
    return model, model_cfg, vocab, FeatureNormalizer(stats)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="omnitalker generate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=("dit", "styletalker"), default="dit",
                    help="dit: OmniTalker (text or --audio); styletalker: the StyleTalker motion model "
                         "(--audio required, codes only)")
    ap.add_argument("--ckpt", required=True, help="run folder (newest checkpoint) or a checkpoint folder")
    ap.add_argument("--ref", required=True, help="a clip_id in --shards, or a short video file")
    ap.add_argument("--shards", default=None, help="curated OUT/shards folder (for a clip_id reference)")
    ap.add_argument("--text", default="", help="the text to speak (with --audio: its transcript, optional)")
    ap.add_argument("--audio", default=None, help="audio-driven mode (StyleTalker): generate only the visual "
                    "codes for this speech file; the wav written is this audio")
    ap.add_argument("--out", required=True, help="output folder for <name>.npz and <name>.wav")
    ap.add_argument("--name", default=None, help="output file stem (default: <reference name>_gen)")
    ap.add_argument("--steps", type=int, default=16, help="Euler steps")
    ap.add_argument("--text-scale", type=float, default=None, help="CFG scale of the text (default: checkpoint's)")
    ap.add_argument("--audio-scale", type=float, default=None, help="CFG scale of the reference mel")
    ap.add_argument("--visual-scale", type=float, default=None, help="CFG scale of the reference codes")
    ap.add_argument("--sway", type=float, default=None, help="sway sampling coefficient (e.g. -1); default uniform")
    ap.add_argument("--seed", type=int, default=0, help="noise seed")
    ap.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE, help="styletalker: scale of the prior's base noise "
                    "(0 = the flow's deterministic path; 1 jitters, docs/styletalker.md)")
    ap.add_argument("--drive", default=None, help="styletalker: a clip_id in --shards or a video whose head, eye "
                    "and brow motion drives the output (posterior mean on the driver's codes and audio, refined, "
                    "decoded with the driver's style); lips still follow --audio, --ref gives the picture")
    ap.add_argument("--drive-refine-steps", type=int, default=DRIVE_REFINE_STEPS, help="styletalker --drive: Adam "
                    "steps that refine the driver's latents until their decoding explains its motion (0 = the "
                    "posterior mean alone; docs/styletalker.md)")
    ap.add_argument("--drive-pose-weight", type=float, default=DRIVE_POSE_WEIGHT, help="styletalker --drive: times "
                    "the driver's 6 head-pose columns count in the refinement's likelihood, whatever the run trained "
                    "with (1: like every other motion column)")
    ap.add_argument("--duration", type=float, default=None, help="seconds to generate (default: text-length rule)")
    ap.add_argument("--language", default=None, help="ISO 639-1 of --text (default: the reference's)")
    ap.add_argument("--max-ref-s", type=float, default=ReferenceConfig.max_ref_s, help="seconds: video reference cap")
    ap.add_argument("--curate-config", default=None, help="curate YAML for building a video reference")
    ap.add_argument("--vocoder", choices=VOCODER_KINDS, default="auto", help="auto: Vocos if --vocos-path, else Griffin-Lim")
    ap.add_argument("--vocos-path", default=None, help="local Vocos dir (config.yaml + pytorch_model.bin)")
    ap.add_argument("--device", default="cpu", help="torch device")
    ap.add_argument("--render", action="store_true", help="also write <name>.mp4: the reference face driven by "
                    "the generated codes, with the generated speech (model/renderer)")
    ap.add_argument("--renderer", choices=("baseline", "learned"), default="baseline",
                    help="baseline: mesh warp, no weights; learned: the warp-GAN (needs --render-ckpt)")
    ap.add_argument("--render-ckpt", default=None, help="learned renderer run folder or checkpoint")
    ap.add_argument("--render-fps", type=float, default=25.0, help="frames per second of the mp4")
    ap.add_argument("--render-size", type=int, choices=(256, 512), default=256, help="mp4 side in pixels")
    return ap


def main(argv: list[str] | None = None) -> int:
    """``omnitalker generate``: print a JSON summary of what was written."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.model == "styletalker":
        return main_styletalker(args)
    if args.drive is not None:
        raise SystemExit("omnitalker generate: --drive needs --model styletalker")
    model, model_cfg, vocab, scaler = load_checkpoint_for_generation(args.ckpt, args.device)
    scales = {k: v for k, v in (("text_scale", args.text_scale), ("audio_scale", args.audio_scale),
                                ("visual_scale", args.visual_scale)) if v is not None}
    sampler = replace(model_cfg.sampler, steps=args.steps, seed=args.seed, **scales)
    if args.sway is not None:
        sampler = replace(sampler, sway_coef=args.sway)
    vocoder = load_vocoder(VocoderConfig(kind=args.vocoder, vocos_path=args.vocos_path, device=args.device))
    t0 = time.perf_counter()
    ref = load_reference(args.ref, args.shards, ReferenceConfig(max_ref_s=args.max_ref_s,
                                                                curate_config=args.curate_config,
                                                                language=args.language))
    ref_s = time.perf_counter() - t0
    cfg = GenerateConfig(sampler=sampler, duration_s=args.duration, language=args.language)
    if not args.audio and not args.text.strip():
        raise SystemExit("omnitalker generate: --text is required (or --audio for the audio-driven mode)")
    driving_audio = driving_mel = None
    if args.audio:
        driving_audio, driving_mel = load_driving_audio(args.audio)
    result = generate(model, vocab, scaler, ref, args.text, cfg, driving_mel)
    name = sanitize_name(args.name or f"{ref.name}_gen")
    info = write_outputs(result, args.out, name, None if driving_audio is not None else vocoder, reference=ref.name)
    if driving_audio is not None:  # the given speech is the output audio
        wav = Path(args.out) / f"{name}.wav"
        sf.write(wav, driving_audio, AUDIO_SR, subtype="PCM_16")
        info.update(wav=str(wav), n_samples=int(len(driving_audio)), mode="audio-driven")
    if args.render:
        info["render"] = render_output(args, result.codes, info.get("wav"), name)
    info.update(reference=ref.summary(), text_model=result.text_model, sampler=sampler.__dict__,
                seconds={"reference": round(ref_s, 3), "sample": round(result.seconds, 3)})
    print(json.dumps(info, indent=2, ensure_ascii=False))
    return 0


def render_output(args: argparse.Namespace, codes: np.ndarray, wav: str | None, name: str) -> dict[str, Any]:
    """``--render``: the codes ``(N, 61)`` at 93.75 Hz on ``--ref`` as ``OUT/<name>.mp4`` with ``wav`` muxed in."""
    from inference.render import render_codes_to_mp4

    is_clip = not Path(args.ref).exists()
    return render_codes_to_mp4(args.ref, codes, FRAME_RATE_TEXT, wav, Path(args.out) / f"{name}.mp4",
                               fps=args.render_fps, size=args.render_size, renderer=args.renderer,
                               ckpt=args.render_ckpt, shards_dir=args.shards if is_clip else None)


def main_styletalker(args: argparse.Namespace) -> int:
    """``--model styletalker``: codes for ``--audio`` from the StyleTalker motion model; same outputs as the DiT path."""
    from inference.styletalker_generate import generate_styletalker_codes, load_model

    if not args.audio:
        raise SystemExit("omnitalker generate: --model styletalker needs --audio (it is audio-driven)")
    try:
        model, model_id = load_model(args.ckpt, args.device)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"omnitalker generate --model styletalker: --ckpt {args.ckpt}: {e}") from e
    t0 = time.perf_counter()
    ref_cfg = ReferenceConfig(max_ref_s=args.max_ref_s, curate_config=args.curate_config, language=args.language)
    ref = load_reference(args.ref, args.shards, ref_cfg)
    drive = load_reference(args.drive, args.shards, ref_cfg) if args.drive else None
    ref_s = time.perf_counter() - t0
    driving_audio, driving_mel = load_driving_audio(args.audio)
    out = generate_styletalker_codes(model, driving_mel, ref.codes, args.seed, args.temperature,
                                     drive.codes if drive is not None else None, model_id,
                                     drive.mel if drive is not None else None, args.drive_refine_steps,
                                     args.drive_pose_weight)
    result = GenerationResult(mel=driving_mel, codes=out.codes, full_mel=driving_mel, full_codes=out.codes, n_ref=0,
                              text=args.text, text_model="", text_ids=[], seconds=out.seconds)
    name = sanitize_name(args.name or f"{ref.name}_gen")
    info = write_outputs(result, args.out, name, None, reference=ref.name)
    wav = Path(args.out) / f"{name}.wav"
    sf.write(wav, driving_audio, AUDIO_SR, subtype="PCM_16")
    info.update(wav=str(wav), n_samples=int(len(driving_audio)), mode="audio-driven", model="styletalker",
                styletalker={"ckpt": model_id, "motion": out.mode, "seed": args.seed, "temperature": args.temperature,
                             "drive": drive.summary() if drive is not None else None,
                             "drive_refine_steps": args.drive_refine_steps if drive is not None else None,
                             "drive_pose_weight": args.drive_pose_weight if drive is not None else None})
    if args.render:
        info["render"] = render_output(args, result.codes, info.get("wav"), name)
    info.update(reference=ref.summary(), seconds={"reference": round(ref_s, 3), "sample": round(out.seconds, 3)})
    print(json.dumps(info, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
