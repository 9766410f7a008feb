"""Pieces the semi-supervised recipes share: config fields, views, mixing of pseudo-label maps, logging."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple

import torch
from torch import nn

from semiseg.config import choice
from semiseg.data.augment import SEMIRES_STRONG, cutmix_box, mix, strong_photometric
from semiseg.errors import SemisegError
from semiseg.methods.base import Method, MethodConfig
from semiseg.pseudo.refiners import build_refiner
from semiseg.pseudo.selectors import build_selector, selection_stats


@dataclass
class SemiConfig(MethodConfig):
    selector: Dict[str, Any] = field(default_factory=lambda: {"name": "threshold", "tau": 0.95})
    # CutMix partner: "batch" = another unlabeled batch (UniMatch V1 draws a second one; its author
    # confirmed mixing with a shuffled batch performs the same, UniMatch #51), "roll" = the batch rolled
    # by one, "flip" = the batch reversed (UniMatch V2)
    mix: str = choice("batch", "roll", "flip")
    cutmix_p: float = 0.5
    # SemiRES-style refinement after selection, e.g. {name: iom}; needs data.proposal_store (semiseg proposals)
    refiner: Dict[str, Any] = field(default_factory=dict)
    # the strong view's photometric part: unimatch (the UniMatch family's: jitter 0.5 p 0.8, grayscale p 0.2,
    # blur sigma up to 2 p 0.5) | semires (SemiRES's: jitter 0.25 p 0.5, nothing else), for small images and
    # objects told apart by intensity, where a sigma-2 blur or a halved contrast erases the object
    strong_view: str = choice("unimatch", "semires")
    # BatchNorm running statistics: "all" forwards update them (UniMatch, FixMatch, DSSN, SemiRES as authored) |
    # "clean": only the labeled + weak forward does (CSL's code); strong, masked and partner views normalise
    # with their own batch statistics and leave the running ones, which evaluation then shares with clean images
    running_stats: str = choice("all", "clean")


@contextlib.contextmanager
def bn_stats_kept(model: nn.Module):
    """Forwards inside use batch statistics as usual, but leave the BN running statistics as they were.
    The saved statistics are put back as new tensors: autograd holds the updated ones for the backward."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in bns]
    try:
        yield
    finally:
        for m, (mean, var, n) in zip(bns, saved):
            m.running_mean, m.running_var, m.num_batches_tracked = mean, var, n


@dataclass
class TeacherConfig(SemiConfig):
    """The EMA teacher's knobs. Its averaging horizon is 1/(1 - m) steps: 250 for 0.996, 0.2% of DSSN's
    123k-iteration VOC run but 17% of a 1500-step CPU run, where the teacher then still holds a third of
    its random start at step 250. ``ema_horizon`` > 0 sets m from a horizon given as a share of the
    schedule, m = 1 - 1/(ema_horizon * train.iters), instead of ``ema_momentum``."""

    ema_momentum: float = 0.996
    ema_horizon: float = 0.0


class SemiMethod(Method):
    """Base for methods with unlabeled data: selector, strong views, CutMix partner, stats."""

    Config = SemiConfig

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.select = build_selector(self.cfg.selector)
        if self.cfg.selector.get("name") == "csl" and self.num_classes == 2:
            self.notes.append("csl selector with 2 classes: the dispersion feature is (1 - p_max)^2, a function of "
                              "the confidence, so the separation reduces to a split on confidence alone")
        self.unlabeled_streams = 2 if self.cfg.mix == "batch" else 1
        self.refine = build_refiner(self.cfg.refiner) if self.cfg.refiner else None
        self.needs_proposals = self.refine is not None or type(self).needs_proposals

    def _partner_order(self, n: int) -> List[int]:
        """Which unlabeled sample partners sample i when the partner comes from the same batch."""
        return [(i - 1) % n for i in range(n)] if self.cfg.mix == "roll" else list(range(n - 1, -1, -1))

    def partner(self, batch: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """The CutMix partner images and their ignore masks."""
        if self.cfg.mix == "batch":
            return batch["mix"], batch["mix_ignore"]
        order = self._partner_order(batch["u"].shape[0])
        return batch["u"][order], batch["u_ignore"][order]

    def partner_props(self, batch):
        """The partner images' proposals, in the order of ``partner`` (None without a proposal store)."""
        if self.cfg.mix == "batch":
            return batch.get("mix_props")
        props = batch.get("u_props")
        return None if props is None else [props[i] for i in self._partner_order(len(props))]

    @torch.no_grad()
    def predict_eval(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities from the model in eval mode (UniMatch's CutMix-partner prediction)."""
        self.model.eval()
        probs = self.model(x).float().softmax(1)
        self.model.train()
        return probs

    def perturbed_stats(self):
        """Around the student's forwards of perturbed (strong, masked) or partner views: with
        ``running_stats: clean`` they leave the BN running statistics as the clean forward set them."""
        return bn_stats_kept(self.student) if self.cfg.running_stats == "clean" else contextlib.nullcontext()

    def strong(self, x: torch.Tensor) -> torch.Tensor:
        kind = SEMIRES_STRONG if self.cfg.strong_view == "semires" else {}
        return strong_photometric(x, self.mean, self.std, **kind)

    def box(self, u: torch.Tensor) -> torch.Tensor:
        b, _, h, w = u.shape
        return cutmix_box(b, h, w, u.device, self.cfg.cutmix_p)

    def pseudo(self, probs, ignore, props=None):
        """Selection, then (if configured) refinement with the images' proposals. Refined pixels keep
        weight 1 (the proposal is trusted); elsewhere the PWA weight times the selector's weight."""
        pl, weight = self.select(probs, ignore)
        if self.refine is None:
            return pl, weight
        if props is None:
            raise SemisegError("method.refiner is set but the batch has no proposals: set data.proposal_store to a "
                               "store made by `semiseg proposals`")
        pl_r, w_r = self.refine(probs, props, ignore)
        return pl_r, torch.where(w_r == 1, w_r, w_r * weight)

    def view_labels(self, boxes, probs_u, ign_u, probs_mix, ign_mix, batch, weak):
        """(pl, weight, ignore) for each CutMixed strong view. Without a refiner the selector runs on the
        mixed map (per-image statistics then span both images, as DSSN's CPLG); with one, each source image
        is refined with its own proposals first and the results are pasted: ``weak`` = (pl, weight), the
        caller's ``pseudo`` of ``probs_u``, so that refinement is not done twice."""
        if self.refine is None:
            out = []
            for box in boxes:  # the partner's scores inside the box
                probs_s, ign_s = mix(probs_u, probs_mix, box), mix(ign_u, ign_mix, box)
                out.append((*self.select(probs_s, ign_s), ign_s))
            return out
        pl_u, w_u = weak
        pl_m, w_m = self.pseudo(probs_mix, ign_mix, self.partner_props(batch))
        return [(mix(pl_u, pl_m, box), mix(w_u, w_m, box), mix(ign_u, ign_mix, box)) for box in boxes]

    def refine_stats(self) -> Dict[str, float]:
        return {"miss_rate": self.refine.miss_rate} if self.refine is not None else {}

    def stats(self, pl, weight, ignore, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Mask ratios; with ``data.hidden_labels`` also selection precision/recall against the unlabeled
        split's hidden ground truth (diagnostics only: it never reaches a loss)."""
        hidden = batch.get("u_hidden")
        return {k: v.detach() for k, v in selection_stats(pl, weight, ignore, self.num_classes, hidden).items()}
