"""``omnitalker eval``: evaluate trained models on held-out clips and write a table (docs/evaluation.md).

    omnitalker eval --ckpt RUN [--model dit|styletalker] [--styletalker-ckpt RUN2] --shards OUT/shards
                    [--split test|all] --out EVAL_DIR [--render]

``--split test`` (default) evaluates the clips the ``--ckpt`` run held out (its ``split.json``);
``--split all`` evaluates every clip of the shards (for shards the model never saw). Writes
``EVAL_DIR/results.json``, ``per_clip.parquet``, ``table.md`` and, with ``--render``, ``strips/*.png``.
Exit status 2 for usage errors (no split, no test clip, a missing run).
"""

from __future__ import annotations

import argparse
import logging
import sys

from evaluation.harness import EvalConfig, run_eval

EXIT_USAGE = 2


def build_parser(prog: str = "python -m evaluation.cli") -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", default=None, help="run folder of the model (newest checkpoint), or a checkpoint "
                    "folder; omitted: only the ground-truth, reconstruction and baseline rows (needs --split all)")
    ap.add_argument("--model", choices=("dit", "styletalker"), default="dit", help="what --ckpt is")
    ap.add_argument("--styletalker-ckpt", default=None, help="with --model dit: also evaluate this StyleTalker run")
    ap.add_argument("--shards", required=True, help="curated OUT/shards folder")
    ap.add_argument("--split", choices=("test", "all"), default="test",
                    help="test: the clips --ckpt's split.json held out; all: every clip of --shards")
    ap.add_argument("--out", required=True, help="EVAL_DIR for results.json, per_clip.parquet, table.md")
    ap.add_argument("--render", action="store_true", help="render comparison strips (PNG) and measure ID-SIM")
    ap.add_argument("--max-clips", type=int, default=None, help="evaluate at most this many clips")
    ap.add_argument("--seeds", type=int, default=EvalConfig.seeds, help="samples per stochastic system "
                    "(pose diversity across seeds; seed 0 is scored)")
    ap.add_argument("--steps", type=int, default=EvalConfig.steps, help="DiT Euler steps")
    ap.add_argument("--ref-max-s", type=float, default=EvalConfig.ref_max_s, help="seconds: longest reference")
    ap.add_argument("--temperature", type=float, default=EvalConfig.temperature, help="StyleTalker prior temperature")
    ap.add_argument("--vocoder", choices=("auto", "vocos", "griffin_lim"), default="auto")
    ap.add_argument("--vocos-path", default=None, help="local Vocos dir (config.yaml + pytorch_model.bin)")
    ap.add_argument("--sync-model", default=None, help="lip-sync weights (default: the shipped sync_v1)")
    ap.add_argument("--syncnet-path", default=None, help="joonson's syncnet_v2.model: with --render, also SyncNet's "
                    "Sync-C/Sync-D on the rendered video")
    ap.add_argument("--device", default="cpu", help="torch device")
    return ap


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    if args.syncnet_path and not args.render:
        raise ValueError("--syncnet-path scores the rendered video: add --render")
    if args.styletalker_ckpt and args.model != "dit":
        raise ValueError("--styletalker-ckpt goes with --model dit (with --model styletalker, --ckpt is the run)")
    return EvalConfig(ckpt=args.ckpt, shards=args.shards, out=args.out, model=args.model,
                      styletalker_ckpt=args.styletalker_ckpt, split=args.split, max_clips=args.max_clips,
                      seeds=args.seeds, steps=args.steps, ref_max_s=args.ref_max_s, temperature=args.temperature,
                      vocoder=args.vocoder, vocos_path=args.vocos_path, sync_model_path=args.sync_model,
                      syncnet_path=args.syncnet_path,
                      render=args.render, device=args.device)


def main(argv: list[str] | None = None, prog: str = "python -m evaluation.cli") -> int:
    """Parse, evaluate, print the table; 0 on success, 2 for usage errors."""
    args = build_parser(prog).parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        run_eval(config_from_args(args))
    except (ValueError, FileNotFoundError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    with open(f"{args.out}/table.md", encoding="utf-8") as fh:
        print(fh.read(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
