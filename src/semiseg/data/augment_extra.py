"""AugSeg's random strong operations (DSSN's VOC code), batched on the device.

Each sample applies k ~ U{1, 2, 3} operations drawn with replacement from 11: identity, autocontrast,
equalize, Gaussian blur (sigma U[0.1, 2]), contrast / brightness / colour / sharpness enhancement
(factor U[0.05, 0.95]), posterize (4-7 bits), solarize (threshold U[1, 255]), hue shift (U[-0.5, 0.5]).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from semiseg.data.augment import _gray, _hue_shift, gaussian_blur
from semiseg.data.transforms import denormalize


def _factor(b, device, lo=0.05, hi=0.95):
    return torch.empty(b, 1, 1, 1, device=device).uniform_(lo, hi)


def _blend(a, b, f):
    """PIL's ImageEnhance: b + f (a - b), i.e. f = 0 gives the degenerate image b."""
    return (b + f * (a - b)).clamp(0, 1)


def _autocontrast(x):
    lo, hi = x.amin((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)
    return torch.where(hi > lo, (x - lo) / (hi - lo).clamp(min=1e-6), x)


def _equalize(x):
    b, c, h, w = x.shape
    q = (x * 255).round().long().clamp(0, 255).view(b * c, -1)
    hist = torch.zeros(b * c, 256, device=x.device).scatter_add_(1, q, torch.ones_like(q, dtype=torch.float))
    cdf = hist.cumsum(1)
    cdf_min = torch.where(hist > 0, cdf, torch.full_like(cdf, float("inf"))).amin(1, keepdim=True)
    lut = ((cdf - cdf_min) / (h * w - cdf_min).clamp(min=1)).clamp(0, 1)
    return lut.gather(1, q).view(b, c, h, w)


def _sharpness(x, f):
    k = torch.tensor([[1, 1, 1], [1, 5, 1], [1, 1, 1]], device=x.device, dtype=x.dtype) / 13
    smooth = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k.expand(3, 1, 3, 3), groups=3)
    return _blend(x, smooth, f)


def _apply(op: int, x: torch.Tensor) -> torch.Tensor:
    b, dev = x.shape[0], x.device
    if op == 0:
        return x
    if op == 1:
        return _autocontrast(x)
    if op == 2:
        return _equalize(x)
    if op == 3:
        return gaussian_blur(x, torch.empty(b, device=dev).uniform_(0.1, 2.0))
    if op == 4:
        return _blend(x, _gray(x).mean((1, 2, 3), keepdim=True).expand_as(x), _factor(b, dev))
    if op == 5:
        return _blend(x, torch.zeros_like(x), _factor(b, dev))
    if op == 6:
        return _blend(x, _gray(x).expand_as(x), _factor(b, dev))
    if op == 7:
        return _sharpness(x, _factor(b, dev))
    if op == 8:
        bits = torch.randint(4, 8, (b, 1, 1, 1), device=dev)
        step = 2.0 ** (8 - bits)
        return torch.floor(x * 255 / step) * step / 255
    if op == 9:
        t = torch.empty(b, 1, 1, 1, device=dev).uniform_(1, 255) / 255
        return torch.where(x >= t, 1 - x, x)
    return _hue_shift(x, torch.empty(b, 1, 1, 1, device=dev).uniform_(-0.5, 0.5))


N_OPS = 11


def random_ops(x: torch.Tensor, mean: Sequence[float], std: Sequence[float], max_ops: int = 3) -> torch.Tensor:
    """Normalised batch in, normalised batch out; each sample gets its own ops and magnitudes."""
    b = x.shape[0]
    with torch.autocast(x.device.type, enabled=False):
        y = denormalize(x.float(), mean, std)
        n_ops = torch.randint(1, max_ops + 1, (b,), device=x.device)
        for r in range(max_ops):
            ops = torch.randint(0, N_OPS, (b,), device=x.device)
            active = n_ops > r
            for op in ops[active].unique().tolist():
                sel = active & (ops == op)
                y[sel] = _apply(op, y[sel]).clamp(0, 1)
        m = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
        s = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
        return ((y - m) / s).to(x.dtype)
