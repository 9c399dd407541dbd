"""Learned ASD: Light-ASD architecture shapes, checkpoint loading, MFCC/crop inputs, and the stage
end-to-end on a real clip. The weights are random (a tiny config): no trained checkpoint ships with
the repo and none can be downloaded here, so these tests check plumbing, not accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.asd.light_asd import LightAsd, LightAsdConfig, infer_config, remap_state_dict
from stages.asd import AsdConfig, AsdStage
from stages.asd_learned import FACE_SIDE, compute_mfcc, crop_face, load_light_asd
from stages.models import ModelNotFound

TINY = LightAsdConfig(visual_channels=(4, 8, 16), audio_channels=(4, 8, 16))


def test_forward_shapes_one_logit_per_video_frame():
    torch.manual_seed(0)
    model = LightAsd(TINY).eval()
    t = 10
    with torch.inference_mode():
        out = model(torch.randn(2, 4 * t, 13), torch.rand(2, t, FACE_SIDE, FACE_SIDE) * 255)
    assert out.shape == (2, t) and torch.isfinite(out).all()


def authors_style_state(model: LightAsd) -> dict[str, torch.Tensor]:
    """The state dict under the authors' key names (model.* plus lossAV.FC / lossV.FC heads)."""
    state = {f"model.{k}": v for k, v in model.state_dict().items() if not k.startswith("head.")}
    state["lossAV.FC.weight"] = model.head.weight.detach().clone()
    state["lossAV.FC.bias"] = model.head.bias.detach().clone()
    state["lossV.FC.weight"] = torch.zeros(2, 16)
    return state


@pytest.fixture(scope="module")
def tiny_ckpts(tmp_path_factory):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    model = LightAsd(TINY).eval()
    d = tmp_path_factory.mktemp("ckpt")
    torch.save(authors_style_state(model), d / "tiny.model")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(d / "tiny.safetensors"))
    return model, d


@pytest.mark.parametrize("name", ["tiny.model", "tiny.safetensors"])
def test_checkpoint_loads_with_inferred_config(tiny_ckpts, name):
    ref, d = tiny_ckpts
    model, model_id = load_light_asd(str(d / name))
    assert model.cfg == TINY and model_id.startswith(f"light-asd:{name}@")
    x = (torch.randn(1, 24, 13), torch.rand(1, 6, FACE_SIDE, FACE_SIDE) * 255)
    with torch.inference_mode():
        assert torch.allclose(model(*x), ref(*x))


def test_missing_or_wrong_checkpoint_fails_clearly(tmp_path):
    with pytest.raises(ModelNotFound, match="learned_ckpt_path"):
        load_light_asd(None)
    with pytest.raises(ModelNotFound, match="does not exist"):
        load_light_asd(str(tmp_path / "nope.model"))
    torch.save({"foo": torch.zeros(1)}, tmp_path / "bad.model")
    with pytest.raises(ModelNotFound, match="not a Light-ASD"):
        load_light_asd(str(tmp_path / "bad.model"))


def test_remap_and_infer_config():
    state = remap_state_dict(authors_style_state(LightAsd(TINY)))
    assert "head.weight" in state and not any(k.startswith(("model.", "lossV")) for k in state)
    assert infer_config(state) == TINY


def test_mfcc_rate_and_tone_energy():
    t = np.arange(32000) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    mfcc = compute_mfcc(tone)
    assert mfcc.shape == (199, 13)  # 100 Hz, 25 ms windows (python_speech_features framing)
    quiet = compute_mfcc(tone * 0.01)
    assert mfcc[:, 0].mean() - quiet[:, 0].mean() == pytest.approx(2 * np.log(100), abs=0.01)  # c0 = log energy


def test_crop_centres_the_face_box():
    img = np.zeros((400, 400, 3), np.uint8)
    img[150:250, 150:250] = 255  # a bright "face" box
    face = crop_face(img, np.array([150, 150, 250, 250], np.float32))
    assert face.shape == (FACE_SIDE, FACE_SIDE)
    rows = np.flatnonzero(face.mean(axis=1) > 128)
    cols = np.flatnonzero(face.mean(axis=0) > 128)
    assert abs(cols.mean() - FACE_SIDE / 2) < 4  # horizontally centred
    assert rows.mean() < FACE_SIDE / 2  # the crop reaches further below the box (chin, mouth) than above


def test_stage_runs_learned_scorer_on_real_clip(tiny_ckpts, media_dir):
    from blendshape_fit.landmarker import FaceLandmarkExtractor
    from stages.vad import SileroVad
    from tests.stages.asd_fixtures import load_file_item

    _, d = tiny_ckpts
    with FaceLandmarkExtractor(fps=25.0, max_side_px=640) as ex:
        item = load_file_item(media_dir / "grid_bbaf2n.mpg", 0.0, 2.0, ex, SileroVad())
    # random weights: any score is possible, so accept every segment and check the plumbing
    stage = AsdStage(cfg=AsdConfig(scorer="learned", learned_ckpt_path=str(d / "tiny.safetensors"),
                                   min_learned_score=-1e9, min_margin=0.0))
    seg = item.segments[0]
    stage.process([item])
    assert not item.rejects, item.rejects
    assert seg.asd_scorer.startswith("light-asd:tiny.safetensors@") and np.isfinite(seg.asd_score)
    assert item.provenance["models"]["asd"] == seg.asd_scorer
    assert seg.asd_lag_s * 25 == pytest.approx(round(seg.asd_lag_s * 25), abs=1e-6)  # whole 40 ms video frames


def test_crops_are_taken_at_the_models_25_hz_whatever_the_track_rate(media_dir):
    """Light-ASD pairs each face with 40 ms of MFCCs. A track sampled at 30 Hz (faces.sample_fps)
    used to give 30 crops per second against 25 frames' worth of audio: a 20 % drift. The crops of
    a 30 Hz track now match those of a 25 Hz track of the same clip, frame for frame."""
    from blendshape_fit.landmarker import FaceLandmarkExtractor
    from stages.asd import build_tracks_from_landmarks, slice_track
    from stages.asd_learned import MODEL_FPS, crop_track_faces

    path = media_dir / "videoretalking_face4.mp4"  # a 30 fps source
    crops = {}
    for fps in (25.0, 30.0):
        with FaceLandmarkExtractor(fps=fps, max_side_px=640) as ex:
            (track,) = build_tracks_from_landmarks(ex.extract(str(path), 0.0, 2.0))
        idx = slice_track(track, 0.0, 2.0)
        crops[fps], t0 = crop_track_faces(str(path), track, idx)
        assert t0 == pytest.approx(track.times_s[idx[0]])
        assert len(crops[fps]) == pytest.approx((track.times_s[idx[-1]] - t0) * MODEL_FPS + 1, abs=1)
    n = min(len(crops[25.0]), len(crops[30.0]))
    assert abs(len(crops[25.0]) - len(crops[30.0])) <= 1 and n >= 45
    diff = np.abs(crops[25.0][:n].astype(np.float32) - crops[30.0][:n].astype(np.float32)).mean()
    shifted = np.abs(crops[25.0][5:n].astype(np.float32) - crops[30.0][:n - 5].astype(np.float32)).mean()
    assert diff < 0.5 * shifted, (diff, shifted)  # the same instants, not frames 0.2 s apart
