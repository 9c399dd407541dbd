"""Sidecar transcripts: ``<stem>.srt``, ``<stem>.vtt`` or ``<stem>.txt`` next to a source file.

Parsing gives a list of cues ``{"start_s", "end_s", "text"}`` in source
seconds (``None`` times for ``.txt``, which is one untimed cue). Sources may
be local paths or URIs; the sidecar is looked up beside the source through
``core.media_io`` and read through the same filesystem.

Cues are matched to segments in two ways:

* timed cues (srt/vtt): each cue goes to the segment it overlaps most;
* untimed text (txt): the whole text when there is a single segment, else
  its tokens are aligned to the ASR words of all segments (``difflib``) and
  each token goes to the segment of the ASR word it aligned to.
"""

from __future__ import annotations

import difflib
import html
import re
import unicodedata
from typing import Any

from core.media_io import is_uri, open_binary, resolve
from stages.text_norm import CJK_CHAR, normalize_for_wer

SIDECAR_FORMATS = ("srt", "vtt", "txt")  # looked for in this order
MAX_SIDECAR_BYTES = 4 << 20  # larger "transcripts" are not read
Cue = dict[str, Any]  # {"start_s": float | None, "end_s": float | None, "text": str}

_TIME = re.compile(r"(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{1,3})")
_TAG = re.compile(r"<[^>]*>")


def parse_timestamp(text: str) -> float:
    """Seconds from ``HH:MM:SS,mmm`` (srt) or ``[HH:]MM:SS.mmm`` (vtt)."""
    m = _TIME.fullmatch(text.strip())
    if not m:
        raise ValueError(f"bad timestamp {text!r}")
    h, mnt, sec, frac = m.groups()
    return int(h or 0) * 3600 + int(mnt) * 60 + int(sec) + int(frac.ljust(3, "0")) / 1000


def clean_cue_text(lines: list[str]) -> str:
    """Join cue lines; drop markup tags (``<i>``, ``<v Name>``, ``{\\an8}``) and HTML entities."""
    text = " ".join(line.strip() for line in lines if line.strip())
    text = _TAG.sub("", text)
    text = re.sub(r"\{\\[^}]*\}", "", text)
    return " ".join(html.unescape(text).split())


def parse_timed_blocks(text: str, is_vtt: bool) -> list[Cue]:
    """Cues from srt/vtt text: blocks separated by blank lines, each with a ``start --> end`` line."""
    cues: list[Cue] = []
    blocks = re.split(r"\n\s*\n", text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff"))
    for block in blocks:
        lines = block.strip("\n").split("\n")
        arrow = next((i for i, line in enumerate(lines) if "-->" in line), None)
        if arrow is None:
            continue  # WEBVTT header, NOTE, STYLE or a stray block
        if is_vtt and lines[0].startswith(("NOTE", "STYLE", "REGION")):
            continue
        left, right = lines[arrow].split("-->", 1)
        start = parse_timestamp(left)
        end = parse_timestamp(right.strip().split()[0])  # vtt cue settings follow the end time
        body = clean_cue_text(lines[arrow + 1:])
        if body and end > start:
            cues.append({"start_s": start, "end_s": end, "text": body})
    cues.sort(key=lambda c: c["start_s"])
    return cues


def parse_srt(text: str) -> list[Cue]:
    """Cues of a SubRip file."""
    return parse_timed_blocks(text, is_vtt=False)


def parse_vtt(text: str) -> list[Cue]:
    """Cues of a WebVTT file (header, NOTE/STYLE blocks and cue settings ignored)."""
    body = text.lstrip("\ufeff")
    if not body.startswith("WEBVTT"):
        raise ValueError("not a WebVTT file (no WEBVTT header)")
    return parse_timed_blocks(body, is_vtt=True)


def parse_txt(text: str) -> list[Cue]:
    """One untimed cue with the whole text (whitespace collapsed); none if empty."""
    body = " ".join(text.lstrip("\ufeff").split())
    return [{"start_s": None, "end_s": None, "text": body}] if body else []


PARSERS = {"srt": parse_srt, "vtt": parse_vtt, "txt": parse_txt}


def sidecar_candidates(source_path: str) -> list[tuple[str, str]]:
    """``[(path, format)]`` where a sidecar of ``source_path`` would be, in lookup order."""
    head, sep, name = source_path.rpartition("/")
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return [(f"{head}{sep}{stem}.{fmt}", fmt) for fmt in SIDECAR_FORMATS]


def exists(path: str) -> bool:
    import pyarrow.fs as pafs

    fs, inner = resolve(path)
    try:
        return fs.get_file_info(inner).type == pafs.FileType.File
    except OSError:
        return False


def load_sidecar(source_path: str) -> dict[str, Any] | None:
    """The first sidecar found beside ``source_path``: ``{"path", "format", "cues"}``, or None."""
    if not is_uri(source_path):
        source_path = source_path.replace("\\", "/")
    for path, fmt in sidecar_candidates(source_path):
        if not exists(path):
            continue
        with open_binary(path) as fh:
            raw = fh.read(MAX_SIDECAR_BYTES + 1)
        if len(raw) > MAX_SIDECAR_BYTES:
            raise ValueError(f"sidecar {path} is larger than {MAX_SIDECAR_BYTES} bytes")
        text = raw.decode("utf-8-sig", errors="replace")
        return {"path": path, "format": fmt, "cues": PARSERS[fmt](text)}
    return None


# --------------------------------------------------------------------------- matching to segments


def is_wide(char: str) -> bool:
    """CJK characters and full-width punctuation (written without spaces around them)."""
    return unicodedata.east_asian_width(char) in ("W", "F")


def join_units(units: list[str]) -> str:
    """Join text pieces with spaces, except next to CJK characters or full-width punctuation."""
    out = ""
    for u in units:
        if not u:
            continue
        if out and not (is_wide(out[-1]) or is_wide(u[0])):
            out += " "
        out += u
    return out


def assign_cues_to_segments(cues: list[Cue], spans_s: list[tuple[float, float]]) -> list[str]:
    """Text per segment from timed cues: each cue goes to the segment it overlaps most ('' if none)."""
    texts: list[list[str]] = [[] for _ in spans_s]
    for cue in cues:
        overlaps = [min(e, cue["end_s"]) - max(s, cue["start_s"]) for s, e in spans_s]
        if overlaps and max(overlaps) > 0:
            texts[overlaps.index(max(overlaps))].append(cue["text"])
    return [join_units(t) for t in texts]


def split_units(text: str) -> list[str]:
    """Alignment units: whitespace words, with each CJK character its own unit (punctuation stays attached)."""
    units: list[str] = []
    for word in text.split():
        pieces = re.findall(f"{CJK_CHAR.pattern}[^\\w\\s]*|(?:(?!{CJK_CHAR.pattern})\\S)+", word)
        units.extend(pieces)
    return units


def align_text_to_segments(text: str, asr_words: list[list[str]], language: str | None) -> list[str]:
    """Split untimed ``text`` over segments by aligning its tokens to each segment's ASR words.

    ``asr_words[k]`` are the recognized words of segment ``k``. A token that
    aligns to no ASR word joins the segment of the nearest aligned token
    before it (after it at the start). Returns the text per segment.
    """
    n_seg = len(asr_words)
    if n_seg == 0:
        return []
    if n_seg == 1:
        return [text]
    hyp: list[tuple[str, int]] = []
    for k, words in enumerate(asr_words):
        for w in words:
            hyp.extend((tok, k) for tok in normalize_for_wer(w, language).split())
    units = split_units(text)
    ref_norm = [normalize_for_wer(u, language).split() for u in units]
    flat: list[str] = []
    owner: list[int] = []  # unit index of each flat token
    for i, toks in enumerate(ref_norm):
        flat.extend(toks)
        owner.extend([i] * len(toks))
    seg_of_unit: list[int | None] = [None] * len(units)
    matcher = difflib.SequenceMatcher(a=flat, b=[t for t, _ in hyp], autojunk=False)
    for tag, a0, a1, b0, b1 in matcher.get_opcodes():
        if tag == "equal" or (tag == "replace" and b1 > b0):
            for j in range(a0, a1):
                b = b0 + min(j - a0, b1 - b0 - 1)
                u = owner[j]
                if seg_of_unit[u] is None:
                    seg_of_unit[u] = hyp[b][1]
    known = [s for s in seg_of_unit if s is not None]
    last = known[0] if known else 0
    for i, s in enumerate(seg_of_unit):  # fill gaps forward; segments never go backwards
        seg_of_unit[i] = last = max(last, s) if s is not None else last
    per_seg: list[list[str]] = [[] for _ in range(n_seg)]
    for u, k in zip(units, seg_of_unit, strict=True):
        per_seg[k].append(u)
    return [join_units(p) for p in per_seg]
