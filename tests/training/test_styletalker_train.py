"""train-styletalker on synthetic shards: the loss falls, the KL stays open, the run resumes, the YAML configs
load, and ``omnitalker generate --model styletalker`` writes the DiT path's npz for a real wav."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from inference.generate import load_driving_audio
from inference.generate import main as generate_main
from launchers.train_styletalker import main
from model.checkpoint import read_state
from model.styletalker.io import load_styletalker
from shards.codes import CODE_DIM, CODE_NAMES, POSE_SLICE, mirror_codes
from tests.training.shard_fixtures import clip_id_of, write_shard_set
from training.styletalker_data import (
    StyleTalkerDataConfig,
    clip_stats,
    load_motion_clips,
    sample_motion_batch,
)
from training.styletalker_loop import StyleTalkerTrainConfig, load_styletalker_config
from training.styletalker_val import heldout_score, measure_heldout, pose_r

pytestmark = pytest.mark.usefixtures("one_torch_thread")
REPO = Path(__file__).resolve().parents[2]
TINY = str(REPO / "configs" / "styletalker_tiny.yaml")


@pytest.fixture(scope="module")
def st_shards(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("styletalker") / "shards"
    write_shard_set(out, n_files=1, clips_per_file=8, min_frames=200, max_frames=400)
    return out


@pytest.fixture(scope="module")
def st_run(st_shards, tmp_path_factory) -> Path:
    """A tiny run trained 100 steps through the CLI in two invocations (60, then resumed to 100)."""
    run = tmp_path_factory.mktemp("st_run") / "run"
    args = ["--shards", str(st_shards), "--config", TINY, "--out", str(run), "--set", "logging.ckpt_every_steps=20"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module-scoped: set up before the function-scoped one_torch_thread
    try:
        assert main([*args, "--max-steps", "60"]) == 0
        assert main([*args, "--max-steps", "100"]) == 0
    finally:
        torch.set_num_threads(threads)
    return run


def test_configs_load():
    assert load_styletalker_config(REPO / "configs" / "styletalker_paper.yaml") == StyleTalkerTrainConfig()
    tiny = load_styletalker_config(TINY)
    assert tiny.model.hidden < StyleTalkerTrainConfig().model.hidden and tiny.data.window_frames >= 40
    with pytest.raises(ValueError, match="unknown config key"):
        load_styletalker_config(TINY, ["model.latentdim=3"])


def test_batches_take_reference_elsewhere_in_the_same_clip(st_shards):
    cfg = StyleTalkerDataConfig(batch_size=16, window_frames=80, ref_frames=48)
    clips, held = load_motion_clips(str(st_shards), cfg)
    assert len(clips) == 8 and not held
    b = sample_motion_batch(clips, cfg, np.random.default_rng(0))
    assert b["mel"].shape == (16, 80, 100) and b["codes"].shape == (16, 80, CODE_DIM) and b["ref"].shape == (16, 48, CODE_DIM)
    mirrored = b["mirrored"].numpy()
    assert 0 < mirrored.sum() < 16  # mirror_prob 0.5 by default
    for i in range(16):
        c = clips[int(b["clip"][i])]
        p, q = int(b["pos"][i]), int(b["ref_pos"][i])
        look = mirror_codes if mirrored[i] else np.asarray  # a mirrored window's reference is mirrored too
        np.testing.assert_array_equal(b["codes"][i].numpy(), look(c.codes[p:p + 80]))
        np.testing.assert_array_equal(b["ref"][i].numpy(), look(c.codes[q:q + 48]))
        np.testing.assert_array_equal(b["mel"][i].numpy(), c.mel[p:p + 80])  # the audio is not mirrored
        assert q + 48 <= p or q >= p + 80  # clips of >= 200 frames always have room elsewhere
    off = sample_motion_batch(clips, replace(cfg, mirror_prob=0.0), np.random.default_rng(0))
    assert not off["mirrored"].any()
    stats, stats_m = clip_stats(clips), clip_stats(clips, 0.5)
    yaw = CODE_NAMES.index("yaw")
    assert abs(stats_m["code_mean"][yaw]) < 1e-6 < abs(stats["code_mean"][yaw])  # mirrored yaws cancel


def test_training_falls_resumes_and_keeps_kl_open(st_run, st_shards, capsys):
    rows = [json.loads(line) for line in (st_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(10, 101, 10))  # resumed at 60, not restarted
    assert {"elbo", "recon", "kl", "sync", "loss"} <= set(rows[0])
    assert rows[-1]["elbo"] < 0.5 * rows[0]["elbo"], (rows[0]["elbo"], rows[-1]["elbo"])
    assert all(r["kl"] > 0.5 for r in rows[2:]), [r["kl"] for r in rows]  # nats per frame: not collapsed
    assert all(0.0 < r["sync"] < 2.0 for r in rows)
    assert (st_run / "checkpoints" / "step_00000100" / "ema.safetensors").is_file()
    assert main(["--shards", str(st_shards), "--config", TINY, "--out", str(st_run), "--max-steps", "100"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main(["--shards", str(st_shards), "--config", "nope.yaml", "--out", str(st_run)]) == 2


def test_drive_mode_follows_the_driver_pose(st_run, st_shards):
    model, model_id = load_styletalker(st_run)
    assert model_id.endswith("step_00000100")
    clips, _ = load_motion_clips(str(st_shards), StyleTalkerDataConfig(window_frames=80, ref_frames=48))
    clip, other = clips[0], clips[3]
    drive = clip.codes[:120]
    driven = model.sample(clip.mel[:120], other.codes[:48], 120, 1.0, torch.Generator().manual_seed(0), drive).numpy()
    free = model.sample(clip.mel[:120], other.codes[:48], 120, 1.0, torch.Generator().manual_seed(0)).numpy()
    pose = drive[:, POSE_SLICE]
    err_drive = np.abs(driven[:, POSE_SLICE] - pose).mean()
    err_free = np.abs(free[:, POSE_SLICE] - pose).mean()
    assert err_drive < 0.5 * err_free and err_drive < 0.5 * pose.std(), (err_drive, err_free, pose.std())


def test_generate_cli_styletalker(st_run, st_shards, media_dir, tmp_path, capsys):
    wav = media_dir / "f5tts_basic_ref_en.wav"
    _, mel = load_driving_audio(str(wav))
    base = ["--model", "styletalker", "--ckpt", str(st_run), "--ref", clip_id_of(1), "--shards", str(st_shards),
            "--audio", str(wav), "--out", str(tmp_path)]

    def gen(*extra: str) -> tuple[dict, np.ndarray]:
        assert generate_main([*base, *extra]) == 0
        info = json.loads(capsys.readouterr().out)
        with np.load(info["npz"]) as z:
            assert z["mel"].shape == (mel.shape[0], 100) and str(z["frame_rate"]) == "24000/256"
            return info, z["codes"]

    info, a = gen("--seed", "3", "--name", "a")
    assert a.shape == (mel.shape[0], CODE_DIM) and np.isfinite(a).all()
    assert info["model"] == "styletalker" and Path(info["wav"]).is_file()
    _, b = gen("--seed", "3", "--name", "b")
    _, c = gen("--seed", "4", "--name", "c")
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-4
    info, d = gen("--drive", clip_id_of(2), "--name", "d")
    assert info["styletalker"]["motion"] == "drive" and d.shape == a.shape
    with pytest.raises(SystemExit, match="needs --audio"):
        generate_main([*base[:8], "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="no checkpoint"):
        generate_main([*base[:2], "--ckpt", str(tmp_path / "none"), *base[4:]])


@pytest.mark.slow
def test_ray_train_two_cpu_workers(st_shards, tmp_path):
    """DDP through Ray Train (2 CPU workers): both ranks step, rank 0 writes the checkpoint."""
    ray = pytest.importorskip("ray")
    run = tmp_path / "run"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert main(["--shards", str(st_shards), "--config", TINY, "--out", str(run), "--max-steps", "4",
                     "--num-workers", "2", "--set", "logging.log_every_steps=2", "--set", "logging.ckpt_every_steps=4",
                     "--set", "torch_threads=1"]) == 0
    finally:
        ray.shutdown()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4] and all(r["world_size"] == 2 for r in rows)
    assert (run / "checkpoints" / "step_00000004" / "ema.safetensors").is_file()


def test_heldout_sources_are_measured_and_the_best_step_kept(st_shards, tmp_path):
    """``data.holdout`` clips are not trained on; every ``val_every_steps`` their drive-mode reconstruction is
    measured into metrics.jsonl, and RUN/best holds the EMA of the best measurement (it survives pruning)."""
    run = tmp_path / "run"
    args = ["--shards", str(st_shards), "--config", TINY, "--out", str(run), "--max-steps", "100",
            "--set", "val_every_steps=25", "--set", 'data.holdout=["src3.mp4"]', "--set", "logging.keep_last=1"]
    assert main(args) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in rows if "val_pitch_r" in r]
    assert [r["step"] for r in val] == [25, 50, 75, 100]
    assert all(r["val_clips"] == 1 and -1.0 <= r["val_yaw_r"] <= 1.0 for r in val)
    # the constant-prediction baseline depends only on the clip and the training statistics, not the step
    assert len({round(r["val_lip_base_mse"], 9) for r in val}) == 1 and val[0]["val_lip_base_mse"] > 0
    scores = [heldout_score(r) for r in val]
    best_row = val[int(np.argmax(scores))]
    assert max(scores) > scores[0] and max(scores) > 0.8, scores  # the synthetic poses are sinusoids: learnable
    state = read_state(run / "best")
    assert state["step"] == best_row["step"] and state["extra"]["holdout_sources"] == ["src3.mp4"]
    assert "src3.mp4" not in state["extra"]["train_sources"]
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step_00000100"]  # pruned; best/ is kept
    model, model_id = load_styletalker(run / "best")
    assert model_id == "run/best"
    held = load_motion_clips(str(st_shards), StyleTalkerDataConfig(window_frames=80, ref_frames=48,
                                                                   holdout=["src3.mp4"]))[1]
    again = measure_heldout(model, held, 48, 938)  # the saved weights are the ones that were measured
    assert again["val_pitch_r"] == pytest.approx(best_row["val_pitch_r"], abs=1e-5)
    assert again["val_yaw_r"] == pytest.approx(best_row["val_yaw_r"], abs=1e-5)


def test_pose_r_of_a_still_head_is_undefined():
    t = np.linspace(0, 6, 200)
    assert pose_r(np.sin(t), 2 * np.sin(t) + 1) == pytest.approx(1.0)
    assert pose_r(np.sin(t), -np.sin(t)) == pytest.approx(-1.0)
    assert np.isnan(pose_r(np.full(200, 0.1), np.sin(t)))  # a head that does not turn has no r
    assert np.isnan(pose_r(0.0005 * np.sin(t), np.sin(t)))  # nor one that turns less than MIN_POSE_STD_RAD
    assert np.isnan(heldout_score({"val_pitch_r": 0.9}))
