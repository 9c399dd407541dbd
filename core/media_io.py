"""Opening sources through pyarrow's filesystem layer.

Local paths, ``file://``, ``s3://``, ``gs://`` and every other URI that
``pyarrow.fs.FileSystem.from_uri`` knows go through the same code. Decoders
(PyAV, PySceneDetect's PyAV backend) receive a seekable binary stream, so no
stage needs a local copy of a remote file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

import pyarrow.fs as pafs

HASH_CHUNK_BYTES = 8 << 20


def is_uri(path: str) -> bool:
    return "://" in path


def resolve(path: str) -> tuple[pafs.FileSystem, str]:
    """Return ``(filesystem, path inside it)`` for a local path or a URI."""
    if is_uri(path):
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), os.path.abspath(path)


@contextmanager
def open_binary(path: str) -> Iterator[BinaryIO]:
    """A seekable binary stream of ``path``. Local files use the OS directly."""
    if not is_uri(path):
        with open(path, "rb") as fh:
            yield fh
        return
    fs, inner = resolve(path)
    with fs.open_input_file(inner) as fh:
        yield fh  # pyarrow NativeFile: read/seek/tell, as PyAV wants


def av_source(path: str) -> str | None:
    """The argument to hand PyAV directly, or None when a stream is needed."""
    return None if is_uri(path) else path


def file_info(path: str) -> tuple[int, float]:
    """Size in bytes and modification time (seconds since the epoch, 0 if unknown)."""
    fs, inner = resolve(path)
    info = fs.get_file_info(inner)
    if info.type != pafs.FileType.File:
        raise FileNotFoundError(path)
    mtime = info.mtime.timestamp() if info.mtime is not None else 0.0
    return int(info.size or 0), mtime


def sha256_of(path: str) -> str:
    """Hex sha256 of the file's bytes, streamed."""
    h = hashlib.sha256()
    with open_binary(path) as fh:
        while chunk := fh.read(HASH_CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()


def sha256_of_local(path: str) -> str:
    """Hex sha256 of a local file (used to verify model files)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()
