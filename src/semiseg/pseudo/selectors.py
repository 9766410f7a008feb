"""Selectors: pure tensor functions ``(probs, ignore) -> (pl, weight)``.

``probs`` (B, C, H, W) softmax scores; ``ignore`` (B, H, W) bool; ``pl`` (B, H, W) long argmax labels;
``weight`` (B, H, W) float in [0, 1], 0 on ignored pixels. Registered here and chosen in config as
``method.selector: {name: threshold, tau: 0.95}``; any method can use any selector.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Dict, Mapping, Sequence, Tuple

import torch

from semiseg.errors import SemisegError
from semiseg.registry import Registry

Selector = Callable[[torch.Tensor, torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]
SELECTORS: Registry = Registry("selector")


@SELECTORS.register("threshold")
def threshold(probs: torch.Tensor, ignore: torch.Tensor, tau: float = 0.95) -> Tuple[torch.Tensor, torch.Tensor]:
    """FixMatch/UniMatch: keep pixels whose top probability is at least ``tau`` (``conf >= tau``)."""
    conf, pl = probs.max(1)
    return pl, ((conf >= tau) & ~ignore).float()


@SELECTORS.register("none")
def no_selection(probs: torch.Tensor, ignore: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Every non-ignored pixel, weight 1 (DSSN's and UniMatch's Cityscapes runs: threshold 0)."""
    return probs.argmax(1), (~ignore).float()


@SELECTORS.register("class_aware", choices={"per": ("image", "batch")})
def class_aware(probs: torch.Tensor, ignore: torch.Tensor, tau_low: float = 0.92, ratio: float = 0.96,
                per: str = "image") -> Tuple[torch.Tensor, torch.Tensor]:
    """DSSN's class-aware pseudo-label generation (CPLG, ``get_adaptive_binary_mask``).

    For each class c its top confidence m_c over the image (``per="image"``, the authors' code) or the
    batch (``per="batch"``); a pixel with argmax c is kept when m_c > tau_low and p_c > ratio * m_c.
    A class whose top confidence is at most tau_low keeps nothing; rarer, less confident classes get a
    threshold relative to their own best pixel instead of one global tau. As in the code, the maxima run
    over all pixels of the map given (for strong views: the CutMixed teacher map).
    """
    if per not in ("image", "batch"):
        raise SemisegError(f"class_aware selector: per must be 'image' or 'batch', not {per!r}")
    conf, pl = probs.max(1)
    top = probs.amax((2, 3))  # (B, C)
    if per == "batch":
        top = top.amax(0, keepdim=True).expand_as(top)
    m = top.gather(1, pl.flatten(1)).view_as(conf)  # top confidence of each pixel's own class
    return pl, ((m > tau_low) & (conf > ratio * m) & ~ignore).float()


def _shares(key: str, values, num_classes: int) -> torch.Tensor:
    """A list of class shares checked (``num_classes`` numbers, none negative, not all 0), as a float64 tensor."""
    try:
        out = torch.as_tensor(values, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        out = None
    if out is None or out.shape != (num_classes,) or not torch.isfinite(out).all() or (out < 0).any() \
            or not out.sum() > 0:
        raise SemisegError(f"method.selector.{key}: needs {num_classes} finite class shares, none negative, not "
                           f"all 0; got {values if out is None else out.tolist()}")
    return out / out.sum()


def _check_share(share) -> None:
    if isinstance(share, bool) or not (isinstance(share, (int, float)) and 0 < share < float("inf")):
        raise SemisegError(f"method.selector.share: {share!r} is not a share above 0 (1: each class its labeled share)")


@SELECTORS.register("class_share")
def class_share(probs: torch.Tensor, ignore: torch.Tensor, prior: Sequence[float] | torch.Tensor | None = None,
                predicted: Sequence[float] | torch.Tensor | None = None,
                share: float = 1.0) -> Tuple[torch.Tensor, torch.Tensor]:
    """DARS's re-distribution (He et al., ICCV 2021): class c keeps the most confident ``share * prior[c] /
    predicted[c]`` (at most all) of the pixels whose argmax is c, so that over the unlabeled set each class keeps
    about ``share`` x its labeled share of the pixels. A class the model over-predicts loses its least confident
    labels; one it under-predicts keeps every label it has, however unsure.

    ``prior``: the labeled pixels' class shares; ``predicted``: the argmax shares of the maps it ranks, over the
    unlabeled set. The methods that keep them (fixmatch, unimatch, unimatch_v2, dssn) pass what the config left
    unset at each step: the labeled pixels seen so far, and an EMA of the argmax shares of the maps they label
    from (aligned ones where distribution_alignment is on), so the fraction is the set's, not the batch's.
    Without ``predicted`` the batch's own argmax shares stand in: each class then keeps ``share * prior[c]`` of
    the batch's pixels, which cuts a batch that holds many objects of one class. Quotas are rounded to whole
    pixels. DARS ranks the whole unlabeled set offline, between rounds of self-training.
    """
    _check_share(share)
    if prior is None:
        raise SemisegError("selector class_share: needs the labeled class shares (method.selector.prior: a list, "
                           "or a method that keeps them: fixmatch, unimatch, unimatch_v2, dssn)")
    n_cls = probs.shape[1]
    prior = _shares("prior", prior, n_cls).to(probs.device)
    conf, pl = probs.max(1)
    valid = ~ignore
    cls, c = pl[valid], conf[valid].double()
    count = torch.bincount(cls, minlength=n_cls)
    if predicted is None:
        predicted = count.double() / max(cls.numel(), 1)
    else:
        predicted = _shares("predicted", predicted, n_cls).to(probs.device)
    keep = (share * prior / predicted.clamp(min=1e-12)).clamp(max=1)
    quota = (keep * count).round().long()
    order = torch.argsort(cls.double() * 2 + (1 - c), stable=True)  # by class, then the most confident first
    rank = torch.empty_like(cls)
    rank[order] = torch.arange(cls.numel(), device=cls.device) - (torch.cumsum(count, 0) - count)[cls[order]]
    weight = torch.zeros(conf.shape, device=conf.device)  # float32 as every selector's, whatever the maps' dtype
    weight[valid] = (rank < quota[cls]).float()
    return pl, weight


def _check_class_share(num_classes: int, prior=None, predicted=None, share: float = 1.0) -> None:
    """When a method is built, before any step: a bad share or list of shares is one line naming its key."""
    _check_share(share)
    for key, values in (("prior", prior), ("predicted", predicted)):
        if values is not None:
            _shares(key, values, num_classes)


class_share.check = _check_class_share


def build_selector(spec: Mapping[str, Any]) -> Selector:
    """``{"name": ..., **kwargs}`` -> a two-argument selector; unknown kwargs are an error."""
    spec = dict(spec)
    name = spec.pop("name", "threshold")
    fn = SELECTORS.get(name)
    params = list(inspect.signature(fn).parameters)[2:]
    unknown = set(spec) - set(params)
    if unknown:
        raise SemisegError(f"selector {name!r} has no option(s) {sorted(unknown)}; valid: {params}")
    return functools.partial(fn, **spec)


SHARES = ("prior", "predicted")  # the class shares a selector may take at each call (``class_share``)


def wanted_shares(select: Selector) -> Tuple[str, ...]:
    """The class shares the selector takes at each call that its config left unset."""
    fn, bound = getattr(select, "func", select), getattr(select, "keywords", {})
    return tuple(k for k in SHARES if k in inspect.signature(fn).parameters and bound.get(k) is None)


def selected(weight: torch.Tensor) -> torch.Tensor:
    """The pixels a selector kept outright (weight 1, up to rounding); soft weights below count as unselected
    in every statistic, report and benchmark."""
    return weight >= 1 - 1e-6


def selection_stats(pl: torch.Tensor, weight: torch.Tensor, ignore: torch.Tensor, num_classes: int,
                    hidden: torch.Tensor | None = None) -> Dict[str, torch.Tensor]:
    """``mask_ratio`` overall and per predicted class; with hidden ground truth also the precision of the
    selected pixels (share whose pseudo-label is right) and recall of correct ones (share of correct
    pseudo-labels that were selected) - the diagnostics that show what a selector does - and, per true class,
    the share of its pixels whose pseudo-label names it, selected or not (``pl_recall``): a class the teacher
    hands to a neighbour shows there first.

    "Selected" means full weight (w = 1): for hard selectors that is the selection, for CSL's soft
    weights the confident set its code logs; ``sel_precision_w`` weighs every pixel by its weight.
    A per-class value without pixels to measure (no pixel of that class in the batch) is NaN, not 0, so
    that averages over steps are not dragged down by batches that lack a rare class."""
    valid = ~ignore
    sel = selected(weight) & valid
    out = {"mask_ratio": sel.sum() / valid.sum().clamp(min=1)}
    counts = torch.bincount(pl[valid], minlength=num_classes).float()
    kept = torch.bincount(pl[sel], minlength=num_classes).float()
    nan = torch.tensor(float("nan"), device=pl.device)
    ratio = torch.where(counts > 0, kept / counts.clamp(min=1), nan)
    for c in range(num_classes):
        out[f"mask_ratio_c{c}"] = ratio[c]
    if hidden is not None:
        known = valid & (hidden != 255)
        correct = (pl == hidden) & known
        out["sel_precision"] = (correct & sel).sum() / (sel & known).sum().clamp(min=1)
        out["sel_recall"] = (correct & sel).sum() / correct.sum().clamp(min=1)
        out["pl_accuracy"] = correct.sum() / known.sum().clamp(min=1)
        wk = weight * known
        out["sel_precision_w"] = (wk * correct).sum() / wk.sum().clamp(min=1e-6)
        right = torch.bincount(pl[correct & sel], minlength=num_classes).float()
        chosen = torch.bincount(pl[sel & known], minlength=num_classes).float()
        truth = torch.bincount(hidden[known], minlength=num_classes).float()
        found = torch.bincount(hidden[correct], minlength=num_classes).float()
        precision = torch.where(chosen > 0, right / chosen.clamp(min=1), nan)  # one op per statistic, not per class
        recall = torch.where(truth > 0, found / truth.clamp(min=1), nan)
        for c in range(num_classes):
            out[f"sel_precision_c{c}"], out[f"pl_recall_c{c}"] = precision[c], recall[c]
    return out
