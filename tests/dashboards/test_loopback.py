"""Both ways of starting the dashboard listen on this machine only (.streamlit/config.toml)."""

from __future__ import annotations

import subprocess
import sys

from dashboards.launch import DEFAULT_HOST
from tests.conftest import REPO


def effective_address(cwd) -> str | None:
    """``server.address`` as streamlit itself resolves it when started from ``cwd``."""
    out = subprocess.run([sys.executable, "-m", "streamlit", "config", "show"], cwd=cwd, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    values = [ln.split("=", 1)[1].strip().strip('"') for ln in out.splitlines() if ln.startswith("address =")]
    return values[0] if values else None


def test_streamlit_run_from_the_repo_binds_loopback_like_omnitalker_inspect(tmp_path):
    assert DEFAULT_HOST == "127.0.0.1"
    assert effective_address(REPO) == "127.0.0.1"  # `streamlit run dashboards/app.py -- OUT`
    assert effective_address(tmp_path) is None  # elsewhere streamlit's default (every interface): the file is what binds
