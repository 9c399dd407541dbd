"""Sidecar transcript parsing, lookup beside local and file:// sources, and matching to segments."""

from __future__ import annotations

from pathlib import Path

import pytest

from stages.transcripts import (
    align_text_to_segments,
    assign_cues_to_segments,
    join_units,
    load_sidecar,
    parse_srt,
    parse_timestamp,
    parse_txt,
    parse_vtt,
    sidecar_candidates,
)

SRT = """\ufeff1
00:00:01,000 --> 00:00:03,250
<i>Hello</i> there,
general Kenobi.

2
00:00:04,5 --> 00:00:06,000
{\\an8}Second &amp; last.

3
00:00:07,000 --> 00:00:07,000
zero length is dropped
"""

VTT = """WEBVTT - a title

NOTE this is a comment
--> with an arrow inside

STYLE
::cue { color: red }

intro
00:00.500 --> 00:02.000 position:10% align:start
<v Roger>We are in
<c.loud>New York</c>

01:00:00.000 --> 01:00:01.500
An hour in.
"""


def test_parse_timestamp_forms():
    assert parse_timestamp("00:01:02,345") == pytest.approx(62.345)
    assert parse_timestamp("01:02.5") == pytest.approx(62.5)
    assert parse_timestamp("1:00:00.000") == 3600.0
    with pytest.raises(ValueError):
        parse_timestamp("soon")


def test_parse_srt():
    cues = parse_srt(SRT.replace("\n", "\r\n"))
    assert cues == [
        {"start_s": 1.0, "end_s": 3.25, "text": "Hello there, general Kenobi."},
        {"start_s": 4.5, "end_s": 6.0, "text": "Second & last."},
    ]


def test_parse_vtt_skips_header_notes_and_settings():
    cues = parse_vtt(VTT)
    assert cues == [
        {"start_s": 0.5, "end_s": 2.0, "text": "We are in New York"},
        {"start_s": 3600.0, "end_s": 3601.5, "text": "An hour in."},
    ]
    with pytest.raises(ValueError, match="WEBVTT"):
        parse_vtt("1\n00:00:01,000 --> 00:00:02,000\nsrt in disguise\n")


def test_parse_txt():
    assert parse_txt("\ufeff  One line,\n  and   another.\n") == [{"start_s": None, "end_s": None,
                                                                    "text": "One line, and another."}]
    assert parse_txt(" \n ") == []


def test_sidecar_candidates_for_paths_and_uris():
    assert [p for p, _ in sidecar_candidates("s3://bucket/a b/clip.v2.mp4")] == [
        "s3://bucket/a b/clip.v2.srt", "s3://bucket/a b/clip.v2.vtt", "s3://bucket/a b/clip.v2.txt"]
    assert sidecar_candidates("noext")[2] == ("noext.txt", "txt")


def test_load_sidecar_local_and_file_uri(tmp_path: Path):
    src = tmp_path / "dir with space" / "语音 clip.mp4"
    src.parent.mkdir()
    src.write_bytes(b"")
    assert load_sidecar(str(src)) is None
    src.with_suffix(".txt").write_text("plain text", encoding="utf-8")
    assert load_sidecar(str(src))["format"] == "txt"
    src.with_suffix(".srt").write_text(SRT, encoding="utf-8")  # srt wins over txt
    for source in (str(src), src.as_uri()):
        side = load_sidecar(source)
        assert side["format"] == "srt" and len(side["cues"]) == 2
    assert load_sidecar(src.as_uri())["path"].startswith("file://")


def test_cues_go_to_the_segment_they_overlap_most():
    cues = parse_srt(SRT)  # 1.0-3.25 and 4.5-6.0
    assert assign_cues_to_segments(cues, [(0.0, 3.0), (3.0, 7.0)]) == [
        "Hello there, general Kenobi.", "Second & last."]
    assert assign_cues_to_segments(cues, [(0.0, 5.0), (5.0, 9.0)]) == [
        "Hello there, general Kenobi.", "Second & last."]  # 0.5 s vs 1.0 s of the second cue
    assert assign_cues_to_segments(cues, [(0.0, 5.0), (5.5, 9.0)]) == [
        "Hello there, general Kenobi. Second & last.", ""]  # 0.5 s each: the first wins the tie
    assert assign_cues_to_segments(cues, [(10.0, 12.0)]) == [""]


def test_align_latin_text_to_segments():
    asr = [["Some", "call", "me", "nature."], ["Others", "call", "me", "Mother", "Nature."]]
    text = "Some call me nature, others call me mother nature."
    assert align_text_to_segments(text, asr, "en") == ["Some call me nature,", "others call me mother nature."]
    # misrecognized and missing words still land in the right segment
    asr = [["Sum", "call", "nature."], ["Others", "cull", "me", "mother"]]
    assert align_text_to_segments(text, asr, "en") == ["Some call me nature,", "others call me mother nature."]
    assert align_text_to_segments(text, [[]], "en") == [text]


def test_align_chinese_text_to_segments():
    text = "对，这就是我，万人敬仰的太乙真人。"
    asr = [["对", "这就是"], ["我", "万人"], ["敬仰的", "太乙真人"]]
    assert align_text_to_segments(text, asr, "zh") == ["对，这就是", "我，万人", "敬仰的太乙真人。"]


def test_join_units_spaces():
    assert join_units(["Hi", "there", "我", "们", "，", "ok"]) == "Hi there我们，ok"
