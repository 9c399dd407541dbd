"""Training losses of the warp-GAN renderer and its PatchGAN discriminator.

Tensor legend: ``B`` batch, ``S`` image side, images ``(B, 3, S, S)`` in [0, 1], masks
``(B, 1, S, S)`` in {0, 1}, discriminator logits ``(B, 1, s, s)`` (one per patch).

* :func:`l1_loss` -- mean absolute error;
* :func:`ms_ssim_loss` -- multi-scale structural loss: ``mean_j (1 - SSIM_j)`` over ``scales``
  dyadic scales (Gaussian 11-tap window, sigma 1.5 px, as in Wang et al.);
* :class:`PatchDiscriminator` + :func:`discriminator_hinge_loss` / :func:`generator_hinge_loss`;
* :func:`mouth_l1_loss` -- L1 inside the mouth mask only (``FaceKeypoints.mouth_mask``);
* :class:`VGGPerceptual` -- L1 between VGG-19 features; built only when its weights are on disk
  (:func:`load_vgg_perceptual`), else skipped with a log line saying so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

log = logging.getLogger("omnitalker.renderer")

# torchvision's vgg19().features layout: conv channels, "M" = max-pool. Indices match its state dict.
VGG19_LAYOUT: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512)
VGG_TAPS = (3, 8, 17, 26)  # relu1_2, relu2_2, relu3_4, relu4_4 (indices in vgg19.features)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class LossConfig:
    """Weights of the renderer losses and the discriminator's shape."""

    l1_weight: float = 1.0  # L1 reconstruction
    ssim_weight: float = 1.0  # multi-scale structural loss (1 - SSIM, averaged over scales)
    ssim_scales: int = 3  # dyadic scales of the structural loss (use fewer for tiny images)
    gan_weight: float = 0.05  # generator's hinge loss against the PatchGAN
    mouth_weight: float = 2.0  # L1 inside the mouth mask
    mouth_margin_frac: float = 0.25  # mouth box grown by this fraction of its width/height per side
    vgg_weight: float = 1.0  # VGG perceptual loss (only when vgg_weights_path holds the weights)
    vgg_weights_path: str | None = None  # torchvision vgg19 state dict (.pth / .safetensors); None = skipped
    disc_channels: int = 64  # first-layer channels of the PatchGAN discriminator
    disc_layers: int = 3  # stride-2 layers of the PatchGAN (3: 70 x 70 px receptive field)
    gan_start_step: int = 0  # optimizer step from which the adversarial terms are on


def l1_loss(pred: Tensor, target: Tensor) -> Tensor:
    return (pred - target).abs().mean()


def mouth_l1_loss(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean |pred - target| over the pixels where ``mask`` is 1 (0 when the mask is empty)."""
    weight = mask.expand_as(pred)
    return ((pred - target).abs() * weight).sum() / weight.sum().clamp(min=1.0)


def gaussian_window(size: int = 11, sigma: float = 1.5, device: torch.device | None = None) -> Tensor:
    x = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-x * x / (2 * sigma * sigma))
    return g / g.sum()


def ssim(pred: Tensor, target: Tensor, window: Tensor) -> Tensor:
    """Mean SSIM of images in [0, 1] with a separable window (valid region only)."""
    c = pred.shape[1]
    k = window.numel()
    wx = window.view(1, 1, 1, k).expand(c, 1, 1, k)
    wy = window.view(1, 1, k, 1).expand(c, 1, k, 1)

    def blur(x: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(x, wx, groups=c), wy, groups=c)

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mu_p, mu_t = blur(pred), blur(target)
    s_pp = blur(pred * pred) - mu_p ** 2
    s_tt = blur(target * target) - mu_t ** 2
    s_pt = blur(pred * target) - mu_p * mu_t
    num = (2 * mu_p * mu_t + c1) * (2 * s_pt + c2)
    den = (mu_p ** 2 + mu_t ** 2 + c1) * (s_pp + s_tt + c2)
    return (num / den).mean()


def ms_ssim_loss(pred: Tensor, target: Tensor, scales: int = 3) -> Tensor:
    """``mean_j (1 - SSIM_j)`` at ``scales`` dyadic scales; the window shrinks to fit small images."""
    losses = []
    for j in range(scales):
        side = min(pred.shape[-2:])
        if j > 0:
            pred, target = F.avg_pool2d(pred, 2), F.avg_pool2d(target, 2)
            side //= 2
        size = min(11, side - (1 - side % 2))  # odd, no larger than the image
        if size < 3:
            break
        losses.append(1 - ssim(pred, target, gaussian_window(size, 1.5 * size / 11, pred.device)))
    return torch.stack(losses).mean()


class PatchDiscriminator(nn.Module):
    """PatchGAN (pix2pix): (B, 3, S, S) -> (B, 1, s, s) realness logits, one per overlapping patch."""

    def __init__(self, channels: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = channels
        for i in range(1, n_layers):
            c_next = min(channels * 2 ** i, 512)
            layers += [nn.Conv2d(c, c_next, 4, 2, 1), nn.GroupNorm(min(8, c_next), c_next), nn.LeakyReLU(0.2)]
            c = c_next
        c_next = min(c * 2, 512)
        layers += [nn.Conv2d(c, c_next, 4, 1, 1), nn.GroupNorm(min(8, c_next), c_next), nn.LeakyReLU(0.2),
                   nn.Conv2d(c_next, 1, 4, 1, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, image: Tensor) -> Tensor:
        return self.net(image * 2 - 1)


def discriminator_hinge_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def generator_hinge_loss(fake_logits: Tensor) -> Tensor:
    return -fake_logits.mean()


class VGGPerceptual(nn.Module):
    """L1 between VGG-19 features (relu1_2 .. relu4_4) of ImageNet-normalized images; frozen."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for v in VGG19_LAYOUT:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c_in, int(v), 3, 1, 1), nn.ReLU(inplace=False)]
                c_in = int(v)
        self.features = nn.Sequential(*layers[:VGG_TAPS[-1] + 1])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        x = torch.cat([pred, target]).sub(self.mean).div(self.std)
        total = x.new_zeros(())
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in VGG_TAPS:
                p, t = x.chunk(2)
                total = total + (p - t.detach()).abs().mean()
        return total / len(VGG_TAPS)


def load_vgg_perceptual(path: str | None) -> VGGPerceptual | None:
    """The VGG loss with torchvision ``vgg19`` weights from ``path`` (``features.N.*`` keys), or None.

    None (and an INFO log line saying the VGG perceptual loss is skipped) when ``path`` is unset:
    no download is ever attempted. A path that was given but does not exist, or a file that does
    not hold VGG-19 weights, is an error: a model the user configured never drops out quietly.
    """
    if not path:
        log.info("VGG perceptual loss skipped: loss.vgg_weights_path is not set "
                 "(set it to a local torchvision vgg19 state dict to enable it)")
        return None
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"loss.vgg_weights_path={path!r} does not exist: point it at a local torchvision "
                                "vgg19 state dict, or unset it (or set loss.vgg_weight: 0) to train without the "
                                "VGG perceptual loss")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file
        state = load_file(str(p))
    else:
        state = torch.load(p, map_location="cpu", weights_only=True)
    module = VGGPerceptual()
    wanted = module.features.state_dict().keys()
    mine = {k: state[f"features.{k}"] for k in wanted if f"features.{k}" in state}
    missing = sorted(set(wanted) - set(mine))
    if missing:
        raise ValueError(f"{p}: not a torchvision vgg19 state dict (missing features.{missing[0]} and "
                         f"{len(missing) - 1} more)")
    module.features.load_state_dict(mine)
    log.info("VGG perceptual loss on: weights %s", p)
    return module
