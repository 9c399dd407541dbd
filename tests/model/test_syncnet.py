"""SyncNet as published: the authors' state-dict layout loads, and Sync-C / Sync-D / offset follow their definition.

SyncNet's weights cannot be installed here, so a random state dict with the same keys stands in for
``syncnet_v2.model``: it exercises the loading and the metric code, not the published numbers.
"""

from __future__ import annotations

import pytest
import torch

from model.sync.syncnet import (
    SyncNet,
    SyncNetWeightsError,
    compute_sync_metric,
    load_syncnet,
    score_syncnet,
)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("syncnet") / "syncnet_v2.model"
    torch.save(SyncNet().state_dict(), path)  # what loadParameters in the authors' code reads
    return str(path)


def test_the_authors_layout_loads_and_runs(weights, one_torch_thread):
    model = load_syncnet(weights)
    crops = torch.randint(0, 255, (8, 224, 224, 3), dtype=torch.uint8)
    mfcc = torch.randn(8 * 4 + 4, 13)
    s = score_syncnet(model, crops, mfcc, vshift=2)
    assert -2 <= s.offset_frames <= 2 and s.conf >= 0 and s.min_dist > 0
    with torch.no_grad():
        assert model.forward_aud(torch.randn(2, 1, 13, 20)).shape == (2, 1024)


def test_wrong_files_say_what_they_are(tmp_path):
    with pytest.raises(SyncNetWeightsError, match="does not exist"):
        load_syncnet(tmp_path / "nope.model")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.model")
    with pytest.raises(SyncNetWeightsError, match="not SyncNet's weights"):
        load_syncnet(tmp_path / "other.model")


@pytest.mark.parametrize("late", [-3, 0, 4])
def test_metric_offset_convention(late):
    """Audio ``late`` frames behind the video: SyncNet says offset -late, the project says +late/25 s."""
    torch.manual_seed(1)
    lips = torch.randn(60, 16)
    audio = torch.roll(lips, late, dims=0)  # audio frame i + late carries video frame i's sound
    s = compute_sync_metric(lips, audio, vshift=6)
    assert s.offset_frames == -late and s.av_offset_s == pytest.approx(late / 25.0)
    assert s.conf > 1.0
