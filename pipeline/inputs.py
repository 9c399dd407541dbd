"""Finding the inputs: a directory, a glob, or a manifest file of paths.

Works on local paths and URIs alike (pyarrow filesystems). Returns
:class:`InputFile` records sorted by path so that runs are deterministic.
"""

from __future__ import annotations

import csv
import fnmatch
import glob as globlib
import json
import logging
import os
import posixpath
from dataclasses import dataclass

import pyarrow.fs as pafs

from core.media_io import is_uri, resolve
from stages.probe import AUDIO_EXTENSIONS, VIDEO_EXTENSIONS
from stages.transcripts import SIDECAR_FORMATS

log = logging.getLogger(__name__)

MEDIA_EXTENSIONS = VIDEO_EXTENSIONS + AUDIO_EXTENSIONS
MANIFEST_EXTENSIONS = (".txt", ".list", ".csv", ".tsv", ".jsonl")


@dataclass(frozen=True)
class InputFile:
    path: str  # local absolute path or URI
    size_bytes: int
    mtime: float  # seconds since the epoch


def _as_user_path(fs: pafs.FileSystem, inner: str, original: str) -> str:
    """Map a filesystem-internal path back to what the user would type (URI or local path)."""
    if not is_uri(original):
        return inner
    scheme = original.split("://", 1)[0]
    return f"{scheme}://{inner}"


def _info_to_input(info: pafs.FileInfo, original: str, fs: pafs.FileSystem) -> InputFile:
    mtime = info.mtime.timestamp() if info.mtime is not None else 0.0
    return InputFile(_as_user_path(fs, info.path, original), int(info.size or 0), mtime)


def is_media(path: str) -> bool:
    return path.lower().endswith(MEDIA_EXTENSIONS)


def is_sidecar(path: str, names: set[str]) -> bool:
    """A transcript next to a media file of the same stem (``a.mp4`` + ``a.srt``): read with it, not an input."""
    stem, ext = posixpath.splitext(path)
    return ext.lower().lstrip(".") in SIDECAR_FORMATS and any(n.startswith(stem + ".") and is_media(n) for n in names)


def list_directory(root: str) -> list[InputFile]:
    """Every file under ``root`` except hidden ones and sidecar transcripts. Files that are not media
    are inputs too: probe ledgers them as ``unsupported_extension``, so nothing is skipped unsaid."""
    fs, inner = resolve(root)
    if isinstance(fs, pafs.LocalFileSystem):
        infos = fs.get_file_info(walk_local_files(inner))
    else:  # object stores have no links to loop through
        infos = fs.get_file_info(pafs.FileSelector(inner, recursive=True))
    visible = [i for i in infos if not posixpath.basename(i.path).startswith(".")]
    # A dangling link is still an input the user put there: probe ledgers it as missing.
    dangling = [InputFile(_as_user_path(fs, i.path, root), -1, 0.0) for i in visible
                if i.type == pafs.FileType.NotFound]
    infos = [i for i in visible if i.type == pafs.FileType.File]
    names = {i.path for i in infos}
    return [_info_to_input(i, root, fs) for i in infos if not is_sidecar(i.path, names)] + dangling


def walk_local_files(root: str) -> list[str]:
    """Every file path under ``root``, following directory links but never into a directory already
    visited (a symlink loop, or two links to one folder): such a link is logged and not descended."""
    seen: set[tuple[int, int]] = set()
    files: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:
            log.warning("input listing: %s is a directory already listed (a link loop or a second link); "
                        "not listed again", dirpath)
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames.sort()
        files += [os.path.join(dirpath, f) for f in sorted(filenames)]
    return files


def list_glob(pattern: str) -> list[InputFile]:
    if not is_uri(pattern):
        out = []
        fs = pafs.LocalFileSystem()
        for p in globlib.glob(pattern, recursive=True):
            out.extend(stat_paths([p], fs))
        return out
    scheme, rest = pattern.split("://", 1)
    head = rest[: min(rest.find(c) for c in "*?[" if c in rest)]
    base = head.rsplit("/", 1)[0]
    fs, inner = resolve(f"{scheme}://{base}")
    infos = fs.get_file_info(pafs.FileSelector(inner, recursive=True))
    return [_info_to_input(i, pattern, fs) for i in infos
            if i.type == pafs.FileType.File and fnmatch.fnmatch(i.path, rest)]


def read_manifest_paths(manifest: str) -> list[str]:
    """Paths listed in a manifest: one per line (.txt/.list), a ``path`` column (.csv/.tsv), or .jsonl."""
    fs, inner = resolve(manifest)
    with fs.open_input_stream(inner) as fh:
        text = fh.read().decode("utf-8")
    lower = manifest.lower()
    if lower.endswith(".jsonl"):
        paths = [json.loads(line)["path"] for line in text.splitlines() if line.strip()]
    elif lower.endswith((".csv", ".tsv")):
        reader = csv.DictReader(text.splitlines(), delimiter="\t" if lower.endswith(".tsv") else ",")
        if not reader.fieldnames or "path" not in reader.fieldnames:
            raise ValueError(f"{manifest}: a .csv/.tsv manifest needs a 'path' column")
        paths = [row["path"] for row in reader if row.get("path")]
    else:
        paths = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    base = manifest.rsplit("/", 1)[0] if "/" in manifest else "."
    return [p if (is_uri(p) or posixpath.isabs(p)) else posixpath.join(base, p) for p in paths]


def stat_paths(paths: list[str], fs: pafs.FileSystem | None = None) -> list[InputFile]:
    """Stat explicit paths. Missing files are returned with size -1 so the ledger can record them."""
    out = []
    for p in paths:
        pfs, inner = (fs, posixpath.abspath(p)) if fs is not None and not is_uri(p) else resolve(p)
        info = pfs.get_file_info(inner)
        if info.type == pafs.FileType.File:
            out.append(_info_to_input(info, p, pfs))
        else:
            out.append(InputFile(p if is_uri(p) else inner, -1, 0.0))
    return out


def list_inputs(spec: str) -> list[InputFile]:
    """Resolve ``--input``: a directory, a glob, a manifest file, or one media file."""
    if any(c in spec for c in "*?["):
        found = list_glob(spec)
    else:
        fs, inner = resolve(spec)
        info = fs.get_file_info(inner)
        if info.type == pafs.FileType.Directory:
            found = list_directory(spec)
        elif info.type == pafs.FileType.File and spec.lower().endswith(MANIFEST_EXTENSIONS):
            found = stat_paths(read_manifest_paths(spec))
        elif info.type == pafs.FileType.File:
            found = [_info_to_input(info, spec, fs)]
        else:
            raise FileNotFoundError(f"--input {spec!r}: no such file, directory or glob match")
    unique = {f.path: f for f in found}
    if len(unique) < len(found):
        log.warning("input listing: %d path(s) listed more than once (a manifest with repeats?): each is one input",
                    len(found) - len(unique))
    return [unique[k] for k in sorted(unique)]
