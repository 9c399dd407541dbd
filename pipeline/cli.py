"""The ``omnitalker`` console script: ``omnitalker <command> [options]``.

Commands:
  curate    curate media into Parquet shards (= ``python -m pipeline.run``)
  train     train the OmniTalker DiT on the shards (= ``python -m launchers.train``)
  train-renderer  train the warp-GAN renderer (= ``python -m launchers.train_renderer``)
  train-sync  train the lip-sync model (= ``python -m launchers.train_sync``)
  train-styletalker  train the StyleTalker motion model (= ``python -m launchers.train_styletalker``)
  generate  text + reference to mel, codes and wav (= ``python -m inference.generate``)
  inspect   the shard-inspection dashboard on 127.0.0.1 (= ``streamlit run dashboards/app.py -- OUT``)
  render    reference + codes, or a driving video, to mp4 (= ``python -m inference.render``)
  verify    check a curation output folder: accounting, ids, lengths, CRCs (= ``python -m pipeline.verify``)
  eval      evaluate trained models on held-out clips: WER, SIM-A, Sync, E/P-FID, style, RTF (= ``python -m evaluation.cli``)
"""

from __future__ import annotations

import inspect
import sys

COMMANDS = {
    "curate": ("pipeline.run", "curate media into Parquet shards (= python -m pipeline.run)"),
    "train": ("launchers.train", "train the DiT on curated shards (= python -m launchers.train)"),
    "train-renderer": ("launchers.train_renderer", "train the learned warp-GAN renderer on curated shards "
                       "(= python -m launchers.train_renderer)"),
    "train-sync": ("launchers.train_sync", "train the lip-sync model on curated shards "
                   "(= python -m launchers.train_sync)"),
    "train-styletalker": ("launchers.train_styletalker", "train the StyleTalker motion model (lip stream + motion "
                          "VAE) on curated shards (= python -m launchers.train_styletalker)"),
    "generate": ("inference.generate", "text or speech + reference -> mel, codes, wav [, mp4]; --model dit|styletalker (= python -m inference.generate)"),
    "inspect": ("dashboards.launch", "inspect a curation output folder in a local web app "
                "(= streamlit run dashboards/app.py -- OUT)"),
    "verify": ("pipeline.verify", "check a curation output folder: every input once, ids, lengths, CRCs, "
               "leftovers (= python -m pipeline.verify)"),
    "render": ("inference.render", "reference image + codes (or a driving video) -> mp4 (= python -m inference.render)"),
    "eval": ("evaluation.cli", "evaluate trained models on held-out clips: WER, SIM-A, Sync, E/P-FID, style, RTF "
             "-> table.md (= python -m evaluation.cli)"),
}


def print_usage() -> None:
    print("usage: omnitalker <command> [options]\n\ncommands:")
    for name, (_, text) in COMMANDS.items():
        print(f"  {name:<10} {text}")
    print("\n'omnitalker <command> --help' shows a command's options.")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print_usage()
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"omnitalker: unknown command {name!r}\n", file=sys.stderr)
        print_usage()
        return 2
    module = __import__(COMMANDS[name][0], fromlist=["main"])
    if "prog" in inspect.signature(module.main).parameters:  # its --help then says `omnitalker <command>`
        return int(module.main(rest, prog=f"omnitalker {name}") or 0)
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
