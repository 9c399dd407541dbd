"""Command line of the trainer: ``python -m launchers.train --shards OUT/shards --config CFG --out RUN_DIR``.

Without ``--num-workers`` the run is one process in this interpreter (CPU, or one GPU with
``--gpu`` / ``device: cuda``). With ``--num-workers N`` it runs N Ray Train workers
(``training/ray_train.py``; DDP, one GPU each with ``--gpu``), also under
``ray job submit -- python -m launchers.train ...``. Running the same command again resumes
from the newest checkpoint in RUN_DIR; when that checkpoint is already at ``--max-steps`` the
command says so and does nothing. :func:`main` is what ``omnitalker train`` calls.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shards.schema import SchemaVersionError
from training.config import TrainConfig, load_train_config
from training.loop import TrainResult, train

EXIT_USAGE = 2  # bad flags, config, shards or schema


def build_trainer_parser(prog: str, description: str, config_example: str, out_holds: str,
                         set_example: str) -> argparse.ArgumentParser:
    """The flags every trainer takes: --shards --config --out --max-steps --num-workers --gpu --set."""
    p = argparse.ArgumentParser(prog=prog, description=f"{description} (resumes from RUN_DIR's newest checkpoint).")
    p.add_argument("--shards", required=True, help="folder of part-*.parquet shards (or a curation OUT folder)")
    p.add_argument("--config", required=True, help=f"training YAML, e.g. {config_example}")
    p.add_argument("--out", required=True, help=f"RUN_DIR: {out_holds}")
    p.add_argument("--max-steps", type=int, default=None,
                   help="total optimizer steps of the run (overrides optim.max_steps)")
    p.add_argument("--num-workers", type=int, default=None,
                   help="run on Ray Train with this many training workers (DDP); omit for one local process. "
                        "DataLoader workers are data.num_workers (--set data.num_workers=N)")
    p.add_argument("--gpu", action="store_true",
                   help="one GPU per Ray worker with --num-workers; without it, train this process on cuda")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a config field, e.g. {set_example} (value parsed as YAML; repeatable)")
    return p


def build_parser(prog: str = "python -m launchers.train") -> argparse.ArgumentParser:
    return build_trainer_parser(prog, "Train the OmniTalker DiT on curated shards", "configs/train_tiny.yaml",
                                "checkpoints, metrics.jsonl, vocab.txt, stats.json",
                                "--set optim.lr=1e-4 --set data.max_frames_per_batch=8000")


def collect_overrides(args: argparse.Namespace) -> list[str]:
    """``--set`` overrides plus those implied by ``--max-steps`` and ``--gpu`` (without Ray)."""
    overrides = list(args.overrides)
    if args.max_steps is not None:
        overrides.append(f"optim.max_steps={args.max_steps}")
    if args.gpu and args.num_workers is None:
        overrides.append("device=cuda")
    return overrides


def load_config(args: argparse.Namespace) -> TrainConfig:
    return load_train_config(args.config, collect_overrides(args))


def run(args: argparse.Namespace) -> TrainResult:
    """Train in this process, or on Ray Train when ``--num-workers`` is given."""
    from training.ray_train import run_ray_training

    return dispatch(args, load_config(args), train, run_ray_training)


def dispatch(args: argparse.Namespace, cfg: Any, local_fn: Callable[..., TrainResult],
             ray_fn: Callable[..., TrainResult]) -> TrainResult:
    """``local_fn(cfg, shards, out)``, or ``ray_fn(cfg, shards, out, num_workers, use_gpu)`` with ``--num-workers``."""
    shards, out = str(Path(args.shards).resolve()), str(Path(args.out).resolve())
    if args.num_workers is not None:
        if args.num_workers < 1:
            raise ValueError("--num-workers must be >= 1")
        return ray_fn(cfg, shards, out, args.num_workers, args.gpu)
    return local_fn(cfg, shards, out)


def main(argv: list[str] | None = None, prog: str = "python -m launchers.train") -> int:
    """Parse ``argv``, train, print a one-line summary; returns the exit code (2 for user errors)."""
    return launch(build_parser(prog).parse_args(argv), run, prog)


def launch(args: argparse.Namespace, run_fn: Callable[[argparse.Namespace], TrainResult], prog: str) -> int:
    """Run ``run_fn(args)`` with logging set up; print its summary. Returns 0, or 2 for user errors."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        result = run_fn(args)
    except (SchemaVersionError, FileNotFoundError, ValueError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(result.message)
    if result.status == "trained" and result.last_loss is not None:
        print(f"step {result.step}: loss {result.last_loss:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
