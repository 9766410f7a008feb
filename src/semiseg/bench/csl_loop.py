"""CSL's selection done literally as its authors' code does it: one SVD of the N x 2 features per image.

Kept as the reference the batched selector is tested and timed against (tests/test_csl.py,
``semiseg bench selector``); not used in training.
"""
from __future__ import annotations

import math

import torch

from semiseg.pseudo.csl import EPS


def literal_features(probs: torch.Tensor, features: str = "raw"):
    """The code's features as written: zero the max channel, residual variance over all C channels."""
    c = probs.shape[1]
    pmax, pl = probs.max(1)
    m = (1 - pmax) / (c - 1)
    rest = probs.scatter(1, pl.unsqueeze(1), 0.0)
    r = (rest - m.unsqueeze(1)).pow(2).sum(1) / (c - 1)
    if features == "raw":
        return pmax, r, pl
    g = (c - 1) ** 2 / (2 * (1 - pmax + EPS))
    return torch.log(pmax.clamp(min=EPS)), g * r, pl


def csl_per_image(probs: torch.Tensor, ignore: torch.Tensor, alpha: float = 8.0, features: str = "raw"):
    weights, labels = [], []
    for b in range(probs.shape[0]):
        f1, d, pl = literal_features(probs[b : b + 1].double(), features)
        v = ~ignore[b].flatten()
        X = torch.stack([f1.flatten(), d.flatten()], 1)
        w = torch.zeros(X.shape[0], dtype=torch.float64, device=probs.device)
        if v.any():
            U, _, _ = torch.linalg.svd(X[v], full_matrices=False)
            assign = U.abs().argmax(1)
            mean = torch.zeros(2, 2, dtype=torch.float64, device=probs.device)
            var = torch.zeros(2, 2, dtype=torch.float64, device=probs.device)
            for k in (0, 1):
                members = X[v][assign == k]
                if len(members):
                    mean[k] = members.mean(0)
                if len(members) > 1:
                    var[k] = members.var(0, unbiased=True)
            k = int(mean[:, 0].argmax())
            z_c = (X[:, 0] - mean[k, 0]) / math.sqrt(var[k, 0] + EPS)
            z_d = (mean[k, 1] - X[:, 1]) / math.sqrt(var[k, 1] + EPS)
            w = torch.exp(-z_c**2 / alpha) * torch.exp(-z_d**2 / alpha)
            w = torch.where((z_c > 0) | (z_d > 0), torch.ones_like(w), w) * v
        weights.append(w.view(probs.shape[2:]))
        labels.append(pl[0])
    return torch.stack(labels), torch.stack(weights).float()
