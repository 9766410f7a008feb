"""Batched augmentation on the training device: strong photometric views and CutMix.

Each sample draws its own parameters (UniMatch applies the same transforms per image in its loader).
Randomness comes from torch's global generator, which checkpoints save and resume restores.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from kornia.color import hsv_to_rgb, rgb_to_hsv

from semiseg.data.transforms import denormalize


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def _u(b: int, lo: float, hi: float, device) -> torch.Tensor:
    return torch.empty(b, 1, 1, 1, device=device).uniform_(lo, hi)


def color_jitter(x: torch.Tensor, brightness=0.5, contrast=0.5, saturation=0.5, hue=0.25) -> torch.Tensor:
    """x in [0, 1] (B, 3, H, W). Like torchvision's ColorJitter applied image by image (UniMatch's loader):
    each sample draws its own factors and its own order of the four ops."""
    b, dev = x.shape[0], x.device
    f_b, f_c, f_s = (_u(b, 1 - a, 1 + a, dev) for a in (brightness, contrast, saturation))
    f_h = _u(b, -hue, hue, dev)

    def apply(op: int, y: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        if op == 0:
            return y * f_b[i]
        if op == 1:
            mean = _gray(y).mean((2, 3), keepdim=True)
            return (y - mean) * f_c[i] + mean
        if op == 2:
            return (y - _gray(y)) * f_s[i] + _gray(y)
        return _hue_shift(y, f_h[i])

    order = torch.stack([torch.randperm(4) for _ in range(b)]).to(dev)  # (B, 4): each sample's own order
    x = x.clone()
    for r in range(4):
        for op in range(4):
            i = (order[:, r] == op).nonzero().squeeze(1)
            if len(i):
                x[i] = apply(op, x[i], i).clamp(0, 1)
    return x


def _hue_shift(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    hsv = rgb_to_hsv(x)  # hue in [0, 2*pi)
    h = torch.remainder(hsv[:, :1] + shift * 2 * math.pi, 2 * math.pi)
    return hsv_to_rgb(torch.cat([h, hsv[:, 1:]], 1))


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, max_sigma: float = 2.0) -> torch.Tensor:
    """Per-sample sigma (B,), separable kernel of fixed size covering 3 sigma of the largest sigma."""
    b, c, h, w = x.shape
    r = int(math.ceil(3 * max_sigma))
    t = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-(t[None] ** 2) / (2 * sigma[:, None].to(x.dtype) ** 2))
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (B*C, K)
    y = x.reshape(1, b * c, h, w)
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="reflect" if w > r else "replicate"), k[:, None, None, :], groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="reflect" if h > r else "replicate"), k[:, None, :, None], groups=b * c)
    return y.reshape(b, c, h, w)


def strong_photometric(x: torch.Tensor, mean: Sequence[float], std: Sequence[float], p_jitter=0.8, p_gray=0.2,
                       p_blur=0.5, jitter=(0.5, 0.5, 0.5, 0.25)) -> torch.Tensor:
    """UniMatch's strong view on a normalised batch: ColorJitter(0.5, 0.5, 0.5, 0.25) p 0.8, grayscale p 0.2,
    Gaussian blur sigma U[0.1, 2] p 0.5; returns a normalised batch. Other strengths via the arguments."""
    b = x.shape[0]
    with torch.autocast(x.device.type, enabled=False):
        y = denormalize(x.float(), mean, std)
        pick = lambda p: (torch.rand(b, 1, 1, 1, device=x.device) < p)  # noqa: E731
        y = torch.where(pick(p_jitter), color_jitter(y, *jitter), y)
        y = torch.where(pick(p_gray), _gray(y).expand_as(y), y)
        sigma = torch.empty(b, device=x.device).uniform_(0.1, 2.0)
        y = torch.where(pick(p_blur), gaussian_blur(y, sigma), y)
        m = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
        s = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
        return ((y - m) / s).to(x.dtype)


# SemiRES's strong view: ColorJitter(0.25, 0.25, 0.25, 0.25) with p 0.5, nothing else
SEMIRES_STRONG = dict(p_jitter=0.5, p_gray=0.0, p_blur=0.0, jitter=(0.25, 0.25, 0.25, 0.25))


def cutmix_box(b: int, h: int, w: int, device, p: float = 0.5, area=(0.02, 0.4), ratio=(0.3, 1 / 0.3)) -> torch.Tensor:
    """(B, H, W) bool boxes; each sample gets one with probability p (UniMatch's obtain_cutmix_box:
    area U[0.02, 0.4] of the crop, aspect U[0.3, 1/0.3], rejection-sampled until it fits)."""
    box = torch.zeros(b, h, w, dtype=torch.bool, device=device)
    for i in range(b):
        if torch.rand(1).item() > p:
            continue
        while True:
            size = torch.empty(1).uniform_(*area).item() * h * w
            r = torch.empty(1).uniform_(*ratio).item()
            bw, bh = int(math.sqrt(size / r)), int(math.sqrt(size * r))
            x0, y0 = int(torch.randint(0, w, (1,))), int(torch.randint(0, h, (1,)))
            if x0 + bw <= w and y0 + bh <= h:
                break
        box[i, y0 : y0 + bh, x0 : x0 + bw] = True
    return box


def mix(a: torch.Tensor, b: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """Paste ``b`` into ``a`` inside ``box`` (B, H, W); works for images (B, C, H, W) and maps (B, [C,] H, W)."""
    m = box if a.dim() == box.dim() else box.unsqueeze(1)
    return torch.where(m, b, a)


def block_mask(b: int, h: int, w: int, device, block: int = 32, cover: float = 0.7, grid: int = 0) -> torch.Tensor:
    """(B, H, W) bool: a grid of round(H/block) x round(W/block) cells (or ``grid`` x ``grid`` cells when
    ``grid`` > 0), each on with probability ``cover``, upsampled (nearest) to the crop: CSL's Trusted Mask
    Perturbation mask."""
    gh, gw = (grid, grid) if grid > 0 else (max(1, round(h / block)), max(1, round(w / block)))
    cells = (torch.rand(b, 1, gh, gw, device=device) < cover).float()
    return F.interpolate(cells, size=(h, w), mode="nearest")[:, 0].bool()
