"""Shard-inspection dashboard: ``streamlit run dashboards/app.py -- OUT`` (or ``omnitalker inspect OUT``).

Three pages: run overview, clip browser (table + one clip in detail), rejects browser. Given an
``omnitalker eval`` folder (EVAL_DIR, :mod:`dashboards.eval_dir`) instead, it shows the evaluation table,
the per-clip rows and the comparison strips.
All data comes from :mod:`dashboards.data`; this module only lays it out. Read-only: the
output folder given on the command line is the only place files are read from (the fitted
face also reads the packaged basis ``blendshape_fit/assets/basis_v1.npz``).
"""

from __future__ import annotations

import json
import posixpath
import sys
from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import pyarrow as pa
import streamlit as st
from PIL import Image, ImageDraw

from dashboards import data, eval_dir
from shards.codes import EXPRESSION_NAMES
from shards.reader import REJECTS, SOURCES, VERIFY_REPORT
from shards.sync_score import combine_sync_score

PAGES = ("Overview", "Clips", "Rejects")
HISTOGRAM_METRICS = (("duration_s", "duration (s)"), ("dnsmos_ovrl", "DNSMOS OVRL (MOS 1-5)"),
                     ("asd_score", "active-speaker score"), ("fit_rmse", "fit RMSE / inter-ocular distance"),
                     ("chars_per_s", "characters per second"), ("sync_score", "lip-sync score (confidence + cosine - lag cost)"),
                     ("av_offset_s", "audio-visual offset (s, + = audio late)"))
# Quality columns offered as range filters in the clip browser (shown only when present).
RANGE_COLUMNS = ("duration_s", "dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808", "chars_per_s",
                 "language_prob", "sidecar_wer", "asd_score", "face_area_frac", "fit_rmse", "sync_score", "sync_conf", "sync_dist",
                 "av_offset_s")
TABLE_COLUMNS = ("clip_id", "source", "start_s", "end_s", "duration_s", "language", "language_prob", "speaker",
                 "dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808", "chars_per_s", "sidecar_wer",
                 "asd_score", "asd_lag_s", "sync_score", "sync_conf", "sync_dist", "av_offset_s", "av_shift_applied_s",
                 "face_area_frac", "fit_rmse", "text_source", "text")
REJECT_COLUMNS = ("source_path", "stage", "reason", "value", "threshold", "start_s", "end_s", "duration_s", "detail")
FACE_IMAGE_PX = 360  # side of the fitted-face rendering


def parse_root(argv: list[str]) -> str | None:
    """The output folder: the first argument after ``--`` (Streamlit hands the script ``sys.argv[1:]``)."""
    args = [a for a in argv[1:] if a != "--"]
    return args[0] if args else None


def load_run(root: str) -> dict[str, Any]:
    """Manifest, clips, rejects and sources of ``root``; stops the page with a clear message on failure."""
    try:
        folder = data.OutputFolder(root)
        manifest = folder.read_manifest()
        verify = folder.read_manifest(VERIFY_REPORT)
        rejects = folder.read_all(REJECTS)
        sources = folder.read_all(SOURCES)
        try:
            clips = folder.read_clips()
        except data.NoShardsError as e:
            if rejects is None and manifest is None:
                raise
            st.warning(str(e))  # every file rejected: the overview and the rejects still tell why
            clips = None
    except data.DashboardDataError as e:
        st.error(str(e))
        st.stop()
    return {"folder": folder, "manifest": manifest, "clips": clips, "rejects": rejects, "sources": sources,
            "verify": verify}


# --------------------------------------------------------------------------- overview


def show_overview(run: dict[str, Any]) -> None:
    manifest = run["manifest"] or {}
    clips, sources = run["clips"], run["sources"]
    st.header("Run overview")
    if not manifest:
        st.info("no manifest.json in this folder (the run did not finish); counts below are from the parts")
    hours_in = manifest.get("hours_in", float(np.nansum(data.column_values(sources, "duration_s"))) / 3600)
    hours_kept = float(np.nansum(data.column_values(clips, "duration_s"))) / 3600
    cols = st.columns(5)
    cols[0].metric("inputs", manifest.get("inputs", 0 if sources is None else sources.num_rows))
    cols[1].metric("hours in", f"{hours_in:.4f}")
    cols[2].metric("hours kept", f"{hours_kept:.4f}")
    cols[3].metric("clips", 0 if clips is None else clips.num_rows)
    cols[4].metric("wall time (s)", f"{manifest.get('wall_time_s', float('nan')):.1f}")
    st.caption(f"schema v{manifest.get('schema_version', '?')} · config hash {manifest.get('config_hash', '?')} · "
               f"written {manifest.get('written_at', '?')} · files by status {manifest.get('files_by_status', {})}")
    show_verify(run.get("verify"), manifest)

    st.subheader("Kept and rejected hours by stage and reason")
    rows = data.summarize_hours(clips, run["rejects"])
    if rows:
        df = pd.DataFrame(rows)
        df["label"] = df["stage"] + " / " + df["reason"]
        chart = alt.Chart(df).mark_bar().encode(
            x=alt.X("hours:Q", title="hours of audio"), y=alt.Y("label:N", sort=None, title=None, axis=alt.Axis(labelLimit=320)),
            color=alt.Color("status:N", scale=alt.Scale(domain=["kept", "rejected"], range=["#2ca02c", "#d62728"])),
            tooltip=["stage", "reason", "count", alt.Tooltip("hours:Q", format=".5f")])
        st.altair_chart(chart, width="stretch")
    else:
        st.info("nothing kept or rejected yet")

    st.subheader("Distributions of the kept clips (red lines: configured thresholds)")
    thresholds = data.collect_thresholds(manifest.get("config"))
    present = [(c, label) for c, label in HISTOGRAM_METRICS
               if np.isfinite(data.column_values(clips, c)).any()]
    if not present:
        st.info("no clips to plot")
    grid = st.columns(3)
    for i, (column, label) in enumerate(present):
        with grid[i % 3]:
            st.altair_chart(make_histogram(data.column_values(clips, column), label,
                                           thresholds.get(column, [])), width="stretch")

    with st.expander("Models that ran and stages skipped"):
        models = [{"stage": s, "model": m, "files": n} for s, ms in sorted((manifest.get("models") or {}).items())
                  for m, n in ms.items()]
        st.dataframe(pd.DataFrame(models or [{"stage": "-", "model": "none recorded", "files": 0}]), hide_index=True)
        skipped = data.skipped_stages(manifest)
        st.dataframe(pd.DataFrame(skipped or [{"stage": "-", "why": "no stage skipped", "files": 0}]),
                     hide_index=True)
    with st.expander("Config"):
        st.json(manifest.get("config") or {}, expanded=False)
    with st.expander("Package versions and run history"):
        st.json({"versions": manifest.get("versions") or {}, "runs": manifest.get("runs") or []}, expanded=False)


def make_histogram(values: np.ndarray, label: str, thresholds: list[tuple[str, float]]) -> alt.LayerChart:
    counts, edges = data.compute_histogram(values, include=[v for _, v in thresholds])
    bars = alt.Chart(pd.DataFrame({"lo": edges[:-1], "hi": edges[1:], "clips": counts})).mark_rect().encode(
        x=alt.X("lo:Q", title=label, scale=alt.Scale(zero=False)), x2="hi:Q",
        y=alt.Y("clips:Q", title="clips"), y2=alt.datum(0), tooltip=["lo", "hi", "clips"])
    rules = alt.Chart(pd.DataFrame(thresholds or [], columns=["field", "value"])).mark_rule(
        color="red", strokeWidth=2).encode(x="value:Q", tooltip=["field", "value"])
    return alt.layer(bars, rules).properties(height=220, title=label)


# --------------------------------------------------------------------------- clips


def show_clips(run: dict[str, Any]) -> None:
    st.header("Clips")
    clips: pa.Table | None = run["clips"]
    if clips is None:
        st.info("no clips kept in this folder")
        return
    shown = clips.select(data.present_columns(clips))
    with st.expander("Filters", expanded=True):
        c1, c2, c3 = st.columns(3)
        languages = sorted(v for v in set(shown.column("language").to_pylist()) - {None}) \
            if "language" in shown.column_names else []
        chosen_lang = c1.multiselect("language", languages, key="f_language")
        sources = sorted(set(shown.column("source_path").to_pylist()))
        chosen_src = c2.multiselect("source", sources, format_func=posixpath.basename, key="f_source")
        text = c3.text_input("transcript contains", key="f_text")
        ranges: dict[str, tuple[float, float]] = {}
        range_cols = [c for c in RANGE_COLUMNS if c in shown.column_names]
        grid = st.columns(4)
        for i, col in enumerate(range_cols):
            v = data.column_values(shown, col)
            v = v[np.isfinite(v)]
            lo, hi = float(v.min()), float(v.max())
            if hi <= lo:
                continue
            picked = grid[i % 4].slider(col, lo, hi, (lo, hi), key=f"f_{col}")
            if picked != (lo, hi):
                ranges[col] = picked
        s1, s2 = st.columns(2)
        sortable = [c for c in TABLE_COLUMNS if c in shown.column_names and c not in ("text", "source")]
        sort_by = s1.selectbox("sort by", sortable, index=sortable.index("clip_id"), key="sort_by")
        descending = s2.checkbox("descending", key="sort_desc")
    table = data.sort_table(data.filter_clips(shown, chosen_lang, chosen_src, ranges, text), sort_by, descending)
    st.caption(f"{table.num_rows} of {clips.num_rows} clips")
    df = table.to_pandas()
    df["source"] = df["source_path"].map(posixpath.basename)
    st.dataframe(df[[c for c in TABLE_COLUMNS if c in df.columns]], hide_index=True, key="clip_table")
    if not table.num_rows:
        st.info("no clip matches these filters")
        return
    ids = table.column("clip_id").to_pylist()
    clip_id = st.selectbox("clip", ids, key="clip_id")
    i = ids.index(clip_id)
    row = run["folder"].read_clip(table.column("_part")[i].as_py(), int(table.column("_row")[i].as_py()))
    show_clip_detail(row)


def show_clip_detail(row: dict[str, Any]) -> None:
    start_s, end_s = float(row["start_s"]), float(row["end_s"])
    st.subheader(f"{row['clip_id']}")
    st.caption(f"{row['source_path']} · {start_s:.3f}-{end_s:.3f} s of source time · "
               f"{row.get('n_frames')} frames at 93.75 Hz")
    if row.get("audio_flac"):
        st.audio(row["audio_flac"], format="audio/flac")
    mel = data.to_matrix(row.get("mel"), 100)
    if mel is not None:
        st.image(data.mel_to_image(mel), caption="log-mel (100 bins, 0-12 kHz bottom to top; 93.75 frames/s)",
                 width="stretch")
    if row.get("sync_conf") is not None:
        shift = row.get("av_shift_applied_s") or 0.0
        dist = row.get("sync_dist", float("nan"))
        score = combine_sync_score(row["sync_conf"], dist, row.get("av_offset_s") or 0.0)
        st.markdown(f"**Lip sync** ({row.get('sync_model')}): score {score:.3f} "
                    f"(confidence {row['sync_conf']:.3f}, distance {dist:.3f}), audio {row.get('av_offset_s', 0.0) * 1000:+.0f} ms "
                    f"against the video (+ = late)" + (f"; video moved {shift * 1000:+.0f} ms to match" if shift else ""))
    st.markdown("**Transcript**")
    st.write(row.get("text") or "(no transcript)")
    if row.get("text_model") and row.get("text_model") != row.get("text"):
        st.caption(f"model text: {row['text_model']}")
    words = data.word_rows(row.get("words"))
    if words:
        with st.expander(f"word timings ({len(words)} words, seconds of source time)"):
            st.dataframe(pd.DataFrame(words), hide_index=True)
    visual = data.to_matrix(row.get("visual"), 61)
    if visual is None:
        st.info("no visual codes in this clip (the visual stage did not run)")
    else:
        show_visual(row, visual, start_s)
    with st.expander("provenance"):
        st.json(json.loads(row.get("provenance") or "{}"), expanded=False)


def show_visual(row: dict[str, Any], visual: np.ndarray, start_s: float) -> None:
    names = st.multiselect("blendshapes", EXPRESSION_NAMES, default=list(data.DEFAULT_BLENDSHAPES), key="shapes")
    curves = data.visual_curves(visual, start_s, names)
    mp = data.to_matrix(row.get("mp_blendshapes"), 52)
    left, right = st.columns(2)
    with left:
        st.markdown("**Fitted codes (93.75 Hz)**")
        st.altair_chart(make_lines(curves["pose"], "head pose (deg)"), width="stretch")
        if names:
            st.altair_chart(make_lines(curves["blendshapes"], "blendshapes, fitted (0-1)"), width="stretch")
        st.altair_chart(make_lines(curves["eye"], "eye rotation (deg)"), width="stretch")
    with right:
        if mp is not None and names:
            st.markdown("**MediaPipe's own scores (30 fps)**")
            st.altair_chart(make_lines(data.mediapipe_curves(mp, start_s, names), "blendshapes, MediaPipe (0-1)"),
                            width="stretch")
        t_s = st.slider("face at time (s, source time)", start_s, start_s + (visual.shape[0] - 1) / data.FRAME_RATE_HZ,
                        start_s, step=1 / data.FRAME_RATE_HZ, format="%.3f", key="face_t")
        k = data.frame_at(t_s, start_s, visual.shape[0])
        pts, tris = data.project_face(visual[k], data.source_aspect(row.get("provenance")))
        st.image(render_face(pts, tris), caption=f"fitted face, frame {k} ({t_s:.3f} s)")


def make_lines(curves: dict[str, np.ndarray], title: str) -> alt.Chart:
    df = pd.DataFrame(data.to_long_rows(curves))
    return alt.Chart(df).mark_line().encode(
        x=alt.X("t_s:Q", title="source time (s)", scale=alt.Scale(zero=False)), y=alt.Y("value:Q", title=None),
        color=alt.Color("curve:N", title=None)).properties(height=180, title=title)


def render_face(pts: np.ndarray, triangles: np.ndarray | None, size: int = FACE_IMAGE_PX) -> Image.Image:
    """The 2D landmarks (image-height units, y down) as mesh edges and points, cropped to the face."""
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    span = float(max(hi - lo)) * 1.15 or 1.0
    centre = (lo + hi) / 2
    xy = (pts - centre) / span * size + size / 2
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    if triangles is not None:
        for a, b, c in triangles:
            draw.line([tuple(xy[a]), tuple(xy[b]), tuple(xy[c]), tuple(xy[a])], fill=(170, 170, 200), width=1)
    for x, y in xy:
        draw.point((float(x), float(y)), fill=(20, 20, 90))
    return img


# --------------------------------------------------------------------------- rejects


def show_rejects(run: dict[str, Any]) -> None:
    st.header("Rejects")
    rejects: pa.Table | None = run["rejects"]
    if rejects is None or not rejects.num_rows:
        st.info("no rejects in this folder")
        return
    c1, c2 = st.columns(2)
    stages = c1.multiselect("stage", sorted(set(rejects.column("stage").to_pylist())), key="r_stage")
    pool = data.filter_rejects(rejects, stages)
    reasons = c2.multiselect("reason", sorted(set(pool.column("reason").to_pylist())), key="r_reason")
    table = data.filter_rejects(rejects, stages, reasons)
    st.caption(f"{table.num_rows} of {rejects.num_rows} reject rows · value = the measured value, threshold = "
               "the configured limit; start_s/end_s empty for a whole-file row")
    df = table.select([c for c in REJECT_COLUMNS if c in table.column_names]).to_pandas()
    st.dataframe(df, hide_index=True, key="reject_table")


def show_verify(report: dict | None, manifest: dict) -> None:
    """The folder's last `omnitalker verify` report, and errored files waiting for a retry."""
    if report is None:
        st.warning("no verify.json: this folder was never verified (`omnitalker verify OUT`)")
    elif report.get("ok"):
        st.success(f"verified {report.get('checked_at', '?')}: every input once, clip ids, lengths and page CRCs OK")
    else:
        st.error("verification found problems: " + ", ".join(
            f"{k} ({v['count']})" for k, v in (report.get("problems") or {}).items()))
        st.json(report.get("problems") or {}, expanded=False)
    pending = (manifest.get("errors") or {}).get("pending_files", 0)
    if pending:
        st.error(f"{pending} file(s) failed with an error and are not done (OUT/errors/): re-run the same command")


def show_evaluation(folder: eval_dir.EvalFolder) -> None:
    """An ``omnitalker eval`` folder: the table, the models and split, per-clip rows and the strips."""
    st.title("omnitalker eval")
    st.caption(folder.root)
    st.markdown(folder.table_md or "(no table.md)")
    res = folder.results
    with st.expander("models, split and device"):
        st.json({"models": res.get("models"), "split": res.get("split"), "device": res.get("device"),
                 "skipped": res.get("skipped")})
    if folder.per_clip is not None:
        st.subheader("per clip")
        systems = sorted(set(folder.per_clip.column("system").to_pylist()))
        pick = st.multiselect("systems", systems, default=systems, key="eval_systems")
        rows = [r for r in folder.per_clip.to_pylist() if r["system"] in pick]
        st.dataframe(pd.DataFrame(rows), hide_index=True)
    if folder.strips:
        st.subheader("comparison strips")
        for path in folder.strips:
            st.image(str(path), caption=path.stem)


def main() -> None:
    st.set_page_config(page_title="omnitalker inspect", layout="wide")
    root = parse_root(sys.argv)
    if root is None:
        st.error("no output folder given: run `omnitalker inspect OUT` or `streamlit run dashboards/app.py -- OUT`")
        st.stop()
    if eval_dir.is_eval_dir(root):
        show_evaluation(eval_dir.read_eval_dir(root))
        return
    run = load_run(root)
    st.sidebar.title("omnitalker inspect")
    st.sidebar.caption(root)
    page = st.sidebar.radio("page", PAGES, key="page")
    {"Overview": show_overview, "Clips": show_clips, "Rejects": show_rejects}[page](run)


if __name__ == "__main__":
    main()
