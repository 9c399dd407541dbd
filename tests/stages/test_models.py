"""Packaged model files: found on disk, verified by sha256, clear errors otherwise."""

from __future__ import annotations

import dataclasses

import pytest

from stages.dnsmos import DNSMOS_P808, DNSMOS_P835
from stages.models import ModelNotFound, PackagedModel, locate_packaged_model
from stages.vad import SILERO_ONNX


@pytest.mark.parametrize("model", [SILERO_ONNX, DNSMOS_P835, DNSMOS_P808])
def test_pinned_files_verify(model):
    assert locate_packaged_model(model).is_file()


def test_checksum_mismatch_names_the_fix():
    bad = dataclasses.replace(SILERO_ONNX, sha256="0" * 64)
    with pytest.raises(ModelNotFound, match=r"pip install --force-reinstall silero-vad==6\.2\.3.*vad\.model_path"):
        locate_packaged_model(bad)


def test_missing_package_names_the_install():
    ghost = PackagedModel("no-such-dist-omnitalker", "1.0", "x/model.onnx", "0" * 64, "x.model_path")
    with pytest.raises(ModelNotFound, match=r"pip install no-such-dist-omnitalker==1\.0"):
        locate_packaged_model(ghost)


def test_override_path_must_exist(tmp_path):
    with pytest.raises(ModelNotFound, match="vad.model_path"):
        locate_packaged_model(SILERO_ONNX, str(tmp_path / "nope.onnx"))
    copy = tmp_path / "mine.onnx"
    copy.write_bytes(b"x")
    assert locate_packaged_model(SILERO_ONNX, str(copy)) == copy
