"""Command line of the renderer trainer: ``python -m launchers.train_renderer --shards OUT/shards --config CFG --out RUN_DIR``.

``omnitalker train-renderer`` calls :func:`main`. The loop is ``training/renderer_loop.py``; flags,
resume and exit codes are the DiT launcher's (``launchers/train.py``).
"""

from __future__ import annotations

import argparse
import sys

from launchers.train import build_trainer_parser, collect_overrides, dispatch, launch
from training.loop import TrainResult
from training.renderer_loop import load_renderer_config, run_ray_renderer_training, train_renderer


def build_parser(prog: str = "python -m launchers.train_renderer") -> argparse.ArgumentParser:
    return build_trainer_parser(prog, "Train the learned warp-GAN renderer on curated shards (schema v3, face_boxes)",
                                "configs/renderer_tiny.yaml", "checkpoints, metrics.jsonl, renderer_config.json",
                                "--set loss.vgg_weights_path=/models/vgg19.pth")


def run(args: argparse.Namespace) -> TrainResult:
    """Train the renderer in this process, or on Ray Train when ``--num-workers`` is given."""
    cfg = load_renderer_config(args.config, collect_overrides(args))
    return dispatch(args, cfg, train_renderer, run_ray_renderer_training)


def main(argv: list[str] | None = None, prog: str = "python -m launchers.train_renderer") -> int:
    """Parse ``argv``, train, print a one-line summary; returns the exit code (2 for user errors)."""
    return launch(build_parser(prog).parse_args(argv), run, prog)


if __name__ == "__main__":
    sys.exit(main())
