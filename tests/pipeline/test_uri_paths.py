"""Inputs and outputs given as URIs go through pyarrow's filesystem layer (file:// here; s3:// and gs:// alike)."""

from __future__ import annotations

import pyarrow.fs as pafs

from core.media_io import open_binary, resolve
from pipeline.config import load_config
from pipeline.inputs import list_inputs
from pipeline.run import curate
from pipeline.storage import OutputStore


def test_resolve_uses_the_uri_filesystem(tmp_path):
    fs, inner = resolve(f"file://{tmp_path}")
    assert isinstance(fs, pafs.LocalFileSystem) and inner == str(tmp_path)


def test_curate_from_and_to_uris(media_dir, tmp_path):
    src = f"file://{media_dir}/videoretalking_face2.mp4"  # every stage, faces and visual included
    assert [f.path for f in list_inputs(src)] == [src]
    with open_binary(src) as fh:  # a pyarrow stream, as PyAV gets it for remote files
        assert fh.read(8)[4:] == b"ftyp"
    out = f"file://{tmp_path}/out"
    manifest = curate(src, out, load_config(None), executor="serial", show_progress=False)
    assert manifest["inputs"] == 1 and manifest["clips"] >= 1
    shards = OutputStore(out).read_table("shards")
    assert shards.num_rows == manifest["clips"]
    assert set(shards.column("source_path").to_pylist()) == {src}
    again = curate(src, out, load_config(None), executor="serial", show_progress=False)
    assert again["clips"] == manifest["clips"] and again["runs"][-1]["new_files"] == 0
