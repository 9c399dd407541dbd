"""The served app in a real browser: `omnitalker inspect` on a free localhost port, headless Chromium.

Needs Debian's ``chromium`` (the Makefile's test set-up installs it); skips, saying why, without it.
The screenshot is saved as ``test-artifacts/dashboard_overview.png`` (test-artifacts/ is git-ignored).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
from PIL import Image

from dashboards import launch

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
SERVE_TIMEOUT_S = 30
CHROMIUM_TIMEOUT_S = 60
# Real seconds to keep reloading until the charts are in the DOM. A clean clone's first script run
# imports pandas and altair cold (no .pyc yet) on a busy 2-core machine; each Chromium load only
# lasts until its virtual time runs out, which can be a second or two of real time.
CHARTS_DEADLINE_S = 180
SCREENSHOT_DEADLINE_S = 30  # real seconds to retake a screenshot that shows the loading skeleton
RELOAD_PAUSE_S = 2.0  # real seconds between two loads
T = TypeVar("T")
N_OVERVIEW_CHARTS = 8  # the hours bar chart and seven histograms (five quality measures, lip-sync score, offset)


def test_launch_binds_localhost_headless_by_default() -> None:
    args = launch.parse_args(["/data/out"])
    assert (args.host, args.port) == ("127.0.0.1", 8501)
    cmd = launch.build_command(args.out, args.port, args.host)
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4] == str(launch.APP)
    opts = dict(zip(cmd[5:-2:2], cmd[6:-2:2], strict=True))
    assert opts["--server.address"] == "127.0.0.1" and opts["--server.headless"] == "true"
    assert cmd[-2:] == ["--", "/data/out"]
    assert launch.parse_args(["o", "--host", "0.0.0.0", "--port", "9000"]).host == "0.0.0.0"


def find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_served(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + SERVE_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the dashboard exited with {proc.returncode}: {proc.stdout.read()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"the dashboard did not serve {url} within {SERVE_TIMEOUT_S} s")


def run_chromium(chromium: str, *args: str) -> str:
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--window-size=1400,2000", "--virtual-time-budget=15000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S).stdout


def test_overview_in_headless_chromium(synthetic_out: Path) -> None:
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (`make test` installs it with apt-get where apt works)")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # launch.main in a subprocess, as `omnitalker inspect OUT --port P` runs it; its own process
    # group, so the Streamlit server it starts is killed with it.
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from dashboards.launch import main; "
                             "sys.exit(main(sys.argv[1:]))", str(synthetic_out), "--port", str(port)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        wait_until_served(url, proc)
        # Virtual time runs ahead of the first (cold) script run, so load the page until the
        # charts are in its DOM; later loads find the server warm.
        dom, waited = load_until(lambda: run_chromium(chromium, "--dump-dom", url),
                                 lambda d: count_charts(d) >= N_OVERVIEW_CHARTS, CHARTS_DEADLINE_S)
        assert count_charts(dom) == N_OVERVIEW_CHARTS, f"{count_charts(dom)} charts {waited}: {dom[-2000:]}"
        assert "Run overview" in dom and "Kept and rejected hours by stage and reason" in dom
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "dashboard_overview.png"
        # A loaded machine can leave a fresh session on Streamlit's loading skeleton for a whole
        # virtual-time budget (seen once in a clean-clone run: three blank screenshots after the DOM
        # had the charts), so try again for a while.

        def take_screenshot() -> np.ndarray | None:
            shot.unlink(missing_ok=True)
            run_chromium(chromium, f"--screenshot={shot}", url)
            return np.asarray(Image.open(shot).convert("RGB")) if shot.exists() else None

        def has_bars(im: np.ndarray | None) -> bool:
            """The charts' bars: enough saturated red (rejected, thresholds) and green (kept) pixels."""
            return (im is not None and count_colour(im, (214, 39, 40)) > 500
                    and count_colour(im, (44, 160, 44)) > 500)

        img, waited = load_until(take_screenshot, has_bars, SCREENSHOT_DEADLINE_S)
        assert img is not None and img.shape == (2000, 1400, 3), waited
        assert count_colour(img, (214, 39, 40)) > 500, "no red (rejected hours) bars in the screenshot"
        assert count_colour(img, (44, 160, 44)) > 500, "no green (kept hours) bar in the screenshot"
        assert img.std() > 20, "the screenshot is (nearly) blank"
    finally:
        stop_group(proc)


def load_until(load: Callable[[], T], done: Callable[[T], bool], deadline_s: float) -> tuple[T, str]:
    """Call ``load`` until ``done`` holds for its result or ``deadline_s`` real seconds have passed, pausing
    ``RELOAD_PAUSE_S`` between calls. Returns the last result and how many loads it took in how long."""
    start = time.monotonic()
    loads = 0
    while True:
        result = load()
        loads += 1
        if done(result) or time.monotonic() - start > deadline_s:
            return result, f"after {loads} loads in {time.monotonic() - start:.0f} s"
        time.sleep(RELOAD_PAUSE_S)


def count_charts(dom: str) -> int:
    return dom.count('data-testid="stVegaLiteChart"')


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the launcher's process group, then SIGKILL whatever is left (the Streamlit server
    is the launcher's child and may outlive it while it shuts down)."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def count_colour(img: np.ndarray, rgb: tuple[int, int, int], tol: int = 12) -> int:
    return int((np.abs(img.astype(np.int32) - np.array(rgb)).max(axis=-1) <= tol).sum())
