"""Command line of the lip-sync trainer: ``python -m launchers.train_sync --shards OUT/shards --config CFG --out RUN_DIR``.

``omnitalker train-sync`` calls :func:`main`. The loop is ``training/sync_loop.py``; flags, resume
and exit codes are the other trainers' (``launchers/train.py``). The run's best model (by held-out
AUC) is ``RUN_DIR/sync.safetensors``; point ``sync.model_path`` at it to curate with it.
"""

from __future__ import annotations

import argparse
import sys

from launchers.train import build_trainer_parser, collect_overrides, dispatch, launch
from training.loop import TrainResult
from training.sync_loop import load_sync_config, run_ray_sync_training, train_sync


def build_parser(prog: str = "python -m launchers.train_sync") -> argparse.ArgumentParser:
    return build_trainer_parser(prog, "Train the lip-sync model on curated shards", "configs/sync.yaml",
                                "checkpoints, metrics.jsonl, sync.safetensors (the best model)",
                                "--set data.holdout=[a.mp4,b.mp4] --set optim.max_steps=1000")


def run(args: argparse.Namespace) -> TrainResult:
    """Train the lip-sync model in this process, or on Ray Train when ``--num-workers`` is given."""
    cfg = load_sync_config(args.config, collect_overrides(args))
    return dispatch(args, cfg, train_sync, run_ray_sync_training)


def main(argv: list[str] | None = None, prog: str = "python -m launchers.train_sync") -> int:
    """Parse ``argv``, train, print a one-line summary; returns the exit code (2 for user errors)."""
    return launch(build_parser(prog).parse_args(argv), run, prog)


if __name__ == "__main__":
    sys.exit(main())
