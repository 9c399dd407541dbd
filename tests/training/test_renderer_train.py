"""Renderer training data and launcher on a real shard curated from one shared talking video.

The shard is made once per module by the curation pipeline itself (serial executor) from
``videoretalking_face2.mp4`` (one ~4.8 s clip with codes and a 30 fps face-box track), so the
data module reads exactly what curation writes. Nothing is mocked.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from launchers.train_renderer import main
from shards.reader import ShardError
from shards.schema import SchemaVersionError
from tests.conftest import MEDIA, REPO
from training.renderer_data import RendererDataConfig, build_renderer_index, make_pair_loader
from training.renderer_loop import load_renderer_config

TINY = str(REPO / "configs" / "renderer_tiny.yaml")
FAST = ["--set", "data.pairs_per_clip=64", "--set", "data.decode_max_side_px=320", "--set", "logging.progress=false"]


@pytest.fixture(scope="module")
def curated_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``OUT/shards`` of the curation of videoretalking_face2.mp4 alone."""
    from pipeline.config import load_config
    from pipeline.run import curate

    out = tmp_path_factory.mktemp("renderer_curated") / "out"
    curate(str(MEDIA / "videoretalking_face2.mp4"), str(out), load_config(REPO / "configs" / "curate.yaml"),
           executor="serial", show_progress=False)
    return out / "shards"


def test_pairs_from_the_shard(curated_shards: Path) -> None:
    from model.renderer.warpgan.keypoints import FaceKeypoints

    clips = build_renderer_index(curated_shards)
    assert len(clips) == 1 and clips[0].source_path.endswith("videoretalking_face2.mp4")
    cfg = RendererDataConfig(batch_size=4, frames_per_clip=6, pairs_per_clip=8, decode_max_side_px=320)
    batch = next(iter(make_pair_loader(clips, cfg, 64)))
    assert batch["source"].shape == (4, 3, 64, 64) and batch["driving_codes"].shape == (4, 61)
    assert float(batch["source"].std()) > 0.05  # real pixels, not padding
    assert not torch.equal(batch["source_codes"], batch["driving_codes"])  # distinct frames
    # the codes were moved into the crop: the face's keypoints lie inside it, around the centre
    kp = FaceKeypoints(("eyes", "mouth", "contour"))(batch["driving_codes"])
    assert float(kp[..., :2].abs().max()) < 0.95
    assert abs(float(kp[..., 0].mean())) < 0.2


def test_old_schema_and_missing_face_boxes_are_clear_errors(curated_shards: Path, tmp_path: Path) -> None:
    src = next(curated_shards.glob("part-*.parquet"))
    table = pq.read_table(src)
    meta = dict(table.schema.metadata)
    old = tmp_path / "old"
    old.mkdir()
    meta_v2 = {**meta, b"omnitalker.schema_version": b"2"}
    pq.write_table(table.replace_schema_metadata(meta_v2), old / "part-0.parquet")
    with pytest.raises(SchemaVersionError, match="schema version 2"):
        build_renderer_index(old)
    nobox = tmp_path / "nobox"
    nobox.mkdir()
    pq.write_table(table.drop_columns(["face_boxes"]).replace_schema_metadata(meta), nobox / "part-0.parquet")
    with pytest.raises(ShardError, match="face_boxes"):
        build_renderer_index(nobox)


def test_launcher_trains_resumes_and_round_trips(curated_shards: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str],
                                                 caplog: pytest.LogCaptureFixture) -> None:
    from model.renderer.warpgan import load_learned_renderer

    run = tmp_path / "run"
    args = ["--shards", str(curated_shards), "--config", TINY, "--out", str(run), *FAST,
            "--set", "logging.ckpt_every_steps=2"]
    with caplog.at_level(logging.INFO, logger="omnitalker.renderer"):
        assert main([*args, "--max-steps", "3"]) == 0
    assert "VGG perceptual loss skipped" in caplog.text
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert ckpts == ["step_00000002", "step_00000003"]
    step3 = run / "checkpoints" / "step_00000003"
    assert {p.name for p in step3.iterdir()} == {"model.safetensors", "ema.safetensors", "disc.safetensors",
                                                 "optimizer.pt", "state.json"}
    ema_at_3 = load_file(str(step3 / "ema.safetensors"))

    assert main([*args, "--max-steps", "3"]) == 0  # already there
    assert "nothing to do" in capsys.readouterr().out

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="omnitalker.renderer"):
        assert main([*args, "--max-steps", "5"]) == 0
    assert "resuming from" in caplog.text and "step_00000003" in caplog.text
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000004", "step_00000005"]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    assert all(np.isfinite(r["loss"]) and np.isfinite(r["loss_mouth"]) for r in rows)
    state = json.loads((run / "checkpoints" / "step_00000005" / "state.json").read_text())
    assert state["step"] == 5 and state["kind"] == "warpgan" and state["config"]["model"]["image_size"] == 64
    # the resumed run continued from step 3's weights: its EMA moved on from them
    ema_at_5 = load_file(str(run / "checkpoints" / "step_00000005" / "ema.safetensors"))
    assert ema_at_3.keys() == ema_at_5.keys()
    assert any(not torch.equal(ema_at_3[k], ema_at_5[k]) for k in ema_at_3)

    # round trip: the inference loader gets exactly the saved EMA weights and renders frames
    renderer = load_learned_renderer(run)
    loaded = renderer.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in ema_at_5.items())
    ref = (np.random.default_rng(0).uniform(0, 255, (80, 80, 3))).astype(np.uint8)
    codes = np.zeros((3, 61))
    codes[:, 54:57] = (0.5, 0.5, 2.0)
    codes[:, 24] = (0.0, 0.5, 1.0)
    frames = list(renderer.render(ref, codes, ref_codes=codes[0]))
    assert len(frames) == 3 and frames[0].shape == (64, 64, 3) and frames[0].dtype == np.uint8


def test_config_files_load() -> None:
    tiny = load_renderer_config(TINY)
    paper = load_renderer_config(REPO / "configs" / "renderer_paper.yaml")
    assert tiny.model.image_size == 64 and paper.model.image_size == 512
    with pytest.raises(ValueError, match="unknown config key"):
        load_renderer_config(TINY, ["model.imagesize=32"])


def test_launcher_reports_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--shards", str(tmp_path / "none"), "--config", TINY, "--out", str(tmp_path / "run")]) == 2
    assert "no such shards folder" in capsys.readouterr().err
