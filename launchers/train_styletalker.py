"""Command line of the StyleTalker motion trainer:
``python -m launchers.train_styletalker --shards OUT/shards --config CFG --out RUN_DIR``.

``omnitalker train-styletalker`` calls :func:`main`. The loop is ``training/styletalker_loop.py``; flags,
resume and exit codes are the other trainers' (``launchers/train.py``). Generate with
``omnitalker generate --model styletalker --ckpt RUN_DIR --audio WAV --ref REF``.
"""

from __future__ import annotations

import argparse
import sys

from launchers.train import build_trainer_parser, collect_overrides, dispatch, launch
from training.loop import TrainResult
from training.styletalker_loop import load_styletalker_config, run_ray_styletalker_training, train_styletalker


def build_parser(prog: str = "python -m launchers.train_styletalker") -> argparse.ArgumentParser:
    return build_trainer_parser(prog, "Train the StyleTalker motion model (lip stream + motion VAE with a flow "
                                "prior) on curated shards", "configs/styletalker_tiny.yaml",
                                "checkpoints (EMA in ema.safetensors), metrics.jsonl",
                                "--set loss.sync_weight=0.5 --set optim.max_steps=2000")


def run(args: argparse.Namespace) -> TrainResult:
    """Train in this process, or on Ray Train when ``--num-workers`` is given."""
    cfg = load_styletalker_config(args.config, collect_overrides(args))
    return dispatch(args, cfg, train_styletalker, run_ray_styletalker_training)


def main(argv: list[str] | None = None, prog: str = "python -m launchers.train_styletalker") -> int:
    """Parse ``argv``, train, print a one-line summary; returns the exit code (2 for user errors)."""
    return launch(build_parser(prog).parse_args(argv), run, prog)


if __name__ == "__main__":
    sys.exit(main())
