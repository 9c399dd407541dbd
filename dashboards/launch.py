"""``omnitalker inspect OUT [--port P] [--host H]``: serve the shard-inspection dashboard.

Runs ``streamlit run dashboards/app.py -- OUT`` headless, bound to 127.0.0.1 unless ``--host``
says otherwise (binding elsewhere exposes the clips to the network: there is no login).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

APP = Path(__file__).resolve().parent / "app.py"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="omnitalker inspect", description="Inspect a curation output folder "
                                 "(kept clips, rejects, manifest) in a local read-only web app.")
    ap.add_argument("out", help="output folder of a curation run (local path or URI, e.g. s3://bucket/out), "
                    "or an omnitalker eval folder (EVAL_DIR)")
    ap.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})")
    ap.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST}: this machine only)")
    return ap.parse_args(argv)


def build_command(out: str, port: int = DEFAULT_PORT, host: str = DEFAULT_HOST) -> list[str]:
    """The ``streamlit run`` command line that serves ``out``."""
    return [sys.executable, "-m", "streamlit", "run", str(APP),
            "--server.address", host, "--server.port", str(port), "--server.headless", "true",
            "--server.runOnSave", "false", "--server.fileWatcherType", "none",
            "--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer", "--", out]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.host not in (DEFAULT_HOST, "localhost", "::1"):
        print(f"omnitalker inspect: serving on {args.host}: anyone who can reach it can read the clips",
              file=sys.stderr)
    print(f"omnitalker inspect: http://{args.host}:{args.port} (Ctrl-C stops)", file=sys.stderr)
    try:
        return subprocess.call(build_command(args.out, args.port, args.host))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
