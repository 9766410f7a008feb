"""Losses: supervised CE / OHEM CE, and the field's masked unsupervised CE.

The unsupervised CE is summed over selected pixels (times their weight) and divided by the number of
*non-ignored* pixels, not by the number of selected pixels: that is what UniMatch, DSSN and CSL do,
and it makes the loss shrink when selection is strict instead of renormalising it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class OhemCE(nn.Module):
    """Online hard example mining: keep pixels whose true-class prob < thresh, at least ``min_kept``."""

    def __init__(self, ignore_index: int = 255, thresh: float = 0.7, min_kept: int = 100000) -> None:
        super().__init__()
        self.ignore_index, self.thresh, self.min_kept = ignore_index, thresh, min_kept

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = target != self.ignore_index
        loss = F.cross_entropy(logits.float(), target, ignore_index=self.ignore_index, reduction="none")[valid]
        if loss.numel() == 0:
            return logits.sum() * 0
        with torch.no_grad():
            index = target.clamp(max=logits.shape[1] - 1).unsqueeze(1)
            prob = logits.float().softmax(1).gather(1, index).squeeze(1)[valid]
            k = min(self.min_kept, prob.numel()) - 1
            thresh = max(self.thresh, prob.kthvalue(k + 1).values.item()) if k >= 0 else self.thresh
            keep = prob <= thresh
        return loss[keep].mean() if keep.any() else loss.mean()


class WeightedCE(nn.Module):
    """Per-pixel CE times its class's weight, then a plain mean over the labeled pixels, as SemiRES's code
    (``reduction='none'`` then ``.mean()``); PyTorch's weighted mean would divide by the summed weights."""

    def __init__(self, weights, ignore_index: int = 255) -> None:
        super().__init__()
        self.register_buffer("weights", torch.tensor(list(weights), dtype=torch.float32), persistent=False)
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits.float(), target, weight=self.weights.to(logits.device),
                             ignore_index=self.ignore_index, reduction="none")
        return ce.sum() / (target != self.ignore_index).sum().clamp(min=1)


def median_frequency_weights(pixels) -> list:
    """SegNet's median-frequency balancing: each class's weight is the median of the classes' pixel shares
    over its own share, so the median class weighs 1 and rarer ones more. A class with no labeled pixel
    gets weight 1 (nothing to balance)."""
    pixels = torch.as_tensor(pixels, dtype=torch.float64)
    share = pixels / pixels.sum().clamp(min=1)
    present = share > 0
    median = share[present].quantile(0.5) if present.any() else share.new_tensor(1.0)  # the middle two averaged
    return torch.where(present, median / share.clamp(min=1e-12), torch.ones_like(share)).tolist()


def build_criterion(train_cfg, ignore_index: int, num_classes: int, class_pixels=None) -> nn.Module:
    """The labeled loss; ``class_pixels`` (per-class labeled pixel counts) with ``train.class_balance=median``."""
    from semiseg.errors import SemisegError

    weights = list(train_cfg.class_weights)
    if train_cfg.class_balance == "median":
        if weights:
            raise SemisegError("train.class_balance=median sets the class weights: leave train.class_weights empty")
        if class_pixels is None:
            raise SemisegError("train.class_balance=median needs the labeled masks' class counts, which this "
                               "task does not give")
        weights = median_frequency_weights(class_pixels)
    if weights and len(weights) != num_classes:
        raise SemisegError(f"train.class_weights has {len(weights)} values for {num_classes} classes")
    if train_cfg.criterion == "ce":
        return WeightedCE(weights, ignore_index) if weights else nn.CrossEntropyLoss(ignore_index=ignore_index)
    if weights:
        raise SemisegError("train.class_weights goes with train.criterion=ce, not ohem")
    if train_cfg.criterion == "ohem":
        return OhemCE(ignore_index, train_cfg.ohem_thresh, train_cfg.ohem_min_kept)
    raise SemisegError(f"unknown train.criterion {train_cfg.criterion!r}; valid: ce, ohem")


def masked_ce(logits: torch.Tensor, pl: torch.Tensor, weight: torch.Tensor, ignore: torch.Tensor) -> torch.Tensor:
    """sum(CE * weight over non-ignored pixels) / count(non-ignored pixels).

    logits (B, C, H, W); pl (B, H, W) long; weight (B, H, W) in [0, 1]; ignore (B, H, W) bool.
    """
    ce = F.cross_entropy(logits.float(), pl, reduction="none")
    valid = (~ignore).float()
    return (ce * weight * valid).sum() / valid.sum().clamp(min=1.0)


def standardize(logits: torch.Tensor) -> torch.Tensor:
    """Per-pixel standardisation over the class channel (mean 0, unbiased std 1), as DSSN's code, in fp32.

    With two classes it would be +-1/sqrt(2), the sign of the logit difference: no gradient anywhere but at
    ties, where the clamped std makes it explode (bf16 autocast makes ties common). There the logits are
    centred only (shift-invariant, not scale-invariant): the consistency of binary data stays a smooth loss."""
    logits = logits.float()
    centred = logits - logits.mean(1, keepdim=True)
    if logits.shape[1] <= 2:
        return centred
    # torch.std over the channel of NCHW logits is a strided reduction, 4x slower fwd+bwd on a CPU than this
    # (the variance is clamped, not the root, so that a pixel whose logits tie has torch.std's finite gradient)
    var = centred.pow(2).sum(1, keepdim=True) / (logits.shape[1] - 1)
    return centred / var.clamp(min=1e-12).sqrt()


def consistency(a: torch.Tensor, b: torch.Tensor, kind: str = "mse", sigma: float = 0.0) -> torch.Tensor:
    """Pixel-wise consistency between two views' logits (B, C, H, W); gradients reach both views.

    ``mse`` (DSSN's code): mean over B*C*H*W of (z(a) - z(b))^2 with z the per-pixel standardisation,
    so it ignores a per-pixel shift and scale of the logits. ``gaussian`` (the paper's Eq. 9 as
    described): mean over pixels of 1 - exp(-||z(a) - z(b)||^2 / (2 sigma^2)); sigma 0 means sqrt(C),
    which keeps the kernel's width proportional to the distance between two unrelated standardised maps.
    """
    d = standardize(a) - standardize(b)
    if kind == "mse":
        return d.pow(2).mean()
    if kind == "gaussian":
        s2 = sigma**2 if sigma > 0 else float(a.shape[1])
        return (1 - torch.exp(-d.pow(2).sum(1) / (2 * s2))).mean()
    from semiseg.errors import SemisegError

    raise SemisegError(f"unknown consistency {kind!r}; valid: mse, gaussian")
