"""model/sync: shapes, the lag sign convention of the scoring, and weight files that round-trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.sync.io import SyncModelError, export_sync_weights, load_sync_model
from model.sync.model import LIP_INDEX, SyncModel, SyncModelConfig, lip_features
from model.sync.scoring import distance_curve, read_curve, score_clip
from shards.codes import CODE_DIM
from shards.spec import FRAME_RATE_HZ, N_MELS

TINY = SyncModelConfig(window_frames=16, channels=16, embed_dim=8)


def test_lip_features_are_mouth_and_jaw_codes_and_deltas():
    codes = torch.randn(2, 30, CODE_DIM)
    f = lip_features(codes)
    assert f.shape == (2, 30, 2 * len(LIP_INDEX)) == (2, 30, 54)
    torch.testing.assert_close(f[..., :27], codes[..., list(LIP_INDEX)])
    torch.testing.assert_close(f[:, 1:, 27:], codes[:, 1:, list(LIP_INDEX)] - codes[:, :-1, list(LIP_INDEX)])
    assert not f[:, 0, 27:].any()


def test_embeddings_are_unit_vectors_and_distance_in_0_2():
    torch.manual_seed(0)
    model = SyncModel(TINY).eval()
    mel, lips = torch.randn(5, 16, N_MELS), torch.randn(5, 16, 54)
    a, v = model.embed_audio(mel), model.embed_lips(lips)
    assert a.shape == v.shape == (5, 8)
    torch.testing.assert_close(a.norm(dim=-1), torch.ones(5))
    d = model.distance(mel, lips)
    assert ((d >= 0) & (d <= 2)).all()
    # Per-window standardization: a speaker's offset and scale do not change the embedding.
    torch.testing.assert_close(model.embed_lips(3 * lips + 7), v, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("true_lag", [-12, 0, 7])
def test_offset_sign_positive_means_audio_late(true_lag):
    """Lip window p matches audio window p + lag: the audio of a movement comes ``lag`` frames later."""
    rng = np.random.default_rng(0)
    audio = torch.nn.functional.normalize(torch.from_numpy(rng.standard_normal((300, 8))).float(), dim=-1)
    stride = 2
    starts = np.arange(0, 300 - 40, stride)
    lips = audio[torch.from_numpy(np.clip(starts + true_lag, 0, 299))]
    lags, dists = distance_curve(lips, audio, stride, max_lag=30)
    s = read_curve(lags, dists, near_lag=20)
    assert s.offset_s == pytest.approx(true_lag / FRAME_RATE_HZ)
    assert s.dist == pytest.approx(0.0, abs=1e-5) and s.conf > 0.5
    assert s.near_offset_s == pytest.approx(true_lag / FRAME_RATE_HZ)


def test_score_clip_refuses_a_clip_shorter_than_its_windows():
    model = SyncModel(TINY)
    with pytest.raises(ValueError, match="too short"):
        score_clip(model, np.zeros((20, N_MELS), np.float32), np.zeros((20, CODE_DIM), np.float32))
    s = score_clip(model, np.random.rand(120, N_MELS).astype(np.float32),
                   np.random.rand(120, CODE_DIM).astype(np.float32), max_lag_s=0.3)
    assert len(s.lags) == 2 * round(0.3 * FRAME_RATE_HZ) + 1 and np.isfinite(s.dist)


def test_weight_file_round_trip_and_errors(tmp_path):
    torch.manual_seed(1)
    model = SyncModel(TINY).eval()
    path = export_sync_weights(model, tmp_path / "w.safetensors", {"holdout_sources": ["a.mp4"]})
    loaded, model_id = load_sync_model(str(path))
    assert loaded.cfg == TINY and model_id.startswith("w@")
    x = torch.randn(3, 16, N_MELS)
    torch.testing.assert_close(loaded.embed_audio(x), model.embed_audio(x))
    with pytest.raises(SyncModelError, match="does not exist"):
        load_sync_model(str(tmp_path / "nope.safetensors"))
    (tmp_path / "bad.safetensors").write_bytes(path.read_bytes())
    from safetensors.torch import save_file
    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(SyncModelError, match="not a lip-sync weight file"):
        load_sync_model(str(tmp_path / "other.safetensors"))
