"""Parameter count of the OmniTalker DiT (built on the meta device) and the tiny model's CPU step time.

Prints one table of parameters per component for a model config (default: the paper config,
``configs/model_paper.yaml``), built on ``torch.device("meta")`` so no weight memory is
allocated, then (unless ``--no-step``) the mean wall time in milliseconds of one training step
(forward + backward + AdamW) of the tiny config on CPU.

Usage: ``python bench/param_count.py [--config configs/model_paper.yaml] [--set dit.fusion=add]
[--no-step] [--batch 4] [--frames 188] [--threads 1]`` (188 frames = 2.0 s at 93.75 Hz).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from model.dit import FlowMatching, OmniTalkerDiT, build_on_meta, count_parameters  # noqa: E402
from model.dit.config import ModelConfig, load_model_config, tiny_config  # noqa: E402


def count_by_component(model: OmniTalkerDiT) -> dict[str, int]:
    """Parameters per top-level child module, plus ``total``."""
    counts = {name: count_parameters(child) for name, child in model.named_children()}
    counts["total"] = count_parameters(model)
    return counts


def measure_step_ms(cfg: ModelConfig, batch: int, frames: int, steps: int = 20) -> float:
    """Mean wall milliseconds of one training step (after 3 warm-up steps) on random data."""
    torch.manual_seed(0)
    model = OmniTalkerDiT(cfg.dit)
    fm = FlowMatching(model, cfg.flow)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    mel = torch.randn(batch, frames, cfg.dit.mel_dim)
    codes = torch.randn(batch, frames, cfg.dit.code_dim)
    text = torch.randint(0, cfg.dit.vocab_size, (batch, frames))
    elapsed = 0.0
    for i in range(steps + 3):
        start = time.perf_counter()
        loss, _ = fm.compute_loss(mel, codes, text)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 3:
            elapsed += time.perf_counter() - start
    return 1000.0 * elapsed / steps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(REPO / "configs" / "model_paper.yaml"))
    ap.add_argument("--set", action="append", default=[], help="override, e.g. dit.fusion=add")
    ap.add_argument("--no-step", action="store_true", help="skip the tiny-model step timing")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--frames", type=int, default=188, help="frames per sample (93.75 Hz)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads for the timing")
    args = ap.parse_args(argv)

    cfg = load_model_config(args.config, args.set)
    model = build_on_meta(cfg.dit)
    assert all(p.is_meta for p in model.parameters())
    print(f"config {args.config} (fusion={cfg.dit.fusion}), built on meta")
    for name, n in count_by_component(model).items():
        print(f"  {name:<16} {n:>14,d}  ({n / 1e6:8.2f} M)")
    if not args.no_step:
        torch.set_num_threads(args.threads)
        ms = measure_step_ms(tiny_config(), args.batch, args.frames)
        print(f"tiny train step (B={args.batch}, N={args.frames}, {args.threads} thread(s)): {ms:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
