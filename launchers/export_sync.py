"""``python -m launchers.export_sync RUN_DIR/sync.safetensors``: make a trained lip-sync model the shipped default.

Copies the weight file to ``model/sync/assets/sync_v1.safetensors`` and pins its sha256 in
``model/sync/io.py`` (``DEFAULT_SHA256``), so a changed or truncated copy fails loudly at load.
The last step of ``make sync-model`` (docs/sync.md).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

from model.sync import io as sync_io


def export_default(weights: Path) -> str:
    model, _ = sync_io.load_sync_model(str(weights))  # refuses anything that is not a lip-sync weight file
    size = weights.stat().st_size
    if size > 5 * 2**20:
        raise ValueError(f"{weights} is {size / 2**20:.1f} MiB; the shipped default must stay under 5 MiB")
    sync_io.DEFAULT_WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights, sync_io.DEFAULT_WEIGHTS)
    digest = sync_io.sha256_of(sync_io.DEFAULT_WEIGHTS)
    src = Path(sync_io.__file__)
    text = re.sub(r'^DEFAULT_SHA256 = "[^"]*"', f'DEFAULT_SHA256 = "{digest}"', src.read_text(encoding="utf-8"),
                  count=1, flags=re.M)
    src.write_text(text, encoding="utf-8")
    return digest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="make a trained lip-sync model the shipped default")
    ap.add_argument("weights", help="RUN_DIR/sync.safetensors of a train-sync run")
    args = ap.parse_args(argv)
    digest = export_default(Path(args.weights))
    print(f"{sync_io.DEFAULT_WEIGHTS} <- {args.weights} (sha256 {digest}, pinned in {sync_io.__file__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
