"""Image augmentations on whole batches, on the device that holds them (GPU or CPU).

For CIFAR-sized data the classic per-image CPU pipeline is what limits training on a Colab GPU;
these functions apply the same augmentations to a ``(B, 3, H, W)`` batch at once, each sample
with its own random parameters drawn from an explicit generator (so a resumed run repeats them).

* ``random_crop``: pad and crop (the standard CIFAR augmentation), ``hflip``;
* ``random_resized_crop``: scale and aspect ratio per sample (Szegedy et al. 2015);
* ``three_augment``: one of grayscale, solarisation, Gaussian blur per sample (DeiT-III);
* ``color_jitter``: brightness, contrast, saturation (DeiT-III uses 0.3).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _uniform(shape, low, high, g, device):
    return torch.rand(shape, generator=g, device=device) * (high - low) + low


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 in [0, 255] to float in [0, 1]."""
    return images.float().div_(255) if images.dtype == torch.uint8 else images.float()


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    mean = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    std = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - mean) / std


def hflip(x: torch.Tensor, g: torch.Generator, p: float = 0.5) -> torch.Tensor:
    flip = torch.rand(x.shape[0], generator=g, device=x.device) < p
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def random_crop(x: torch.Tensor, g: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Zero-pad by ``padding`` and cut a window of the original size at a random place per sample."""
    B, C, H, W = x.shape
    padded = F.pad(x, (padding,) * 4)
    oy = torch.randint(0, 2 * padding + 1, (B,), generator=g, device=x.device)
    ox = torch.randint(0, 2 * padding + 1, (B,), generator=g, device=x.device)
    rows = (oy[:, None] + torch.arange(H, device=x.device))[:, :, None]  # (B, H, 1)
    cols = (ox[:, None] + torch.arange(W, device=x.device))[:, None, :]  # (B, 1, W)
    batch = torch.arange(B, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def random_resized_crop(x: torch.Tensor, g: torch.Generator, size: int, scale=(0.08, 1.0),
                        ratio=(3 / 4, 4 / 3)) -> torch.Tensor:
    """A random box per sample (area fraction in ``scale``, aspect in ``ratio``), resized to
    ``size x size`` bilinearly; boxes that do not fit are shrunk to fit."""
    B, _, H, W = x.shape
    area = _uniform(B, scale[0], scale[1], g, x.device)
    log_ratio = _uniform(B, math.log(ratio[0]), math.log(ratio[1]), g, x.device)
    aspect = log_ratio.exp()
    w = (area * aspect).sqrt().clamp(max=1.0)  # as fractions of the image
    h = (area / aspect).sqrt().clamp(max=1.0)
    cx = _uniform(B, 0, 1, g, x.device) * (1 - w) + w / 2
    cy = _uniform(B, 0, 1, g, x.device) * (1 - h) + h / 2
    theta = torch.zeros(B, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 2] = w, 2 * cx - 1
    theta[:, 1, 1], theta[:, 1, 2] = h, 2 * cy - 1
    grid = F.affine_grid(theta, (B, x.shape[1], size, size), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _grayscale(x):
    gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
    return gray.expand_as(x)


def _gaussian_blur(x, sigma):
    """Separable blur with a per-sample ``sigma`` (B,), kernel size 2 * ceil(3 * max sigma) + 1."""
    B, C, H, W = x.shape
    radius = max(1, math.ceil(3 * float(sigma.max())))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-(t[None, :] ** 2) / (2 * sigma[:, None] ** 2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(C, 0)  # (B*C, k)
    flat = x.reshape(1, B * C, H, W)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), kernel[:, None, None, :], groups=B * C)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), kernel[:, None, :, None], groups=B * C)
    return flat.reshape(B, C, H, W)


def three_augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """DeiT-III's 3-Augment: each sample gets one of grayscale, solarisation (threshold 0.5) or
    Gaussian blur (sigma in [0.1, 2]). ``x`` in [0, 1]."""
    choice = torch.randint(0, 3, (x.shape[0],), generator=g, device=x.device).view(-1, 1, 1, 1)
    sigma = _uniform(x.shape[0], 0.1, 2.0, g, x.device)
    solarized = torch.where(x >= 0.5, 1 - x, x)
    return torch.where(choice == 0, _grayscale(x), torch.where(choice == 1, solarized, _gaussian_blur(x, sigma)))


def color_jitter(x: torch.Tensor, g: torch.Generator, strength: float) -> torch.Tensor:
    """Brightness, contrast and saturation factors in ``[1 - strength, 1 + strength]`` per sample
    (applied in that order, as torchvision's ColorJitter without hue does by default)."""
    if strength <= 0:
        return x
    B = x.shape[0]
    factors = _uniform((3, B, 1, 1, 1), 1 - strength, 1 + strength, g, x.device)
    x = (x * factors[0]).clamp(0, 1)
    mean = _grayscale(x).mean(dim=(-3, -2, -1), keepdim=True)
    x = ((x - mean) * factors[1] + mean).clamp(0, 1)
    gray = _grayscale(x)
    return ((x - gray) * factors[2] + gray).clamp(0, 1)
