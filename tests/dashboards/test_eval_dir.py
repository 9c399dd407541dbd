"""The dashboard opens an ``omnitalker eval`` folder: the table, the per-clip rows and the strips.

The folder is written by the harness's own writer (``evaluation.report.write_outputs``) so the two stay
in step; the numbers in it are made up (the harness itself is tested in tests/evaluation)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from dashboards import eval_dir
from evaluation.report import write_outputs

APP = Path(__file__).resolve().parents[2] / "dashboards" / "app.py"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    results = {"format": "omnitalker-eval-v1", "split": {"split": "all", "n_test": 2}, "device": "cpu (test)",
               "models": {"asr": "whisper-test", "sync": "sync_v1@x"}, "skipped": {},
               "systems": {"ground_truth": {"wer": 0.05, "sync_conf": 0.25, "p_fid": 14.0, "n_clips": 2},
                           "still_reference": {"wer": float("nan"), "sync_conf": 0.02, "p_fid": 23.0, "n_clips": 2}}}
    rows = [{"system": s, "clip_id": c, "sync_conf": v} for s, v in (("ground_truth", 0.25), ("still_reference", 0.02))
            for c in ("a", "b")]
    write_outputs(tmp_path, results, rows, [], SimpleNamespace(render=False))
    (tmp_path / "strips").mkdir()
    Image.fromarray(np.full((8, 16, 3), 200, np.uint8)).save(tmp_path / "strips" / "a.png")
    return tmp_path


def test_read_eval_dir(folder: Path, tmp_path_factory):
    assert eval_dir.is_eval_dir(folder) and not eval_dir.is_eval_dir(tmp_path_factory.mktemp("empty"))
    ev = eval_dir.read_eval_dir(folder)
    assert [r["system"] for r in ev.system_rows()] == ["ground_truth", "still_reference"]
    assert ev.results["systems"]["still_reference"]["wer"] is None  # NaN is written as null
    assert ev.per_clip.num_rows == 4 and [p.name for p in ev.strips] == ["a.png"]
    assert "| ground_truth | 0.050 | 0.250 | 14.00 | 2 |" in ev.table_md


def test_the_app_shows_an_eval_dir(folder: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(sys, "argv", [str(APP), str(folder)])
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception and not at.error
    assert at.title[0].value == "omnitalker eval"
    assert any("| still_reference |" in m.value for m in at.markdown)
    assert len(at.dataframe) == 1 and at.dataframe[0].value.shape[0] == 4
    at.multiselect(key="eval_systems").set_value(["ground_truth"]).run()
    assert at.dataframe[0].value.shape[0] == 2
