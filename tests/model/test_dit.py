"""The dual-branch DiT: shapes per fusion type, padding invariance, conditioning, configs, meta count.

No mocks: everything runs the real tiny model on CPU. The zero-initialised AdaLN-zero gates
and output heads are perturbed first (``randomize``), otherwise every block would be the
identity and the outputs zero, and the invariance tests could not fail.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from model.dit import (
    OmniTalkerDiT,
    build_on_meta,
    count_parameters,
    load_model_config,
    paper_config,
    tiny_config,
)
from model.dit.config import FUSION_KINDS, DiTConfig

REPO = Path(__file__).resolve().parents[2]
PAPER_PARAMS = 784_775_329  # bench/param_count.py on configs/model_paper.yaml


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def build_tiny(fusion: str = "mm_attention", seed: int = 0) -> OmniTalkerDiT:
    torch.manual_seed(seed)
    model = OmniTalkerDiT(dataclasses.replace(tiny_config().dit, fusion=fusion)).eval()
    randomize(model)
    return model


def randomize(model: torch.nn.Module, std: float = 0.05) -> None:
    """Perturb every parameter so zero-initialised gates and heads become active."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * std)


def make_inputs(b: int, n: int, vocab: int = 64, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "x_mel": torch.randn(b, n, 100, generator=g),
        "x_code": torch.randn(b, n, 61, generator=g),
        "cond_mel": torch.randn(b, n, 100, generator=g),
        "cond_code": torch.randn(b, n, 61, generator=g),
        "text": torch.randint(0, vocab, (b, n), generator=g),
        "t": torch.rand(b, generator=g),
    }


@pytest.mark.parametrize("fusion", FUSION_KINDS)
def test_forward_shapes_and_zero_padding(fusion: str) -> None:
    model = build_tiny(fusion)
    inputs = make_inputs(3, 40)
    mask = torch.arange(40)[None, :] < torch.tensor([40, 25, 7])[:, None]
    v_mel, v_code = model(**inputs, mask=mask)
    assert v_mel.shape == (3, 40, 100) and v_code.shape == (3, 40, 61)
    assert torch.isfinite(v_mel).all() and torch.isfinite(v_code).all()
    assert v_mel[~mask].abs().max() == 0 and v_code[~mask].abs().max() == 0
    assert v_mel[mask].abs().mean() > 1e-3  # the randomized model produces a real output


@pytest.mark.parametrize("fusion", FUSION_KINDS)
def test_padding_does_not_change_valid_outputs(fusion: str) -> None:
    model = build_tiny(fusion)
    n, extra = 33, 19
    short = make_inputs(1, n)
    v_mel, v_code = model(**short)
    # the same sample with large random values appended as padding, in a batch with a longer sample
    other = make_inputs(1, n + extra, seed=2)
    padded = {}
    for key, value in short.items():
        if key == "t":
            padded[key] = torch.cat([value, other[key]])
            continue
        junk = other[key][:, n:] * (1 if key == "text" else 10)
        padded[key] = torch.cat([torch.cat([value, junk], dim=1), other[key]])
    mask = torch.ones(2, n + extra, dtype=torch.bool)
    mask[0, n:] = False
    p_mel, p_code = model(**padded, mask=mask)
    torch.testing.assert_close(p_mel[0, :n], v_mel[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(p_code[0, :n], v_code[0], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("fusion", FUSION_KINDS)
def test_streams_are_fused(fusion: str) -> None:
    """Changing only the audio input changes the visual output (and vice versa) for every fusion type."""
    model = build_tiny(fusion)
    inputs = make_inputs(1, 24)
    _, v_code = model(**inputs)
    a_mel, _ = model(**inputs)
    changed = dict(inputs, x_mel=inputs["x_mel"] + 1.0)
    _, v_code2 = model(**changed)
    assert (v_code2 - v_code).abs().max() > 1e-4
    changed = dict(inputs, x_code=inputs["x_code"] + 1.0)
    a_mel2, _ = model(**changed)
    assert (a_mel2 - a_mel).abs().max() > 1e-4


def test_without_fusion_blocks_visual_ignores_audio() -> None:
    """Control for the test above: with no fusion blocks the visual branch never sees x_mel."""
    torch.manual_seed(0)
    model = OmniTalkerDiT(dataclasses.replace(tiny_config().dit, fusion_depth=0)).eval()
    randomize(model)
    inputs = make_inputs(1, 24)
    _, v_code = model(**inputs)
    _, v_code2 = model(**dict(inputs, x_mel=inputs["x_mel"] + 1.0))
    torch.testing.assert_close(v_code2, v_code)


def test_condition_drop_equals_zeroed_condition() -> None:
    model = build_tiny()
    inputs = make_inputs(2, 20)
    drop = torch.tensor([True, False])
    dropped = model(**inputs, drop_audio=drop, drop_visual=drop)
    zeroed_inputs = dict(inputs)
    zeroed_inputs["cond_mel"] = inputs["cond_mel"] * torch.tensor([0.0, 1.0])[:, None, None]
    zeroed_inputs["cond_code"] = inputs["cond_code"] * torch.tensor([0.0, 1.0])[:, None, None]
    zeroed = model(**zeroed_inputs)
    for a, b in zip(dropped, zeroed, strict=True):
        torch.testing.assert_close(a, b)
    # dropping the text changes only the dropped sample
    no_text = model(**inputs, drop_text=drop)
    full = model(**inputs)
    assert (no_text[0][0] - full[0][0]).abs().max() > 1e-4
    torch.testing.assert_close(no_text[0][1], full[0][1])


def test_zero_init_model_outputs_zero() -> None:
    """AdaLN-zero + zero heads: an untrained model predicts zero velocity (stable start)."""
    torch.manual_seed(0)
    model = OmniTalkerDiT(tiny_config().dit)
    v_mel, v_code = model(**make_inputs(2, 16))
    assert v_mel.abs().max() == 0 and v_code.abs().max() == 0


def test_text_ids_out_of_vocab_raise() -> None:
    model = build_tiny()
    inputs = make_inputs(1, 10)
    inputs["text"][0, 3] = 64
    with pytest.raises(ValueError, match="text ids"):
        model(**inputs)


def test_paper_parameter_count_on_meta() -> None:
    model = build_on_meta(paper_config().dit)
    assert all(p.is_meta for p in model.parameters())
    assert all(b.is_meta for b in model.buffers())
    assert count_parameters(model) == PAPER_PARAMS
    assert len(model.fusion_blocks) == 22 and len(model.audio_blocks) == 4 and len(model.visual_blocks) == 4


def test_ablation_fusions_build_on_meta() -> None:
    counts = {kind: count_parameters(build_on_meta(DiTConfig(fusion=kind))) for kind in FUSION_KINDS}
    assert counts["add"] == counts["mm_attention"]  # same per-modality weights, different wiring
    assert counts["linear"] > counts["mm_attention"] and counts["cross_attention"] > counts["linear"]


def test_yaml_configs_match_dataclasses() -> None:
    assert load_model_config(REPO / "configs" / "model_paper.yaml") == paper_config()
    assert load_model_config(REPO / "configs" / "model_tiny.yaml") == tiny_config()
    cfg = load_model_config(REPO / "configs" / "model_tiny.yaml", ["dit.fusion=add", "sampler.steps=8"])
    assert cfg.dit.fusion == "add" and cfg.sampler.steps == 8


def test_config_rejects_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValueError, match="unknown config key 'dit.depth'"):
        load_model_config(None, ["dit.depth=3"])
    with pytest.raises(ValueError, match="fusion"):
        load_model_config(None, ["dit.fusion=concat"])
    with pytest.raises(ValueError, match="divisible"):
        DiTConfig(dim=100, heads=16)
