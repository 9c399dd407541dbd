"""The learned warp-GAN renderer: keypoints vs the face model, shapes, overfitting, losses.

Everything runs on CPU with the tiny config; no weights are downloaded. The VGG loss is
tested with randomly initialised VGG-19 weights written to a temp file (the real ImageNet
weights are not available offline): that checks the loading and the skip path, not the
perceptual quality.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from blendshape_fit.face_model import load_face_model
from model.renderer.warpgan.keypoints import FaceKeypoints, codes_to_crop, select_indices
from model.renderer.warpgan.losses import (
    PatchDiscriminator,
    VGGPerceptual,
    discriminator_hinge_loss,
    l1_loss,
    load_vgg_perceptual,
    mouth_l1_loss,
    ms_ssim_loss,
)
from model.renderer.warpgan.model import WarpGanRenderer, count_parameters, paper_config, tiny_config
from model.renderer.warpgan.warping import make_grid
from tests.conftest import MEDIA

REGIONS = ("eyes", "brows", "mouth", "contour", "nose")


def frontal_codes(n: int = 1, tx: float = 0.5, ty: float = 0.5, tz: float = 2.6) -> np.ndarray:
    """Codes of a frontal neutral face centred at (tx, ty); tz = -ln(image heights per cm)."""
    codes = np.zeros((n, 61), np.float32)
    codes[:, 54], codes[:, 55], codes[:, 56] = tx, ty, tz
    return codes


@pytest.fixture(scope="module")
def face_crop() -> np.ndarray:
    """A real face photo as a 64 x 64 RGB crop."""
    img = cv2.cvtColor(cv2.imread(str(MEDIA / "sadtalker_people_0.png")), cv2.COLOR_BGR2RGB)
    return cv2.resize(img, (64, 64), interpolation=cv2.INTER_AREA)


def test_keypoints_match_blendshape_fit_projection() -> None:
    fm = load_face_model()
    kp = FaceKeypoints(REGIONS, face_model=fm)
    rng = np.random.default_rng(0)
    codes = frontal_codes(5)
    codes[:, :51] = rng.uniform(0, 1, (5, 51))
    codes[:, 51:54] = rng.uniform(-0.3, 0.3, (5, 3))
    codes[:, 57:] = rng.uniform(-0.3, 0.3, (5, 4))
    aspect = 16 / 9
    pts, _ = fm.project(codes.astype(np.float64), aspect=aspect)
    want = pts[:, select_indices(REGIONS)]
    got = kp(torch.from_numpy(codes), aspect).numpy()
    np.testing.assert_allclose((got[..., 0] + 1) / 2, want[..., 0], atol=1e-5)
    np.testing.assert_allclose((got[..., 1] + 1) / 2, want[..., 1], atol=1e-5)
    np.testing.assert_allclose(got[..., 2] / 2, want[..., 2], atol=1e-5)
    assert kp.num_keypoints == len(set(select_indices(REGIONS))) >= 40
    with pytest.raises(ValueError, match="unknown keypoint regions"):
        select_indices(("ears",))


def test_codes_to_crop_lands_on_the_same_pixels() -> None:
    fm = load_face_model()
    w, h = 1280, 720
    codes = frontal_codes(1, tx=0.6, ty=0.45, tz=2.2)
    codes[0, 52] = 0.2
    box = np.array([600.0, 150.0, 1000.0, 550.0])  # 400 px square
    full, _ = fm.project(codes.astype(np.float64), aspect=w / h)
    crop, _ = fm.project(codes_to_crop(codes, box, (w, h)).astype(np.float64), aspect=1.0)
    px_full = np.stack([full[0, :, 0] * w, full[0, :, 1] * h], axis=1)
    px_crop = crop[0, :, :2] * 400 + box[:2]
    np.testing.assert_allclose(px_crop, px_full, atol=1e-3)


def test_shapes_and_identity_flow() -> None:
    torch.manual_seed(0)
    model = WarpGanRenderer(tiny_config())
    src = torch.rand(2, 3, 64, 64)
    codes = torch.from_numpy(frontal_codes(2))
    out = model(src, codes, codes).detach()
    assert out.shape == (2, 3, 64, 64)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    parts = model.render_from_features(src, model.encode_source(src), codes, codes)
    assert parts["flow"].shape == (2, 16, 16, 2) and parts["occlusion"].shape == (2, 1, 16, 16)
    assert parts["kp_source"].shape == (2, model.keypoints.num_keypoints, 3)
    # untrained masks blend the motions evenly: equal codes give the identity flow exactly
    torch.testing.assert_close(parts["flow"], make_grid(16, 16, src.device).expand(2, -1, -1, -1), atol=1e-5,
                               rtol=0)
    moved = codes.clone()
    moved[:, 54] += 0.1  # head moved right by 10% of the width: the flow must look left of the pixel
    with torch.no_grad():
        flow = model.render_from_features(src, model.encode_source(src), codes, moved)["flow"]
    assert float((flow[..., 0] - make_grid(16, 16, src.device)[..., 0]).mean()) < -0.05
    with pytest.raises(ValueError, match="source_img must be"):
        model(torch.rand(1, 3, 32, 32), codes[:1], codes[:1])


def test_parameter_counts() -> None:
    tiny = count_parameters(WarpGanRenderer(tiny_config()))
    paper = count_parameters(WarpGanRenderer(paper_config()))
    print(f"warp-GAN parameters: tiny {tiny / 1e6:.3f} M, paper {paper / 1e6:.2f} M")
    assert 1e5 < tiny < 2e6
    assert 1e7 < paper < 1e8


def test_tiny_model_overfits_one_pair(face_crop: np.ndarray) -> None:
    """Source: the photo; driving: the photo shifted 4 px right with codes moved accordingly."""
    torch.manual_seed(0)
    model = WarpGanRenderer(tiny_config())
    src = torch.from_numpy(face_crop).permute(2, 0, 1)[None].float() / 255
    drv = torch.roll(src, shifts=4, dims=3)
    src_c = torch.from_numpy(frontal_codes(1, tz=2.0))
    drv_c = src_c.clone()
    drv_c[:, 54] += 4 / 64
    drv_c[:, 24] = 0.6  # jawOpen: a different expression too
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    t0 = time.perf_counter()
    for _ in range(60):
        out = model(src, src_c, drv_c)
        loss = l1_loss(out, drv) + ms_ssim_loss(out, drv, 3)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    print(f"overfit: loss {losses[0]:.3f} -> {losses[-1]:.3f} in 60 steps, {time.perf_counter() - t0:.1f} s")
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3])
    with torch.no_grad():
        assert float(l1_loss(model(src, src_c, drv_c), drv)) < 0.08


def test_mouth_loss_counts_only_the_mask() -> None:
    kp = FaceKeypoints(("mouth",))
    codes = torch.from_numpy(frontal_codes(1, tz=2.0))
    mask = kp.mouth_mask(codes, 64)
    assert mask.shape == (1, 1, 64, 64)
    frac = float(mask.mean())
    assert 0.005 < frac < 0.2, frac
    ys, xs = np.nonzero(mask[0, 0].numpy())
    assert ys.mean() > 32 and abs(xs.mean() - 31.5) < 3  # below the centre (mouth), centred horizontally
    target = torch.rand(1, 3, 64, 64)
    outside = target + (1 - mask) * 0.5  # wrong everywhere except the mouth
    assert float(mouth_l1_loss(outside, target, mask)) == pytest.approx(0.0, abs=1e-7)
    assert float(l1_loss(outside, target)) > 0.4
    inside = target + mask * 0.3
    assert float(mouth_l1_loss(inside, target, mask)) == pytest.approx(0.3, abs=1e-5)
    assert float(mouth_l1_loss(inside, target, torch.zeros_like(mask))) == 0.0


def test_structural_and_adversarial_losses() -> None:
    torch.manual_seed(0)
    img = torch.rand(2, 3, 64, 64)
    assert float(ms_ssim_loss(img, img, 3)) == pytest.approx(0.0, abs=1e-5)
    a = ms_ssim_loss((img + 0.05 * torch.randn_like(img)).clamp(0, 1), img, 3)
    b = ms_ssim_loss((img + 0.3 * torch.randn_like(img)).clamp(0, 1), img, 3)
    assert 0 < float(a) < float(b)
    disc = PatchDiscriminator(16, 2)
    logits = disc(img)
    assert logits.shape[:2] == (2, 1) and logits.shape[-1] > 1  # one logit per patch
    ones = torch.ones(2, 1, 4, 4)
    assert float(discriminator_hinge_loss(ones, -ones)) == 0.0
    assert float(discriminator_hinge_loss(-ones, ones)) == 4.0


def test_vgg_loss_skipped_without_weights_and_a_missing_path_is_an_error(tmp_path: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="omnitalker.renderer"):
        assert load_vgg_perceptual(None) is None
    assert "VGG perceptual loss skipped: loss.vgg_weights_path is not set" in caplog.text
    with pytest.raises(FileNotFoundError, match=r"loss.vgg_weights_path=.*vgg19.pth.* does not exist"):
        load_vgg_perceptual(str(tmp_path / "vgg19.pth"))


def test_vgg_loss_loads_local_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = VGGPerceptual()
    path = tmp_path / "vgg19.pth"
    torch.save({f"features.{k}": v for k, v in net.features.state_dict().items()}, path)
    loss = load_vgg_perceptual(str(path))
    assert loss is not None
    img = torch.rand(1, 3, 64, 64)
    assert float(loss(img, img)) == 0.0
    assert float(loss(img, torch.rand(1, 3, 64, 64))) > 0.0
    bad = tmp_path / "bad.pth"
    torch.save({"classifier.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="not a torchvision vgg19 state dict"):
        load_vgg_perceptual(str(bad))
