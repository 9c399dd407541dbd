"""train-sync on synthetic shards whose mouth codes follow the audio: the loss falls, held-out sources separate
true from shifted and swapped audio, the run resumes, and the CLI writes the exported model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from launchers.train_sync import main
from model.sync.io import load_sync_model
from model.sync.model import LIP_INDEX
from model.sync.scoring import score_clip
from shards.codes import CODE_DIM
from shards.spec import N_MELS
from tests.training.shard_fixtures import make_clip, write_shard
from training.sync_data import load_sync_clips
from training.sync_loop import SyncTrainConfig, load_sync_config, measure_heldout, train_sync

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def talking_clip(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A syllable-like loudness envelope drives both the mel and the mouth codes (with noise)."""
    env = np.convolve(rng.random(n) ** 3, np.hanning(9), mode="same")
    profile = rng.uniform(0.5, 1.5, N_MELS)
    mel = (np.log(1e-3 + env[:, None] * profile[None, :]) + 0.2 * rng.standard_normal((n, N_MELS))).astype(np.float32)
    codes = (0.05 * rng.standard_normal((n, CODE_DIM))).astype(np.float32)
    gains = rng.uniform(0.3, 1.0, len(LIP_INDEX))
    codes[:, list(LIP_INDEX)] += env[:, None] * gains[None, :]
    return mel, codes


@pytest.fixture(scope="module")
def sync_shards(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    out = tmp_path_factory.mktemp("sync") / "shards"
    out.mkdir()
    rows = []
    for number in range(24):
        mel, codes = talking_clip(rng, int(rng.integers(150, 400)))
        rows.append(make_clip(number, len(mel), mel=mel, visual=codes, source_path=f"/media/spk{number % 8}.mp4"))
    write_shard(out / "part-0000.parquet", rows)
    return out


def tiny_config(**overrides) -> SyncTrainConfig:
    cfg = load_sync_config(None, ["model.channels=32", "model.window_frames=24", "data.batch_size=32",
                                  "data.negatives=4", "data.holdout=[spk6.mp4,spk7.mp4]", "optim.max_steps=120",
                                  "optim.warmup_steps=10", "optim.lr=0.003", "val_every_steps=40", "val_windows=200",
                                  "logging.log_every_steps=20", "logging.ckpt_every_steps=60",
                                  *[f"{k}={v}" for k, v in overrides.items()]])
    return cfg


def test_training_separates_held_out_sources(sync_shards, tmp_path):
    cfg = tiny_config()
    train, held = load_sync_clips(str(sync_shards), cfg.model.window_frames, cfg.data)
    assert {c.source for c in held} == {"spk6.mp4", "spk7.mp4"} and len(train) == 18
    untrained = measure_heldout(__import__("model.sync.model", fromlist=["SyncModel"]).SyncModel(cfg.model), held, cfg)
    result = train_sync(cfg, sync_shards, tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["loss"] < 0.6 * rows[0]["loss"], (rows[0]["loss"], rows[-1]["loss"])
    model, _ = load_sync_model(str(tmp_path / "run" / "sync.safetensors"))
    after = measure_heldout(model, held, cfg)
    assert after["val_auc_shifted"] > 0.9 and after["val_auc_swapped"] > 0.9, (untrained, after)
    assert after["val_auc_shifted"] > untrained["val_auc_shifted"] + 0.2
    # A held-out clip scored whole: the curve bottoms out at lag 0; its audio delayed by 10 frames reads +10.
    clip = held[0]
    codes = np.zeros((len(clip.mel), CODE_DIM), np.float32)
    codes[:, list(LIP_INDEX)] = clip.lips[:, :27]
    assert abs(score_clip(model, clip.mel, codes, max_lag_s=0.3).offset_s) < 1.5 / 93.75
    late = np.concatenate([clip.mel[:1].repeat(10, 0), clip.mel[:-10]])
    assert score_clip(model, late, codes, max_lag_s=0.3).offset_s == pytest.approx(10 / 93.75, abs=1.5 / 93.75)
    assert result.status == "trained" and result.step == 120


def test_cli_resumes_and_says_when_done(sync_shards, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["--shards", str(sync_shards), "--config", "configs/sync.yaml", "--out", str(run),
            "--set", "model.channels=16", "--set", "model.window_frames=24", "--set", "data.batch_size=16",
            "--set", "data.holdout=[spk7.mp4]", "--set", "val_every_steps=10", "--set", "logging.ckpt_every_steps=10"]
    assert main([*args, "--max-steps", "10"]) == 0
    assert main([*args, "--max-steps", "20"]) == 0
    out = capsys.readouterr().out
    assert "trained steps 0 -> 10" in out and "trained steps 10 -> 20" in out
    assert main([*args, "--max-steps", "20"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert (run / "sync.safetensors").is_file() and len(list((run / "checkpoints").iterdir())) >= 1
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 20
    assert main([*args[:3], "nope.yaml", *args[4:]]) == 2
    torch.set_num_threads(1)


def test_batches_hold_true_pairs_and_far_enough_negatives():
    from training.sync_data import SyncClip, SyncDataConfig, sample_batch, stretch

    n = 200
    ramp = np.arange(n, dtype=np.float32)
    clip = SyncClip("c", "a.mp4", np.repeat(ramp[:, None], N_MELS, 1), np.repeat(ramp[:, None], 54, 1))
    cfg = SyncDataConfig(batch_size=16, negatives=4, min_shift_frames=8, max_shift_frames=30)
    b = sample_batch([clip], 20, cfg, np.random.default_rng(0))
    assert b["lips"].shape == (16, 20, 54) and b["audio"].shape == (16, 5, 20, N_MELS)
    torch.testing.assert_close(b["audio"][:, 0, :, 0], b["lips"][:, :, 0])  # the positive is the same span
    starts = b["audio"][:, 1:, 0, 0] - b["lips"][:, None, 0, 0]
    assert ((starts.abs() >= 8) & (starts.abs() <= 30)).all()
    x = np.arange(10, dtype=np.float32)[:, None]
    np.testing.assert_allclose(stretch(x, 19)[:, 0], np.linspace(0, 9, 19), atol=1e-6)
    assert stretch(x, 10) is x
    fast = sample_batch([clip], 20, SyncDataConfig(batch_size=8, speed_range=0.2), np.random.default_rng(1))
    spans = fast["lips"][:, -1, 0] - fast["lips"][:, 0, 0]  # a ramp: the window's span in source frames
    assert spans.min() < 19 - 1 and spans.max() > 19 + 1 and torch.allclose(fast["audio"][:, 0, :, 0], fast["lips"][:, :, 0])


def test_mirrored_anchors_take_the_mirrored_lips_with_the_same_audio():
    from model.sync.model import LIP_NAMES, lip_features
    from shards.codes import CODE_DIM, EXPRESSION_NAMES, mirror_codes
    from training.sync_data import SyncClip, SyncDataConfig, sample_batch

    n = 120
    codes = np.zeros((n, CODE_DIM), np.float32)
    codes[:, EXPRESSION_NAMES.index("mouthSmileLeft")] = np.arange(n)  # a left-only smile, growing
    lips = lip_features(torch.from_numpy(codes)).numpy()
    mirrored = lip_features(torch.from_numpy(mirror_codes(codes))).numpy()
    mel = np.repeat(np.arange(n, dtype=np.float32)[:, None], N_MELS, 1)
    clip = SyncClip("c", "a.mp4", mel, lips, mirrored)
    b = sample_batch([clip], 20, SyncDataConfig(batch_size=32, negatives=2, mirror_prob=0.5), np.random.default_rng(0))
    left, right = LIP_NAMES.index("mouthSmileLeft"), LIP_NAMES.index("mouthSmileRight")
    flipped = b["lips"][:, :, right].abs().sum(1) > 0
    assert 0 < int(flipped.sum()) < 32  # about half
    for i in range(32):
        src = b["lips"][i, :, right if flipped[i] else left]
        torch.testing.assert_close(src, b["audio"][i, 0, :, 0])  # same span of the same audio either way
        assert float(b["lips"][i, :, left if flipped[i] else right].abs().sum()) == 0.0


def test_frequency_masks_flatten_one_band_of_the_positive_and_its_negatives():
    from model.sync.model import standardize_windows
    from training.sync_data import SyncClip, SyncDataConfig, sample_batch

    n = 200
    rng = np.random.default_rng(3)
    clip = SyncClip("c", "a.mp4", rng.normal(size=(n, N_MELS)).astype(np.float32),
                    rng.normal(size=(n, 54)).astype(np.float32))
    cfg = SyncDataConfig(batch_size=32, negatives=3, freq_mask_prob=0.5, freq_mask_min_bins=8, freq_mask_max_bins=20)
    masked = sample_batch([clip], 20, cfg, np.random.default_rng(0), np.random.default_rng(1))
    plain = sample_batch([clip], 20, SyncDataConfig(batch_size=32, negatives=3), np.random.default_rng(0))
    torch.testing.assert_close(masked["lips"], plain["lips"])  # the masks have their own generator: same windows
    flat = masked["audio"].std(dim=2) < 1e-6  # (B, 1 + K, C): bins constant over time
    n_masked = 0
    for b in range(32):
        bins = flat[b].all(dim=0)  # the same band in the positive and every negative
        if not flat[b].any():
            torch.testing.assert_close(masked["audio"][b], plain["audio"][b])
            continue
        n_masked += 1
        band = bins.nonzero()[:, 0]
        assert 8 <= len(band) <= 20 and int(band[-1] - band[0]) == len(band) - 1  # one contiguous band
        assert torch.equal(flat[b], bins[None].expand_as(flat[b]))
        keep = ~bins
        torch.testing.assert_close(masked["audio"][b][..., keep], plain["audio"][b][..., keep])
        # flattened to the window's mean: after the model's per-window standardization those bins are 0
        z = standardize_windows(masked["audio"][b].transpose(1, 2))
        assert float(z[:, band].abs().max()) < 1e-3 < float(z[:, keep].abs().max())
    assert 5 < n_masked < 27  # about half of 32


@pytest.mark.slow
def test_ray_train_two_cpu_workers(sync_shards, tmp_path):
    """DDP through Ray Train (2 CPU workers): both ranks step, rank 0 writes the checkpoint and the model."""
    ray = pytest.importorskip("ray")
    run = tmp_path / "run"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert main(["--shards", str(sync_shards), "--config", "configs/sync.yaml", "--out", str(run),
                     "--max-steps", "4", "--num-workers", "2", "--set", "model.channels=16",
                     "--set", "data.batch_size=8", "--set", "data.holdout=[]", "--set", "logging.log_every_steps=2",
                     "--set", "logging.ckpt_every_steps=4"]) == 0
    finally:
        ray.shutdown()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4] and all(r["world_size"] == 2 for r in rows)
    assert (run / "checkpoints" / "step_00000004" / "ema.safetensors").is_file() and (run / "sync.safetensors").is_file()
