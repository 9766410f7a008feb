"""SemiRES refiners: class-agnostic mask proposals sharpen the teacher's pseudo-labels.

``refine(probs, proposals, ignore) -> (pl, weight)``: probs (B, C, H, W); proposals a list of B boolean
tensors (K_b, H, W); ignore (B, H, W). Per image and per predicted class (the binary mask T_c of pixels
whose argmax is c), as the SemiRES code does per referent:

- ``iom`` (IoU-based optimal matching): the proposal with the largest IoU with T_c, if that IoU > 0.5,
  replaces T_c (ties: the first such proposal).
- ``cpi`` (composite parts integration): the union of proposals that cover more than 0.7 of T_c or lie
  more than 0.7 inside it.
- ``pwa`` (pixel-wise adjustment), the fallback when no proposal passes: T_c is kept and each pixel is
  weighted 1.3 - N(p_c; 0.5, var 0.1), low where the teacher is unsure (0.038 at p = 0.5, 0.939 at 0 or 1).

Refined masks get weight 1. Where masks of several classes overlap, a refined mask wins over a teacher
mask kept by PWA (the proposal carries the boundary the teacher got wrong), and among refined masks the
class with the higher teacher probability wins. Pixels a refinement removed from T_c and no other mask claims keep the
teacher's label with weight 0: the proposals say they are not part of that region, and nothing says what
they are. Returns also the share of class masks that fell back to PWA (the paper's "SAM miss rate").
"""
from __future__ import annotations

import math
from typing import Callable, List, Sequence, Tuple

import torch

from semiseg.errors import SemisegError
from semiseg.registry import Registry

REFINERS: Registry = Registry("refiner")
PWA_VAR = 0.1


def pwa_weight(p: torch.Tensor) -> torch.Tensor:
    """1.3 - N(p; 0.5, 0.1), the SemiRES per-pixel weight (N the Gaussian pdf)."""
    pdf = torch.exp(-((p - 0.5) ** 2) / (2 * PWA_VAR)) / math.sqrt(2 * math.pi * PWA_VAR)
    return 1.3 - pdf


def _overlaps(props: torch.Tensor, masks: torch.Tensor):
    """props (K, HW), masks (M, HW) float -> intersections (K, M), proposal areas (K, 1), mask areas (1, M)."""
    inter = props @ masks.T
    return inter, props.sum(1, keepdim=True), masks.sum(1, keepdim=True).T


def match_iom(props: torch.Tensor, masks: torch.Tensor, iou_thresh: float = 0.5) -> List[torch.Tensor | None]:
    inter, pa, ma = _overlaps(props, masks)
    iou = inter / (pa + ma - inter).clamp(min=1)
    out = []
    for m in range(masks.shape[0]):
        best = int(iou[:, m].argmax()) if iou.shape[0] else -1
        out.append(props[best] > 0 if best >= 0 and iou[best, m] > iou_thresh else None)
    return out


def match_cpi(props: torch.Tensor, masks: torch.Tensor, cover: float = 0.7) -> List[torch.Tensor | None]:
    inter, pa, ma = _overlaps(props, masks)
    passes = (inter / ma.clamp(min=1) > cover) | (inter / pa.clamp(min=1) > cover)  # (K, M)
    out = []
    for m in range(masks.shape[0]):
        chosen = passes[:, m]
        out.append(props[chosen].amax(0) > 0 if chosen.any() else None)
    return out


def refine_image(probs: torch.Tensor, props: torch.Tensor, ignore: torch.Tensor,
                 match: Callable) -> Tuple[torch.Tensor, torch.Tensor, int, int]:
    """One image: probs (C, H, W), props (K, H, W) bool. Returns pl, weight, #masks, #fallbacks."""
    c, h, w = probs.shape
    conf, pl = probs.max(0)
    classes = torch.unique(pl[~ignore]) if (~ignore).any() else pl.new_zeros(0)
    props = props.reshape(props.shape[0], h * w).float()  # K may be 0: an image without proposals
    props = props[props.sum(1) > 0]
    teacher_masks = torch.stack([(pl == k) & ~ignore for k in classes]).reshape(len(classes), -1).float() \
        if len(classes) else props.new_zeros(0, h * w)
    matched = match(props, teacher_masks) if len(classes) else []
    claim = torch.full((h * w,), -1.0, device=probs.device)  # score of the class holding each pixel
    label, weight = pl.flatten().clone(), torch.zeros(h * w, device=probs.device)
    flat = probs.reshape(c, -1)
    fallbacks = 0
    for k, refined, tm in zip(classes.tolist(), matched, teacher_masks):
        region = refined if refined is not None else tm > 0
        fallbacks += refined is None
        p = flat[k]
        score = p + 2.0 * (refined is not None)  # refined beats kept; then teacher confidence
        wins = region & (score > claim)
        claim = torch.where(wins, score, claim)
        label = torch.where(wins, torch.full_like(label, k), label)
        weight = torch.where(wins, torch.ones_like(weight) if refined is not None else pwa_weight(p), weight)
    weight = weight * (~ignore).flatten()
    return label.view(h, w), weight.view(h, w), len(classes), fallbacks


class Refiner:
    """A batch refiner around one matching rule; ``miss_rate`` is the last batch's PWA fallback share."""

    def __init__(self, match: Callable) -> None:
        self.match, self.miss_rate = match, 0.0

    def __call__(self, probs: torch.Tensor, proposals: Sequence[torch.Tensor], ignore: torch.Tensor):
        if len(proposals) != probs.shape[0]:
            raise SemisegError(f"refiner got proposals for {len(proposals)} images, but {probs.shape[0]} predictions")
        pls, ws, n_masks, n_fallback = [], [], 0, 0
        for b in range(probs.shape[0]):
            pl, w, n, f = refine_image(probs[b].float(), proposals[b], ignore[b], self.match)
            pls.append(pl)
            ws.append(w)
            n_masks, n_fallback = n_masks + n, n_fallback + f
        self.miss_rate = n_fallback / max(n_masks, 1)
        return torch.stack(pls), torch.stack(ws)


@REFINERS.register("iom")
def iom(iou_thresh: float = 0.5):
    return Refiner(lambda p, m: match_iom(p, m, iou_thresh))


@REFINERS.register("cpi")
def cpi(cover: float = 0.7):
    return Refiner(lambda p, m: match_cpi(p, m, cover))


@REFINERS.register("pwa")
def pwa():
    """No proposal is ever used: the teacher's labels with PWA weights everywhere (an ablation)."""
    return Refiner(lambda p, m: [None] * m.shape[0])


def build_refiner(spec) -> Refiner:
    """``{"name": "iom", **options}`` -> a :class:`Refiner`."""
    spec = dict(spec)
    name = spec.pop("name")
    try:
        return REFINERS.get(name)(**spec)
    except TypeError as e:
        raise SemisegError(f"refiner {name!r}: {e}") from None


def refine_binary(p_fg: torch.Tensor, props: torch.Tensor,
                  kind: str = "iom") -> Tuple[torch.Tensor, torch.Tensor, bool]:
    """SemiRES's own case: one referent per image. p_fg (H, W) teacher foreground probability, props (K, H, W).

    IOM/CPI replace the teacher's mask (p_fg > 0.5) by the matched proposal(s), weight 1 everywhere;
    without a match, PWA keeps the teacher's mask with weights 1.3 - N(p_fg; 0.5, 0.1).
    Returns (mask (H, W) long, weight (H, W), refined?)."""
    matchers = {"iom": match_iom, "cpi": match_cpi}
    if kind not in matchers:  # a typo must not select another matcher silently
        raise SemisegError(f"refiner {kind!r}: valid: {', '.join(matchers)}")
    fg = (p_fg > 0.5).reshape(1, -1).float()
    match = matchers[kind]
    found = match(props.reshape(props.shape[0], fg.shape[1]).float(), fg)[0] if props.shape[0] else None
    if found is None:
        return (p_fg > 0.5).long(), pwa_weight(p_fg), False
    return found.view_as(p_fg).long(), torch.ones_like(p_fg), True
