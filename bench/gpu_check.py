"""The GPU check (issue #15): what a session lent a device machine measures, in one run under 10 minutes.

    python bench/gpu_check.py [--out DIR] [--smoke]      (bench/gpu_check.sh wraps it for the device)

Rows, each with its goal where the issue sets one:

* ``dit train``: the paper DiT (configs/model_paper.yaml), flow-matching forward + backward +
  AdamW on synthetic batches in bf16 autocast: frames/s (93.75 Hz mel/code frames) and peak
  GPU memory;
* ``dit sample``: ``bench.train.measure_sampling``: 10 s after a 3 s reference, 16 Euler steps,
  fp32 and bf16: real-time factor (goal: 10 s in <= 0.5 s, i.e. >= 20x real time);
* ``renderer``: ``bench.learned_render.measure_learned_fps``, the paper warp-GAN at 512 px,
  batch 1 and 8, fp32 and bf16 (goal >= 100 fps);
* ``whisper`` and ``curation``: run only where their packages are importable (faster-whisper
  and CTranslate2; Ray, PyAV and MediaPipe). The device image has none of them and its working
  tree travels with at most 64 MiB, less than Ray's wheel, so these rows say ``skipped`` and why;
  ``python bench/curate.py --actors 1,4,8,16`` measures curation scaling on any many-core machine.

Only torch, PyYAML, safetensors and pyarrow are needed (all on the device image). ``--smoke``
runs the same code with the tiny configs and a few steps on whatever device is present, to check
the script itself on a CPU machine. Results go to stdout and ``DIR/gpu_check.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from bench.learned_render import measure_learned_fps  # noqa: E402
from bench.train import PAPER_MODEL, measure_sampling  # noqa: E402
from model.dit.backbone import OmniTalkerDiT  # noqa: E402
from model.dit.config import load_model_config  # noqa: E402
from model.dit.flow_matching import FlowMatching  # noqa: E402

TINY_MODEL = REPO / "configs" / "model_tiny.yaml"
RTF_GOAL = 20.0  # x real time: 10 s of audio and codes in 0.5 s
RENDER_GOAL_FPS = 100.0


def describe_device(device: str) -> dict:
    info = {"torch": torch.__version__, "python": platform.python_version(), "device": device}
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), sm_count=p.multi_processor_count)
    return info


def measure_dit_training(model_yaml: Path, device: str, batch: int, frames: int, steps: int,
                         warmup: int = 3) -> dict:
    """Frames/s and peak memory of paper-DiT training steps on synthetic batches (bf16 autocast on CUDA)."""
    torch.manual_seed(0)
    cfg = load_model_config(model_yaml)
    model = OmniTalkerDiT(cfg.dit).to(device)
    flow = FlowMatching(model, cfg.flow).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    mel = torch.randn(batch, frames, cfg.dit.mel_dim, device=device)
    codes = torch.randn(batch, frames, cfg.dit.code_dim, device=device)
    n_text = max(8, frames // 8)  # ~12 characters per second of speech, padded to the frames (F5-TTS style)
    text = torch.zeros(batch, frames, dtype=torch.long, device=device)
    text[:, :n_text] = torch.randint(1, cfg.dit.vocab_size, (batch, n_text), device=device)
    lengths = torch.full((batch,), frames, dtype=torch.long, device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda")
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            sync()
            t0 = time.perf_counter()
        with autocast:
            loss, _ = flow.compute_loss(mel, codes, text, lengths, generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync()
    dt = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())
    out = {"frames_per_s": batch * frames * steps / dt, "steps_per_s": steps / dt, "batch": batch,
           "frames": frames, "params_m": round(params / 1e6, 1), "loss": float(loss.detach())}
    if device == "cuda":
        out["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return out


def missing(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="folder for gpu_check.json")
    ap.add_argument("--smoke", action="store_true", help="tiny configs, few steps: check the script on a CPU")
    args = ap.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model_yaml = TINY_MODEL if args.smoke else PAPER_MODEL
    res: dict = {"when": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "smoke": args.smoke, **describe_device(device)}
    print(json.dumps({k: res[k] for k in res}, indent=None))
    if device != "cuda" and not args.smoke:
        print("no CUDA device: run with --smoke to check the script on a CPU")
        return 2

    print(f"\n{'row':<26} {'setting':<34} {'value':>12} {'unit':<14} note")
    batch, frames, steps = (2, 200, 2) if args.smoke else (8, 1000, 10)  # 8 clips of 10.7 s
    r = measure_dit_training(model_yaml, device, batch, frames, steps)
    res["dit_train"] = r
    print(f"{'dit train':<26} {f'{batch} x {frames} frames, bf16' if device == 'cuda' else 'cpu':<34} "
          f"{r['frames_per_s']:>12.0f} {'frames/s':<14} {r['params_m']} M params, peak "
          f"{r.get('peak_memory_gib', float('nan'))} GiB")
    cfg = load_model_config(model_yaml)
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        if device != "cuda" and dtype is torch.bfloat16:
            continue
        s = measure_sampling(cfg, device, 2.0 if args.smoke else 10.0, dtype=dtype, repeats=1 if args.smoke else 3)
        res[f"dit_sample_{name}"] = s
        verdict = "met" if s["rtf"] >= RTF_GOAL else "NOT met"
        setting = f"{name}, 16 steps, {s['gen_s']:.0f} s"
        print(f"{'dit sample':<26} {setting:<34} "
              f"{s['rtf']:>12.1f} {'x real time':<14} {s['wall_s']:.3f} s (goal >= {RTF_GOAL:.0f}x: {verdict})")
    config = "tiny" if args.smoke else "paper"
    for bf16 in ((False,) if device != "cuda" else (False, True)):
        for b in ((1,) if args.smoke else (1, 8)):
            fps = measure_learned_fps(config, b, device, 2 if args.smoke else 256, bf16=bf16)
            res[f"render_{config}_b{b}_{'bf16' if bf16 else 'fp32'}"] = fps
            verdict = "met" if fps >= RENDER_GOAL_FPS else "NOT met"
            print(f"{'renderer ' + config:<26} {f'batch {b}, ' + ('bf16' if bf16 else 'fp32'):<34} {fps:>12.1f} "
                  f"{'frames/s':<14} goal >= {RENDER_GOAL_FPS:.0f}: {verdict}")
    for row, mods, cmd in (("whisper", ("faster_whisper", "ctranslate2"), "bench/asr_wer.py"),
                           ("curation", ("ray", "av", "mediapipe"), "bench/curate.py --actors 1,4,8,16 --repeat 4")):
        gone = missing(*mods)
        res[row] = {"skipped": f"not installed here: {', '.join(gone)}"} if gone else {"skipped": f"run {cmd}"}
        note = (f"skipped: {', '.join(gone)} not installed (the device image lacks them; see docs/performance.md)"
                if gone else f"installed here: run {cmd}")
        print(f"{row:<26} {'':<34} {'':>12} {'':<14} {note}")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "gpu_check.json").write_text(json.dumps(res, indent=2, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
