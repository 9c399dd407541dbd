"""training/checkpoint.py and training/ema.py: round trip, keep_last, atomicity, load_for_inference."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from core.overlay import overlay_config
from model.checkpoint import latest_checkpoint, list_checkpoints, load_for_inference, read_state
from model.dit.backbone import OmniTalkerDiT
from model.dit.config import ModelConfig, tiny_config
from model.dit.flow_matching import FlowMatching
from model.vocab import Vocab
from training.checkpoint import load_checkpoint, save_checkpoint
from training.config import OptimConfig
from training.ema import EMA
from training.loop import build_optimizer

TEXTS = ["Hi, you there.", "dui4， zhe4 jiu4 shi4 wo3"]
STATS = {"mel_mean": [0.5] * 100, "mel_std": [2.0] * 100, "codes_mean": [0.1] * 61, "codes_std": [0.3] * 61,
         "normalize": {"mel": False, "codes": True, "min_std": 1e-3}}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_parts(vocab: Vocab, seed: int = 0, ema_decay: float = 0.5
               ) -> tuple[ModelConfig, OmniTalkerDiT, EMA, torch.optim.Optimizer, object]:
    torch.manual_seed(seed)
    cfg = overlay_config(tiny_config(), {"dit": {"vocab_size": len(vocab)}})
    model = OmniTalkerDiT(cfg.dit)
    ema = EMA(model, decay=ema_decay)
    optimizer, scheduler = build_optimizer(model, OptimConfig(lr=1e-2, warmup_steps=2, max_steps=10))
    return cfg, model, ema, optimizer, scheduler


def train_steps(cfg: ModelConfig, model: OmniTalkerDiT, ema: EMA, optimizer, scheduler, steps: int) -> None:
    flow = FlowMatching(model, cfg.flow)
    g = torch.Generator().manual_seed(1)
    mel, codes = torch.randn(2, 24, 100, generator=g), torch.randn(2, 24, 61, generator=g)
    text = torch.randint(1, cfg.dit.vocab_size, (2, 24), generator=g)
    for step in range(1, steps + 1):
        loss, _ = flow.compute_loss(mel, codes, text, torch.tensor([24, 18]), generator=g)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        ema.update(model, step)


@pytest.fixture()
def vocab() -> Vocab:
    return Vocab.build(TEXTS)


def save(run_dir: Path, step: int, parts, vocab: Vocab, keep_last: int = 3) -> Path:
    cfg, model, ema, optimizer, scheduler = parts
    return save_checkpoint(run_dir, step, model, ema, optimizer, scheduler, {"train": {}, "model": cfg.to_dict()},
                           vocab, STATS, keep_last, extra={"epoch": 1, "batches_done": 3})


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_round_trip_restores_model_ema_optimizer_scheduler_and_rng(tmp_path: Path, vocab: Vocab) -> None:
    parts = make_parts(vocab)
    train_steps(*parts, steps=3)
    ckpt = save(tmp_path, 3, parts, vocab)
    after = (random.random(), np.random.rand(), torch.rand(3))  # draws right after the save

    fresh = make_parts(vocab, seed=123)
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    state = load_checkpoint(ckpt, fresh[1], fresh[2], fresh[3], fresh[4], restore_rng=True)
    assert (random.random(), np.random.rand()) == after[:2]
    assert torch.equal(torch.rand(3), after[2])
    assert state["step"] == 3 and state["extra"] == {"epoch": 1, "batches_done": 3}
    assert state["stats"] == STATS and state["config"]["model"]["dit"]["vocab_size"] == len(vocab)
    assert_same_state(parts[1].state_dict(), fresh[1].state_dict())
    assert_same_state(parts[2].module.state_dict(), fresh[2].module.state_dict())
    assert fresh[2].num_updates == 3
    opt_a, opt_b = parts[3].state_dict(), fresh[3].state_dict()
    for pid, st in opt_a["state"].items():
        assert torch.equal(st["exp_avg"], opt_b["state"][pid]["exp_avg"])
        assert torch.equal(st["exp_avg_sq"], opt_b["state"][pid]["exp_avg_sq"])
    assert fresh[4].state_dict()["last_epoch"] == 3
    assert fresh[3].param_groups[0]["lr"] == pytest.approx(parts[3].param_groups[0]["lr"])
    assert Vocab.load(ckpt / "vocab.txt") == vocab
    assert sorted(p.name for p in ckpt.iterdir()) == ["ema.safetensors", "model.safetensors", "optimizer.pt",
                                                      "state.json", "vocab.txt"]


def test_keep_last_atomic_names_and_latest(tmp_path: Path, vocab: Vocab) -> None:
    parts = make_parts(vocab)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / ".tmp-step_00000009-1").mkdir()  # a crashed writer's leftover
    (tmp_path / "checkpoints" / "step_00000099").mkdir()  # incomplete: no state.json, never "latest"
    for step in (1, 2, 3, 4):
        save(tmp_path, step, parts, vocab, keep_last=2)
    names = [p.name for p in list_checkpoints(tmp_path)]
    assert names == ["step_00000003", "step_00000004"]
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoints" / "step_00000004"
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))
    assert Vocab.load(tmp_path / "vocab.txt") == vocab
    save(tmp_path, 4, parts, vocab, keep_last=2)  # re-saving the same step replaces it
    assert read_state(latest_checkpoint(tmp_path))["step"] == 4
    assert latest_checkpoint(tmp_path / "nothing") is None


def test_load_for_inference_returns_ema_weights_in_eval_mode(tmp_path: Path, vocab: Vocab) -> None:
    parts = make_parts(vocab, ema_decay=0.9)
    train_steps(*parts, steps=3)
    model, ema = parts[1], parts[2]
    differs = [not torch.equal(a, b) for a, b in zip(model.state_dict().values(), ema.module.state_dict().values(), strict=True)]
    assert any(differs), "the EMA should lag the weights after 3 steps with decay 0.9"
    ckpt = save(tmp_path, 3, parts, vocab)
    for where in (tmp_path, ckpt):
        loaded, cfg, vocab2, stats = load_for_inference(where)
        assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
        assert_same_state(loaded.state_dict(), ema.module.state_dict())
        assert cfg.dit == parts[0].dit and vocab2 == vocab and stats == STATS


def test_load_for_inference_without_checkpoint_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_for_inference(tmp_path)
