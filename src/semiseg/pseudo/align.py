"""Distribution alignment (ReMixMatch, Berthelot et al., ICLR 2020) for pixels: the class probabilities a
pseudo-label is made from, rescaled so that the classes the model predicts less often than the labels hold
them are raised and those it over-predicts lowered."""
from __future__ import annotations

import torch


def align(probs: torch.Tensor, prior: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """``probs`` (B, C, H, W) times ``prior / mean`` per class (the labeled class shares over the model's mean
    prediction), renormalised over the classes at each pixel."""
    p = probs * (prior / mean.clamp(min=1e-8)).to(probs)[None, :, None, None]
    return p / p.sum(1, keepdim=True).clamp(min=1e-12)
