"""CSL's confidence-separable selection (ICCV 2025), for the whole batch at once.

Per image, every valid pixel is a point x_i = (confidence feature, dispersion feature). The spectral
relaxation of the two-cluster separation problem is solved by the top-2 left singular vectors U of
the N x 2 matrix X, and each pixel joins the cluster k with the larger |U_ik| (the authors' code calls
``torch.linalg.svd`` per image). Since U_ik = (X v_k)_i / s_k with (v_k, s_k^2) the eigenpairs of the
2 x 2 Gram matrix X^T X, one batched 2 x 2 eigenproblem gives the same assignment for all images,
without a Python loop or an SVD of N x 2 matrices.

The reliable cluster is the one with the higher mean confidence. Weights are Gaussian in the z-scores
against its centre, exp(-z_c^2 / alpha) exp(-z_d^2 / alpha), and 1 for pixels beyond the centre on
either feature (more confident, or less dispersed); 0 on ignored pixels.

Features (``features``): ``raw`` (default; f1 = p_max, d = residual variance r, as the third-party
port and most likely the official code) or ``log`` (f1 = log p_max, d = g r with
g = (C-1)^2 / (2 (1 - p_max + eps)), the near-official copy). Either way the sign convention is
"reliable = higher confidence or lower dispersion" (the near-official copy's sign slip is not kept).
"""
from __future__ import annotations

from typing import Tuple

import torch

from semiseg.errors import SemisegError
from semiseg.pseudo.selectors import SELECTORS

EPS = 1e-10


def csl_features(probs: torch.Tensor, features: str = "raw") -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(f1, d, pl), each (B, H, W) float64: confidence feature, dispersion feature, argmax label.

    The code's residual variance r = 1/(C-1) sum_c (P_c [c != c*] - m)^2, m = (sum of the other
    probabilities)/(C-1), the zeroed max channel contributing m^2. The sum, not 1 - p_max: where float32
    rounds p_max to 1 the latter is 0 while the others are not. Computed in the input precision with one
    in-place temporary (its expanded form cancels catastrophically when p_max is near 1); only the
    (B, H, W) maps go to float64."""
    c = probs.shape[1]
    pmax, pl = probs.max(1)
    dev = probs.scatter(1, pl.unsqueeze(1), 0.0)
    m = dev.sum(1) / (c - 1)  # mean of the non-max probabilities
    dev.sub_(m.unsqueeze(1))
    r = dev.mul_(dev).sum(1).double() / (c - 1)
    pmax = pmax.double()
    if features == "raw":
        return pmax, r, pl
    if features == "log":
        g = (c - 1) ** 2 / (2 * (1 - pmax + EPS))
        return torch.log(pmax.clamp(min=EPS)), g * r, pl
    raise SemisegError(f"csl selector: features must be 'raw' or 'log', not {features!r}")


def spectral_assign(feat: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """feat (B, N, 2), valid (B, N) -> cluster id (B, N) in {0, 1}: argmax_k |U_ik| of X's top-2 left
    singular vectors (0 = the larger singular value)."""
    x = feat * valid.unsqueeze(-1)
    gram = x.transpose(1, 2) @ x  # (B, 2, 2)
    evals, evecs = torch.linalg.eigh(gram)  # ascending
    evals, evecs = evals.flip(-1), evecs.flip(-1)  # descending, as the singular values of an SVD
    s = evals.clamp(min=0).sqrt()
    proj = (x @ evecs).abs()  # |X v_k| = s_k |U_ik|
    # a (numerically) zero singular value has no left singular vector on X's support: it never wins
    real = (s > 1e-12 * s[:, :1]).unsqueeze(1)  # (B, 1, 2)
    u = torch.where(real, proj / s.unsqueeze(1).clamp(min=1e-300), torch.zeros_like(proj))
    return u.argmax(-1)


def cluster_stats(feat: torch.Tensor, valid: torch.Tensor, assign: torch.Tensor):
    """Per image and cluster: mean (B, 2, 2) and unbiased variance (B, 2, 2) [cluster, feature].
    Empty cluster -> zeros; one member -> its value, variance 0."""
    onehot = torch.stack([(assign == k) & valid for k in (0, 1)], 1).to(feat.dtype)  # (B, 2, N)
    n = onehot.sum(-1, keepdim=True)  # (B, 2, 1)
    s1 = onehot @ feat  # (B, 2, 2)
    s2 = onehot @ feat.pow(2)
    mean = s1 / n.clamp(min=1)
    var = ((s2 - n * mean.pow(2)) / (n - 1).clamp(min=1)).clamp(min=0)
    var = torch.where(n > 1, var, torch.zeros_like(var))
    return mean, var


@SELECTORS.register("csl", choices={"features": ("raw", "log")})
def csl(probs: torch.Tensor, ignore: torch.Tensor, alpha: float = 8.0,
        features: str = "raw") -> Tuple[torch.Tensor, torch.Tensor]:
    """CSL selection: hard spectral split per image, soft Gaussian weights around the reliable centre."""
    b, _, h, w = probs.shape
    f1, d, pl = csl_features(probs.float(), features)
    valid = ~ignore.view(b, -1)
    feat = torch.stack([f1.view(b, -1), d.view(b, -1)], -1)  # (B, N, 2), float64 for exact statistics
    assign = spectral_assign(feat, valid)
    mean, var = cluster_stats(feat, valid, assign)
    k = mean[:, :, 0].argmax(1)  # reliable cluster: higher mean confidence
    mu = mean[torch.arange(b), k]  # (B, 2)
    sd = var[torch.arange(b), k]
    none_valid = ~valid.any(1)
    mu = torch.where(none_valid.unsqueeze(1), mu.new_tensor([1.0, 0.0]), mu)
    sd = torch.where(none_valid.unsqueeze(1), sd.new_tensor([1.0, 1.0]), sd)
    z_c = (feat[..., 0] - mu[:, :1]) / (sd[:, :1] + EPS).sqrt()
    z_d = (mu[:, 1:] - feat[..., 1]) / (sd[:, 1:] + EPS).sqrt()
    weight = torch.exp(-z_c.pow(2) / alpha) * torch.exp(-z_d.pow(2) / alpha)
    weight = torch.where((z_c > 0) | (z_d > 0), torch.ones_like(weight), weight)
    weight = weight * valid
    return pl, weight.view(b, h, w).float()


def _note(num_classes: int) -> str:
    """What a user should know about CSL's selection on this data (the method logs it)."""
    if num_classes != 2:
        return ""
    return ("csl selector with 2 classes: the dispersion feature is (1 - p_max)^2, a function of the confidence, "
            "so the separation reduces to a split on confidence alone")


csl.note = _note
