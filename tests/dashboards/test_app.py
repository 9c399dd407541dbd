"""The Streamlit app, driven headless by streamlit.testing.v1.AppTest.

Real shards: ``curated_serial`` (tests/conftest.py) curates the shared media once per session.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from streamlit.testing.v1 import AppTest

from dashboards import data
from tests.conftest import MEDIA

APP = Path(__file__).resolve().parents[2] / "dashboards" / "app.py"
TIMEOUT_S = 60


def run_app(monkeypatch: pytest.MonkeyPatch, *args: str) -> AppTest:
    """Run the app as ``streamlit run dashboards/app.py -- ARGS`` would."""
    monkeypatch.setattr(sys, "argv", [str(APP), *args])
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S)
    return at.run()


def go_to(at: AppTest, page: str) -> AppTest:
    at.sidebar.radio(key="page").set_value(page)
    return at.run()


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def shard_clip_ids(out: Path) -> list[str]:
    return [c for p in sorted((out / "shards").glob("part-*.parquet"))
            for c in pq.read_table(p, columns=["clip_id"])["clip_id"].to_pylist()]


def test_overview_renders(monkeypatch: pytest.MonkeyPatch, curated_serial: Path) -> None:
    at = run_app(monkeypatch, str(curated_serial))
    assert_clean(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["clips"] == str(len(shard_clip_ids(curated_serial))) != "0"
    assert int(metrics["inputs"]) > 0
    # one bar chart + a histogram per metric the clips have (duration, DNSMOS, ASD, fit RMSE, chars/s,
    # lip-sync score, audio-visual offset)
    assert len(at.get("vega_lite_chart")) == 8
    assert "Kept and rejected hours by stage and reason" in [s.value for s in at.subheader]
    # the run's own verify.json: every input once, ids, lengths, CRCs
    assert any(x.value.startswith("verified ") for x in at.success)


def test_clip_detail_renders_for_a_real_clip(monkeypatch: pytest.MonkeyPatch, curated_serial: Path) -> None:
    at = go_to(run_app(monkeypatch, str(curated_serial)), "Clips")
    assert_clean(at)
    clip_id = at.selectbox(key="clip_id").value
    assert clip_id in shard_clip_ids(curated_serial)
    assert clip_id in [s.value for s in at.subheader]
    assert len(at.get("audio")) == 1
    images = at.get("image")
    assert len(images) == 2  # mel spectrogram, fitted face
    # pose, fitted blendshapes, eye, MediaPipe's scores
    assert len(at.get("vega_lite_chart")) == 4
    first_face = at.slider(key="face_t").value
    at.slider(key="face_t").set_value(first_face + 1.0).run()
    assert_clean(at)
    assert "frame 94 " in at.get("image")[1].proto.imgs[0].caption  # 1 s later at 93.75 Hz
    # another clip, chosen in the selector, loads its own detail
    other = [c for c in at.selectbox(key="clip_id").options if c != clip_id][0]
    at.selectbox(key="clip_id").set_value(other).run()
    assert_clean(at)
    assert other in [s.value for s in at.subheader]


def test_filters_change_the_table(monkeypatch: pytest.MonkeyPatch, curated_serial: Path) -> None:
    at = go_to(run_app(monkeypatch, str(curated_serial)), "Clips")
    table = at.dataframe[0].value
    n = len(table)
    assert n >= 2
    best = float(table["dnsmos_ovrl"].max())
    lo, hi = at.slider(key="f_dnsmos_ovrl").value
    at.slider(key="f_dnsmos_ovrl").set_value((best - 1e-4, hi)).run()
    assert_clean(at)
    filtered = at.dataframe[0].value
    assert 1 <= len(filtered) < n and (filtered["dnsmos_ovrl"] >= best - 1e-4).all()
    at.slider(key="f_dnsmos_ovrl").set_value((lo, hi)).run()
    source = sorted(at.multiselect(key="f_source").options)[0]
    at.multiselect(key="f_source").set_value([source]).run()
    assert len(at.dataframe[0].value) < n
    at.multiselect(key="f_source").set_value([]).run()
    at.selectbox(key="sort_by").set_value("duration_s").run()
    at.checkbox(key="sort_desc").check().run()
    durations = at.dataframe[0].value["duration_s"].tolist()
    assert len(durations) == n and durations == sorted(durations, reverse=True)


def test_rejects_browser_filters(monkeypatch: pytest.MonkeyPatch, curated_serial: Path) -> None:
    at = go_to(run_app(monkeypatch, str(curated_serial)), "Rejects")
    assert_clean(at)
    table = at.dataframe[0].value
    assert {"stage", "reason", "value", "threshold", "start_s", "end_s"} <= set(table.columns)
    stage = table["stage"].value_counts().index[-1]
    at.multiselect(key="r_stage").set_value([stage]).run()
    filtered = at.dataframe[0].value
    assert 0 < len(filtered) < len(table) and set(filtered["stage"]) == {stage}
    reason = filtered["reason"].iloc[0]
    at.multiselect(key="r_reason").set_value([reason]).run()
    assert set(at.dataframe[0].value["reason"]) == {reason}


def test_empty_folder_gives_a_clear_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    at = run_app(monkeypatch, str(tmp_path))
    assert [e.value for e in at.error] == [
        f"{tmp_path}: no shards here (no shards/part-*.parquet). Point the dashboard at the output folder of a "
        "finished curation run (`omnitalker curate --output OUT`)."]
    assert not at.exception
    assert "no such output folder" in run_app(monkeypatch, str(tmp_path / "missing")).error[0].value
    assert "no output folder given" in run_app(monkeypatch).error[0].value


def test_corrupt_shard_names_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, synthetic_out: Path) -> None:
    root = tmp_path / "out"
    shutil.copytree(synthetic_out, root)
    bad = root / "shards" / "part-bad.parquet"
    bad.write_bytes(b"PAR1" + os.urandom(200) + b"PAR1")
    at = run_app(monkeypatch, str(root))
    assert len(at.error) == 1 and str(bad) in at.error[0].value and "cannot read this part" in at.error[0].value
    assert not at.exception


def test_everything_rejected_still_shows_overview_and_rejects(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                              synthetic_out: Path) -> None:
    root = tmp_path / "out"
    shutil.copytree(synthetic_out, root)
    shutil.rmtree(root / "shards")
    at = run_app(monkeypatch, str(root))
    assert "no shards here" in at.warning[0].value and not at.error and not at.exception
    assert at.metric[3].label == "clips" and at.metric[3].value == "0"
    at = go_to(at, "Rejects")
    assert len(at.dataframe[0].value) == 3
    assert "no clips kept" in go_to(at, "Clips").info[0].value


def test_synthetic_clip_without_visual_hides_the_face(monkeypatch: pytest.MonkeyPatch, synthetic_out: Path) -> None:
    at = go_to(run_app(monkeypatch, str(synthetic_out)), "Clips")
    at.selectbox(key="clip_id").set_value("clip04").run()  # written with visual = null
    assert_clean(at)
    assert any("no visual codes" in i.value for i in at.info)
    assert len(at.get("image")) == 1 and not at.get("vega_lite_chart")  # the mel only
    table = at.dataframe[0].value
    assert "speaker" not in table.columns and "language_prob" not in table.columns  # all null: hidden


def test_app_reads_only_inside_the_output_folder(monkeypatch: pytest.MonkeyPatch, curated_serial: Path) -> None:
    """Every file the app opens through the data layer lies in OUT; the source media are never opened."""
    opened: list[str] = []
    real_open = data.OutputFolder.open_input

    def recording_open(self: data.OutputFolder, path: str):  # noqa: ANN202
        opened.append(path)
        return real_open(self, path)

    python_opens: list[str] = []

    def audit(event: str, args: tuple) -> None:
        if event == "open" and isinstance(args[0], str | bytes | os.PathLike) and recording[0]:
            python_opens.append(os.fsdecode(args[0]))

    recording = [True]
    sys.addaudithook(audit)  # cannot be removed: switched off through `recording` below
    try:
        monkeypatch.setattr(data.OutputFolder, "open_input", recording_open)
        at = run_app(monkeypatch, str(curated_serial))
        for page in ("Clips", "Rejects"):
            at = go_to(at, page)
            assert_clean(at)
    finally:
        recording[0] = False
    root = os.path.realpath(curated_serial) + os.sep
    assert opened and all(os.path.realpath(p).startswith(root) for p in opened)
    media = str(MEDIA) + os.sep
    assert not [p for p in python_opens if os.path.realpath(p).startswith(media)]
