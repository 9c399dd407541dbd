"""Training benchmark: data-loader frames/s vs model consumption, tiny training frames/s, sampling RTF.

    python bench/train.py [--shards OUT/shards] [--steps 20] [--gen-s 10]

Rows (frames are mel/code frames at 93.75 Hz; padding is not counted):

* ``loader``: ``training.data.make_loader`` over the shards, no model (parquet read, decode,
  collate), ``data.num_workers`` = 0, one epoch per pass until ``--steps`` batches were read;
* ``train step``: the tiny config's flow-matching forward + backward + AdamW step on batches
  already in memory (what the model consumes), with torch threads = 1 and = all cores;
* ``train loop``: ``training.loop.train`` end to end (loader + steps + EMA + metrics +
  checkpoints) for ``--steps`` steps; frames/s from its metrics after the first 2 steps;
* ``sample``: ``model.dit.sampler.sample`` with 16 Euler steps (the config's CFG scales, random
  init: speed only) generating ``--gen-s`` seconds after a 3 s reference; real-time factor =
  generated seconds (audio and video cover the same span) / wall seconds (> 1 is faster than
  real time). The paper config runs only when CUDA is available (paper claim: real time at
  25 fps on an RTX 4090); otherwise its row says ``skipped: no GPU``.

Without ``--shards`` synthetic shards (``tests/training/shard_fixtures.py``, 2 x 16 clips of
80-600 frames) are written to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.dit.backbone import OmniTalkerDiT  # noqa: E402
from model.dit.config import ModelConfig, load_model_config  # noqa: E402
from model.dit.flow_matching import FlowMatching  # noqa: E402
from model.dit.sampler import sample  # noqa: E402
from model.normalizer import FeatureNormalizer  # noqa: E402
from model.vocab import Vocab  # noqa: E402
from shards.spec import FRAME_RATE_HZ  # noqa: E402
from training.config import TrainConfig, build_model_config, load_train_config  # noqa: E402
from training.data import build_index, make_loader  # noqa: E402
from training.loop import build_optimizer, compute_run_stats, train  # noqa: E402

TINY_TRAIN = REPO / "configs" / "train_tiny.yaml"
PAPER_MODEL = REPO / "configs" / "model_paper.yaml"
REF_S = 3.0  # seconds of reference before the generated span
SAMPLE_STEPS = 16  # Euler steps


def write_synthetic_shards(root: Path) -> Path:
    from tests.training.shard_fixtures import write_shard_set

    return write_shard_set(root / "shards", n_files=2, clips_per_file=16, min_frames=80, max_frames=600).shards_dir


def measure_loader(cfg: TrainConfig, shards: str, vocab: Vocab, n_batches: int) -> dict[str, float]:
    """Frames/s and batches/s of ``make_loader`` alone over at least ``n_batches`` batches."""
    index = build_index(shards, cfg.data)
    frames, batches, epoch = 0, 0, 0
    t0 = time.perf_counter()
    while batches < n_batches:
        for batch in make_loader(index, vocab, cfg.data, epoch=epoch):
            frames += int(batch["lengths"].sum())
            batches += 1
            if batches >= n_batches:
                break
        epoch += 1
    dt = time.perf_counter() - t0
    return {"frames_per_s": frames / dt, "batches_per_s": batches / dt, "batches": batches}


def collect_batches(cfg: TrainConfig, shards: str, vocab: Vocab, n_batches: int) -> list[dict]:
    index = build_index(shards, cfg.data)
    out: list[dict] = []
    epoch = 0
    while len(out) < n_batches:
        out.extend(make_loader(index, vocab, cfg.data, epoch=epoch))
        epoch += 1
    return out[:n_batches]


def measure_train_step(model_cfg: ModelConfig, batches: list[dict], stats: dict, cfg: TrainConfig,
                       threads: int, warmup: int = 2) -> dict[str, float]:
    """Frames/s of forward + backward + AdamW on in-memory batches with ``threads`` torch threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        model = OmniTalkerDiT(model_cfg.dit)
        flow = FlowMatching(model, model_cfg.flow).train()
        optimizer, _ = build_optimizer(model, cfg.optim)
        normalizer = FeatureNormalizer(stats)
        gen = torch.Generator().manual_seed(0)
        frames, t0 = 0, 0.0
        for i, batch in enumerate(batches):
            if i == warmup:
                t0 = time.perf_counter()
            mel, codes = normalizer.normalize(batch["mel"], batch["codes"])
            loss, _ = flow.compute_loss(mel, codes, batch["text"], batch["lengths"], generator=gen)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            if i >= warmup:
                frames += int(batch["lengths"].sum())
        dt = time.perf_counter() - t0
        return {"frames_per_s": frames / dt, "steps_per_s": (len(batches) - warmup) / dt}
    finally:
        torch.set_num_threads(before)


def measure_train_loop(cfg: TrainConfig, shards: str, steps: int, threads: int, skip: int = 2) -> dict[str, float]:
    """``training.loop.train`` for ``steps`` steps in a temp run dir; frames/s over the steps after the first ``skip``."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        cfg = replace(cfg, optim=replace(cfg.optim, max_steps=steps),
                      logging=replace(cfg.logging, progress=False, log_every_steps=1, ckpt_every_steps=steps))
        with tempfile.TemporaryDirectory(prefix="bench_train_run_") as run:
            t0 = time.perf_counter()
            result = train(cfg, shards, run)
            wall = time.perf_counter() - t0
        rows = result.metrics
        frames, seconds = 0.0, 0.0
        for prev, row in zip(rows[skip - 1:], rows[skip:], strict=False):  # one row per step
            dt = row["elapsed_s"] - prev["elapsed_s"]
            frames += row["frames_per_s"] * dt
            seconds += dt
        return {"frames_per_s": frames / seconds if seconds > 0 else float("nan"), "wall_s": wall,
                "first_loss": rows[0]["loss"], "last_loss": rows[-1]["loss"]}
    finally:
        torch.set_num_threads(before)


def measure_sampling(model_cfg: ModelConfig, device: str, gen_s: float, threads: int | None = None,
                     dtype: torch.dtype = torch.float32, repeats: int = 1) -> dict[str, float]:
    """Real-time factor of ``sample`` (16 Euler steps) for ``gen_s`` seconds after a ``REF_S`` s reference."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        model = OmniTalkerDiT(model_cfg.dit).to(device=device, dtype=dtype).eval()
        n_ref, n_gen = round(REF_S * FRAME_RATE_HZ), round(gen_s * FRAME_RATE_HZ)
        ref_mel = torch.randn(n_ref, model_cfg.dit.mel_dim)
        ref_codes = torch.randn(n_ref, model_cfg.dit.code_dim)
        n_tokens = min(n_ref + n_gen, round((REF_S + gen_s) * 12))  # ~12 characters per second of speech
        text = torch.randint(1, model_cfg.dit.vocab_size, (n_tokens,))
        sampler = replace(model_cfg.sampler, steps=SAMPLE_STEPS)
        sample(model, ref_mel, ref_codes, text, n_ref + n_gen, replace(sampler, steps=1))  # warm-up
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(repeats):
            sample(model, ref_mel, ref_codes, text, n_ref + n_gen, sampler)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        wall = (time.perf_counter() - t0) / repeats
        passes = 1 + sum(s != 0.0 for s in (sampler.text_scale, sampler.audio_scale, sampler.visual_scale))
        return {"rtf": (n_gen / FRAME_RATE_HZ) / wall, "wall_s": wall, "gen_s": n_gen / FRAME_RATE_HZ,
                "frames": n_ref + n_gen, "cfg_passes": passes}
    finally:
        torch.set_num_threads(before)


def print_row(name: str, setting: str, value: float, unit: str, note: str = "") -> None:
    print(f"{name:<22} {setting:<30} {value:>12.1f} {unit:<12} {note}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shards", default=None, help="curated shards folder (default: synthetic shards in a temp dir)")
    p.add_argument("--steps", type=int, default=20, help="batches / optimizer steps per measurement")
    p.add_argument("--config", default=str(TINY_TRAIN), help="training YAML of the tiny model")
    p.add_argument("--gen-s", type=float, default=10.0, help="seconds generated per sampling measurement")
    p.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = p.parse_args(argv)
    all_threads = os.cpu_count() or 1
    cfg = load_train_config(args.config, ["device=cpu"])
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        shards = args.shards or str(write_synthetic_shards(Path(tmp)))
        index = build_index(shards, cfg.data)
        vocab = Vocab.build(index.texts())
        stats = compute_run_stats(index, cfg.features)
        model_cfg = build_model_config(cfg, len(vocab))
        summary = index.summarize()
        print(f"shards: {shards} ({summary['n_clips']} clips, {summary['hours'] * 3600:.0f} s); "
              f"config {Path(args.config).name}, max_frames_per_batch {cfg.data.max_frames_per_batch}, "
              f"{args.steps} steps; cores {all_threads}; torch {torch.__version__}")
        print(f"{'what':<22} {'setting':<30} {'value':>12} {'unit':<12} note")
        res: dict[str, dict] = {}
        torch.set_num_threads(1)
        res["loader"] = measure_loader(cfg, shards, vocab, args.steps)
        print_row("data loader", "num_workers=0, no model", res["loader"]["frames_per_s"], "frames/s",
                  f"{res['loader']['batches_per_s']:.1f} batches/s")
        batches = collect_batches(cfg, shards, vocab, args.steps + 2)
        for threads in sorted({1, all_threads}):
            key = f"train_step_{threads}t"
            res[key] = measure_train_step(model_cfg, batches, stats, cfg, threads)
            ratio = res["loader"]["frames_per_s"] / res[key]["frames_per_s"]
            print_row("model consumption", f"tiny step, {threads} thread(s)", res[key]["frames_per_s"], "frames/s",
                      f"loader/model = {ratio:.1f}x")
        for threads in sorted({1, all_threads}):
            key = f"train_loop_{threads}t"
            res[key] = measure_train_loop(cfg, shards, args.steps + 2, threads)
            print_row("tiny training (CPU)", f"train() end to end, {threads} thr", res[key]["frames_per_s"],
                      "frames/s", f"loss {res[key]['first_loss']:.3f} -> {res[key]['last_loss']:.3f}")
        for threads in sorted({1, all_threads}):
            key = f"sample_tiny_{threads}t"
            res[key] = measure_sampling(model_cfg, "cpu", args.gen_s, threads)
            r = res[key]
            print_row("sampling RTF tiny", f"cpu, {SAMPLE_STEPS} steps, {threads} thr", r["rtf"], "x real time",
                      f"{r['gen_s']:.1f} s in {r['wall_s']:.2f} s, {r['cfg_passes']} CFG passes")
        if torch.cuda.is_available():
            paper = load_model_config(PAPER_MODEL, [f"dit.vocab_size={max(len(vocab), 2546)}"])
            for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
                key = f"sample_paper_{name}"
                res[key] = measure_sampling(paper, "cuda", 10.0, dtype=dtype, repeats=3)
                r = res[key]
                print_row("sampling RTF paper", f"{torch.cuda.get_device_name(0)[:18]} {name}", r["rtf"],
                          "x real time", f"10 s in {r['wall_s']:.3f} s, {r['cfg_passes']} CFG passes "
                          "(paper: real time at 25 fps on RTX 4090)")
        else:
            print(f"{'sampling RTF paper':<22} {'cuda, 16 steps, 10 s':<30} skipped: no GPU")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
