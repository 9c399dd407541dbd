"""Generation end to end with a tiny random model saved by training.checkpoint.save_checkpoint.

References: a clip_id in synthetic shards (real speech mel, smooth synthetic codes) and a real
short video (videoretalking_face2.mp4: probe, audio, VAD, ASR, mel and MediaPipe codes
run in-process). The model is random, so only shapes, lengths, finiteness and the untouched
reference frames are checked, not how the output sounds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch

from inference.generate import (
    GenerateConfig,
    compute_gen_frames,
    generate,
    load_checkpoint_for_generation,
    main,
)
from inference.reference import ReferenceError, load_reference, load_reference_from_shards
from model.dit.backbone import OmniTalkerDiT
from model.dit.config import SamplerConfig, load_model_config
from model.normalizer import FeatureNormalizer
from shards.schema import SHARD_SCHEMA, SchemaVersionError, shard_metadata

REPO = Path(__file__).resolve().parents[2]
REF_TEXT = "Some call me nature, others call me mother nature."
TARGET_TEXT = "Hello there, how are you today?"
CLIP_ID = "synthetic-0000000000-ref"


def write_shard(path: Path, rows: list[dict], metadata: dict[bytes, bytes]) -> None:
    """A shard with SHARD_SCHEMA; columns not in ``rows`` are null."""
    cols = {f.name: [r.get(f.name) for r in rows] for f in SHARD_SCHEMA}
    table = pa.Table.from_pydict(cols, schema=SHARD_SCHEMA).replace_schema_metadata(metadata)
    pq.write_table(table, path, row_group_size=32)


def make_row(clip_id: str, mel: np.ndarray, codes: np.ndarray, text: str) -> dict:
    n = mel.shape[0]
    return {"clip_id": clip_id, "n_frames": n, "mel": mel.tolist(), "visual": codes.tolist(), "text": text,
            "text_model": text, "language": "en", "start_s": 0.0, "end_s": (n - 1) * 256 / 24000,
            "duration_s": (n - 1) * 256 / 24000, "dnsmos_ovrl": 3.5, "asd_score": 1.0, "fit_rmse": 0.01,
            "chars_per_s": 12.0}


@pytest.fixture(scope="module")
def shards(media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two clips of real speech mel (500 and 250 frames) with smooth synthetic codes, one shard part."""
    from stages.audio import AudioConfig, decode_mono, standardize
    from stages.mel import LogMel

    samples, rate, _ = decode_mono(str(media_dir / "f5tts_basic_ref_en.wav"))
    mel = LogMel()(standardize(samples, rate, AudioConfig())[0])
    t = np.arange(mel.shape[0])[:, None] / 93.75
    codes = (0.3 + 0.2 * np.sin(2 * np.pi * 0.5 * t + np.arange(61)[None, :])).astype(np.float32)
    out = tmp_path_factory.mktemp("gen_shards") / "shards"
    out.mkdir()
    rows = [make_row(CLIP_ID, mel, codes, REF_TEXT), make_row("synthetic-other", mel[:250], codes[:250], "Some call me")]
    write_shard(out / "part-000001.parquet", rows, shard_metadata("test"))
    return out


@pytest.fixture(scope="module")
def run_dir(shards: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real checkpoint of a tiny random model: vocab and stats from the shards, saved by save_checkpoint."""
    from model.vocab import Vocab
    from training.checkpoint import save_checkpoint
    from training.config import TrainConfig
    from training.data import DataConfig, build_index
    from training.ema import EMA
    from training.loop import compute_run_stats

    index = build_index(str(shards), DataConfig())
    vocab = Vocab.build(list(index.texts()) + [TARGET_TEXT])
    stats = compute_run_stats(index, TrainConfig().features)  # as the trainer saves them
    cfg = load_model_config(REPO / "configs" / "model_tiny.yaml", [f"dit.vocab_size={len(vocab)}"])
    torch.manual_seed(0)
    model = OmniTalkerDiT(cfg.dit)
    ema = EMA(model, decay=0.0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    run = tmp_path_factory.mktemp("gen_run")
    save_checkpoint(run, 1, model, ema, opt, None, {"train": TrainConfig().to_dict(), "model": cfg.to_dict()},
                    vocab, stats, keep_last=1)
    return run


def test_length_rule():
    assert compute_gen_frames(500, 50, 30, total_tokens=81) == 300  # round(500 * 30 / 50)
    assert compute_gen_frames(500, 50, 1, total_tokens=52) == round(0.5 * 93.75)  # min_gen_s clamp
    assert compute_gen_frames(500, 10, 1000, total_tokens=1011) == round(30 * 93.75)  # max_gen_s clamp
    assert compute_gen_frames(10, 50, 30, min_gen_s=0.0, total_tokens=81) == 71  # every token needs a frame
    assert compute_gen_frames(500, 50, 30, duration_s=2.0) == round(2.0 * 93.75)
    with pytest.raises(ValueError, match="no text tokens"):
        compute_gen_frames(500, 0, 30)


def test_normalizer_round_trip_follows_the_checkpoint_flags():
    rng = np.random.default_rng(0)
    stats = {"codes_mean": rng.normal(size=61).tolist(), "codes_std": (rng.random(61) + 0.1).tolist(),
             "normalize": {"mel": False, "codes": True, "min_std": 1e-3}}
    scaler = FeatureNormalizer(stats)
    mel = torch.from_numpy(rng.normal(size=(7, 100)).astype(np.float32))
    codes = torch.from_numpy(rng.normal(size=(7, 61)).astype(np.float32))
    nm, nc = scaler.normalize(mel, codes)
    assert torch.equal(nm, mel) and not torch.allclose(nc, codes)
    back_mel, back_codes = scaler.denormalize(nm, nc)
    torch.testing.assert_close(back_codes, codes, atol=1e-5, rtol=0)
    with pytest.raises(KeyError, match="mel_mean"):
        FeatureNormalizer({**stats, "normalize": {"mel": True, "codes": True}})


def test_reference_lookup_errors(shards: Path, tmp_path: Path):
    with pytest.raises(ReferenceError, match="not found"):
        load_reference_from_shards(str(shards), "no-such-clip")
    with pytest.raises(ReferenceError, match="--shards"):
        load_reference("no-such-clip", None)
    bad = tmp_path / "shards"
    bad.mkdir()
    meta = {**shard_metadata("test"), b"omnitalker.schema_version": b"1"}
    write_shard(bad / "part-000009.parquet", [make_row("x", np.zeros((3, 100), np.float32),
                                                       np.zeros((3, 61), np.float32), "x")], meta)
    with pytest.raises(SchemaVersionError, match="part-000009.parquet"):
        load_reference_from_shards(str(bad), "x")


def test_generate_keeps_reference_frames(run_dir: Path, shards: Path):
    model, model_cfg, vocab, scaler = load_checkpoint_for_generation(str(run_dir))
    assert set(scaler.parts) == {"codes"}  # TrainConfig defaults: codes normalized, mel not
    ref = load_reference_from_shards(str(shards), CLIP_ID)
    cfg = GenerateConfig(sampler=SamplerConfig(steps=2, text_scale=2.0, audio_scale=0.5, visual_scale=0.5, seed=3))
    res = generate(model, vocab, scaler, ref, TARGET_TEXT, cfg)
    n_gen = round(ref.n_frames * len(TARGET_TEXT) / len(REF_TEXT))  # Latin: one token per character
    assert res.mel.shape == (n_gen, 100) and res.codes.shape == (n_gen, 61)
    assert np.array_equal(res.full_mel[:ref.n_frames], ref.mel)
    assert np.array_equal(res.full_codes[:ref.n_frames], ref.codes)
    assert np.isfinite(res.full_mel).all() and np.isfinite(res.full_codes).all()
    assert res.text_ids == vocab.encode(f"{REF_TEXT} {TARGET_TEXT}")
    again = generate(model, vocab, scaler, ref, TARGET_TEXT, cfg)
    assert np.array_equal(again.mel, res.mel)  # seeded


def run_cli(capsys: pytest.CaptureFixture, argv: list[str]) -> dict:
    assert main(argv) == 0
    out = capsys.readouterr().out
    return json.loads(out[out.index("{"):])


def check_outputs(info: dict, n_gen: int) -> None:
    data = np.load(info["npz"])
    assert data["mel"].shape == (n_gen, 100) and data["codes"].shape == (n_gen, 61)
    assert np.isfinite(data["mel"]).all() and np.isfinite(data["codes"]).all()
    assert str(data["frame_rate"]) == "24000/256" and str(data["text"]) == TARGET_TEXT
    wav = sf.info(info["wav"])
    assert wav.samplerate == 24000 and wav.channels == 1 and wav.frames == (n_gen - 1) * 256


def test_cli_with_shard_clip(run_dir: Path, shards: Path, tmp_path: Path, capsys):
    info = run_cli(capsys, ["--ckpt", str(run_dir), "--ref", CLIP_ID, "--shards", str(shards), "--text",
                            TARGET_TEXT, "--out", str(tmp_path), "--steps", "2", "--vocoder", "griffin_lim"])
    assert info["n_ref"] == 500
    n_gen = round(500 * len(TARGET_TEXT) / len(REF_TEXT))
    assert info["n_gen"] == n_gen and info["vocoder"].startswith("griffin_lim")
    assert Path(info["npz"]).name == f"{CLIP_ID}_gen.npz"
    check_outputs(info, n_gen)


def test_cli_with_video_reference(run_dir: Path, media_dir: Path, tmp_path: Path, capsys):
    video = media_dir / "videoretalking_face2.mp4"
    info = run_cli(capsys, ["--ckpt", str(run_dir), "--ref", str(video), "--text", TARGET_TEXT, "--out",
                            str(tmp_path), "--steps", "2", "--max-ref-s", "4", "--name", "face2", "--render"])
    ref = info["reference"]
    assert ref["language"] == "en" and len(ref["text_model"]) > 10
    assert 0 < ref["end_s"] - ref["start_s"] <= 4.0 + 1e-6  # the --max-ref-s cap
    assert ref["n_frames"] == 1 + round((ref["end_s"] - ref["start_s"]) * 24000) // 256
    assert set(ref["provenance"]) >= {"asr", "mel", "visual"}
    _, _, vocab, _ = load_checkpoint_for_generation(str(run_dir))
    n_gen = compute_gen_frames(ref["n_frames"], len(vocab.encode(ref["text_model"])), len(vocab.encode(TARGET_TEXT)),
                               total_tokens=len(vocab.encode(f"{ref['text_model']} {TARGET_TEXT}")))
    assert info["n_gen"] == n_gen == round(ref["n_frames"] * len(TARGET_TEXT) / len(ref["text_model"]))
    check_outputs(info, n_gen)
    # --render: text in, talking video out (baseline renderer), as long as the generated codes.
    import av

    with av.open(info["render"]["out"]) as mp4:
        assert mp4.streams.video and mp4.streams.audio
        n_video = sum(1 for _ in mp4.decode(video=0))
    assert n_video == info["render"]["frames"] == pytest.approx(n_gen / 93.75 * 25, abs=1)


def test_cli_audio_driven_generates_codes_for_the_given_speech(run_dir: Path, shards: Path, media_dir: Path,
                                                               tmp_path: Path, capsys):
    """StyleTalker's audio-driven mode: same model and sampler, the audio kept, only codes generated."""
    from inference.generate import load_driving_audio

    speech = media_dir / "f5tts_basic_ref_en.wav"
    info = run_cli(capsys, ["--ckpt", str(run_dir), "--ref", CLIP_ID, "--shards", str(shards), "--audio", str(speech),
                            "--out", str(tmp_path), "--steps", "2", "--name", "driven"])
    audio, mel = load_driving_audio(str(speech))
    assert info["mode"] == "audio-driven" and info["n_gen"] == len(mel) == 1 + len(audio) // 256
    with np.load(info["npz"]) as z:
        assert np.array_equal(z["mel"], mel)  # the given speech, untouched
        assert z["codes"].shape == (len(mel), 61) and np.isfinite(z["codes"]).all()
    written, sr = sf.read(info["wav"], dtype="float32")
    assert sr == 24000 and np.allclose(written, audio, atol=1 / 32768)
