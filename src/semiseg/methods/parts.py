"""The small parts a semi-supervised method composes, each with one meaning:

- :class:`StrongView`: the photometric half of a strong view (``strong_view``);
- :class:`CutMixPartner`: which images are pasted into the CutMix boxes, and the boxes (``mix``, ``cutmix_p``);
- :class:`PerturbedStats`: whether perturbed views' forwards move the BatchNorm running statistics
  (``running_stats``);
- :class:`PseudoLabeler`: pseudo-labels = the selector, then (if configured) the refiner against mask
  proposals (``selector``, ``refiner``);
- :class:`LabeledPaste`: labeled objects pasted into the strong views with their true labels (``paste_p``);
- :class:`DistributionAlignment`: the pseudo-labels' probabilities aligned to the labeled class shares
  (``distribution_alignment``).

A method file plus the parts it names is all a reader opens (docs/methods.md, "Shared parts").
"""
from __future__ import annotations

import contextlib
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from semiseg.data.augment import SEMIRES_STRONG, cutmix_box, mix, strong_photometric
from semiseg.errors import SemisegError
from semiseg.pseudo.align import align
from semiseg.pseudo.refiners import build_refiner
from semiseg.pseudo.selectors import build_selector, wanted_shares


class StrongView:
    """``unimatch``: the UniMatch family's jitter 0.5 (p 0.8), grayscale (p 0.2), blur up to sigma 2 (p 0.5);
    ``semires``: SemiRES's jitter 0.25 (p 0.5) alone. Geometry is the weak view's; CutMix is the partner's."""

    def __init__(self, kind: str, mean, std, then: Optional[Callable] = None) -> None:
        self.options = SEMIRES_STRONG if kind == "semires" else {}
        self.mean, self.std, self.then = mean, std, then  # then: more operations after it (DSSN's AugSeg ones)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = strong_photometric(x, self.mean, self.std, **self.options)
        return self.then(x, self.mean, self.std) if self.then is not None else x


class CutMixPartner:
    """``batch``: another unlabeled batch (UniMatch V1; its author found a shuffled batch equal, UniMatch #51),
    ``roll``: the batch rolled by one, ``flip``: the batch reversed (UniMatch V2). ``streams``: the unlabeled
    loader streams this needs (a second one for ``batch``)."""

    def __init__(self, mode: str, p: float) -> None:
        self.mode, self.p = mode, p
        self.streams = 2 if mode == "batch" else 1

    def order(self, n: int) -> List[int]:
        """Which unlabeled sample partners sample i when the partner comes from the same batch."""
        return [(i - 1) % n for i in range(n)] if self.mode == "roll" else list(range(n - 1, -1, -1))

    def images(self, batch: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """The partner images and their ignore masks."""
        if self.mode == "batch":
            return batch["mix"], batch["mix_ignore"]
        order = self.order(batch["u"].shape[0])
        return batch["u"][order], batch["u_ignore"][order]

    def proposals(self, batch) -> Optional[list]:
        """The partner images' proposals, in the order of :meth:`images` (None without a proposal store)."""
        if self.mode == "batch":
            return batch.get("mix_props")
        props = batch.get("u_props")
        return None if props is None else [props[i] for i in self.order(len(props))]

    def box(self, u: torch.Tensor) -> torch.Tensor:
        """One CutMix box per image (area 2-40% of the crop, drawn with probability ``p``), (B, H, W) bool."""
        b, _, h, w = u.shape
        return cutmix_box(b, h, w, u.device, self.p)


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


class PerturbedStats:
    """A context for the student's forwards of perturbed (strong, masked) or partner views. ``all``: they
    update the BN running statistics (UniMatch, FixMatch, DSSN, SemiRES as authored); ``clean``: they leave
    them as the labeled and weak forward set them (CSL's code), so that evaluation normalises with the
    statistics of clean images."""

    def __init__(self, mode: str, student: nn.Module) -> None:
        self.mode, self.student = mode, student

    def __call__(self):
        return bn_stats_kept(self.student) if self.mode == "clean" else contextlib.nullcontext()


class PseudoLabeler:
    """Pseudo-labels and their per-pixel weights: the selector (``threshold``, ``class_aware``, ``csl``,
    ``none``), then, with a refiner, the images' proposals (IOM or CPI, PWA where none matches). Refined
    pixels keep weight 1 (the proposal is trusted); elsewhere the PWA weight times the selector's."""

    def __init__(self, selector: dict, refiner: dict, num_classes: int, shares=None) -> None:
        """``shares``: a callable giving the class shares (``prior``, ``predicted``), for a selector that takes
        them at each call; it fills those its config left unset."""
        self.select = build_selector(selector)
        self.wants = wanted_shares(self.select) if shares is not None else ()
        if "prior" in wanted_shares(self.select) and shares is None:
            raise SemisegError(f"method.selector {selector.get('name')}: takes the labeled class shares, which this "
                               "method does not keep; give them as method.selector.prior (a list) or use fixmatch, "
                               "unimatch, unimatch_v2 or dssn")
        self.shares = shares
        fn = getattr(self.select, "func", self.select)  # the selector's function under its options' partial
        check = getattr(fn, "check", None)  # a selector's own options
        if check:
            check(num_classes, **getattr(self.select, "keywords", {}))
        self.refine = build_refiner(refiner) if refiner else None
        note = getattr(fn, "note", None)  # a selector's word on this data
        self.notes = [n for n in [note(num_classes) if note else ""] if n]

    def _select(self, probs: torch.Tensor, ignore: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if not self.wants:
            return self.select(probs, ignore)
        given = {k: v for k, v in self.shares().items() if k in self.wants}
        if given.get("prior", 0) is None:  # no labeled pixel seen yet: nothing to share by, every label kept
            return probs.argmax(1), (~ignore).float()
        return self.select(probs, ignore, **given)

    def __call__(self, probs: torch.Tensor, ignore: torch.Tensor, props=None) -> Tuple[torch.Tensor, torch.Tensor]:
        pl, weight = self._select(probs, ignore)
        if self.refine is None:
            return pl, weight
        if props is None:
            raise SemisegError("method.refiner is set but the batch has no proposals: set data.proposal_store to a "
                               "store made by `semiseg proposals`")
        pl_r, w_r = self.refine(probs, props, ignore)
        return pl_r, torch.where(w_r == 1, w_r, w_r * weight)

    def mixed_views(self, boxes, probs_u, ign_u, probs_mix, ign_mix, props_mix, weak):
        """(pl, weight, ignore) of each CutMixed view (the partner inside each box). Without a refiner the
        selector runs on the mixed scores, so per-image statistics span both images (DSSN's CPLG); with
        one, each source image is labelled with its own proposals and the labels are pasted. ``weak``: this
        labeler's (pl, weight) of ``probs_u``, which the caller has already, so that nothing is refined twice."""
        if self.refine is None:
            out = []
            for box in boxes:
                probs_s, ign_s = mix(probs_u, probs_mix, box), mix(ign_u, ign_mix, box)
                out.append((*self._select(probs_s, ign_s), ign_s))
            return out
        (pl_u, w_u), (pl_m, w_m) = weak, self(probs_mix, ign_mix, props_mix)
        return [(mix(pl_u, pl_m, box), mix(w_u, w_m, box), mix(ign_u, ign_mix, box)) for box in boxes]

    def log(self) -> Dict[str, float]:
        """The last batch's share of class masks that fell back to PWA (with a refiner)."""
        return {"miss_rate": self.refine.miss_rate} if self.refine is not None else {}


class LabeledPaste:
    """With probability ``p`` per unlabeled image, the pixels of one class of one labeled image (strongly
    perturbed as the view is) are pasted into that image's strong views, at the same place, with their true
    labels at weight 1: the few labeled pixels of a class the teacher mislabels reach the unlabeled stream
    too, in new contexts. The class is drawn among those of the labeled batch (class 0, the background, never)
    with odds 1 - its confidence bank: the student's mean probability of the true class on that class's
    labeled pixels, an EMA over steps (``momentum``), so the classes the model is least sure of come most
    often. Adaptive copy-paste after AEL (Hu et al., NeurIPS 2021), in our form: the same object in every
    strong view of an image, so that a Siamese pair still compares like with like. ``p`` 0: off."""

    def __init__(self, p: float, num_classes: int, momentum: float = 0.99) -> None:
        self.p, self.momentum = p, momentum
        self.confidence = torch.zeros(num_classes)  # saved with the method state: resume draws the same classes

    def observe(self, pred_x: torch.Tensor, y: torch.Tensor) -> None:
        """Update the confidence bank from the labeled batch's logits."""
        if not self.p:
            return
        c = len(self.confidence)
        valid = y < c  # the ignore label (255) is none of the classes
        p_true = pred_x.detach().float().softmax(1).gather(1, y.clamp(max=c - 1)[:, None])[:, 0][valid]
        stats = torch.stack([torch.bincount(y[valid], weights=p_true, minlength=c),
                             torch.bincount(y[valid], minlength=c).to(p_true.dtype)])
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(stats)  # one bank for every process: the checkpoint's is everyone's
        sums, counts = stats.cpu()  # one transfer per step, not per class
        seen = counts > 0
        self.confidence[seen] = (self.momentum * self.confidence[seen]
                                 + (1 - self.momentum) * sums[seen] / counts[seen])

    def draw(self, x: torch.Tensor, y: torch.Tensor, n: int, perturb: Callable[[torch.Tensor], torch.Tensor]):
        """For ``n`` unlabeled images: (mask (n, H, W) bool, source pixels (n, 3, H, W), labels (n, H, W)), or
        None when nothing is pasted this step. ``perturb``: the strong view's photometric part, applied to the
        labeled batch ``x`` only when something is pasted (off, the random stream is the method's own)."""
        if not self.p:
            return None
        c = len(self.confidence)
        holds = torch.zeros(y.shape[0], c, dtype=torch.bool, device=y.device)  # labeled image j holds class k
        holds.scatter_(1, torch.where(y < c, y, 0).flatten(1), True)  # the ignore label is none of the classes
        holds[:, 0] = False  # the background is never pasted
        present = holds.any(0)
        if not bool(present.any()):
            return None
        x_strong = perturb(x)
        odds = (1 - self.confidence.to(y.device)).clamp(min=1e-3) * present
        # batched, no host sync per image: each image's class, one labeled image holding it, and whether to paste
        k = torch.multinomial(odds, n, replacement=True)
        j = torch.multinomial(holds[:, k].T.float(), 1)[:, 0]
        chosen = torch.rand(n, device=y.device) < self.p
        mask = (y[j] == k[:, None, None]) & chosen[:, None, None]
        labels = torch.where(mask, k[:, None, None], 0)
        src = x_strong[j]
        return (mask, src, labels) if bool(mask.any()) else None

    @staticmethod
    def images(views: torch.Tensor, plan) -> torch.Tensor:
        """The strong views (n, 3, H, W) with the drawn pixels pasted in."""
        return views if plan is None else torch.where(plan[0][:, None], plan[1], views)

    @staticmethod
    def labels(pl: torch.Tensor, weight: torch.Tensor, ignore: torch.Tensor, plan):
        """A view's (pl, weight, ignore) with the pasted pixels' true labels at weight 1."""
        if plan is None:
            return pl, weight, ignore
        mask, _, true = plan
        return torch.where(mask, true, pl), torch.where(mask, torch.ones_like(weight), weight), ignore & ~mask


class DistributionAlignment:
    """The probabilities pseudo-labels are made from, aligned to the labeled class shares (``pseudo.align``):
    each class scaled by its share of the labeled pixels seen so far over its share of the model's mean
    prediction on the unlabeled pixels, an EMA over steps (``momentum`` 0.99, ReMixMatch's window of 128
    batches in our form). A class the teacher starves is raised before selection, one it over-predicts lowered;
    a class no labeled pixel holds is never pseudo-labelled. Off (``on`` False): the probabilities unchanged.

    For a selector that takes the class shares (``class_share``), ``ranks`` set: the labeled bank fills with or
    without alignment, and a third bank keeps an EMA of the argmax shares of the first map returned (the one
    labels are made from, aligned where alignment is on), the model's class shares over the unlabeled set."""

    def __init__(self, on: bool, num_classes: int, momentum: float = 0.99) -> None:
        self.on, self.momentum = on, momentum
        self.ranks = False
        self.labeled = torch.zeros(num_classes, dtype=torch.float64)  # labeled pixels per class, every batch so far
        self.mean = torch.zeros(num_classes)  # saved with the method state: resume aligns as the run did
        self.predicted = torch.zeros(num_classes)  # argmax shares of the returned maps (``ranks`` only)

    def labeled_shares(self) -> torch.Tensor | None:
        """The class shares of the labeled pixels seen so far; None before the first labeled batch."""
        return (self.labeled / self.labeled.sum()).float() if self.labeled.any() else None

    def shares(self) -> Dict[str, torch.Tensor | None]:
        """The labeled class shares and the model's (the EMA of its maps' argmax shares), for a selector."""
        return {"prior": self.labeled_shares(), "predicted": self.predicted if self.predicted.any() else None}

    def state(self) -> Dict[str, torch.Tensor]:
        """The banks in use, for the method state (nothing when neither alignment nor a selector uses them)."""
        banks = {}
        if self.on or self.ranks:
            banks.update(align_labeled=self.labeled, align_mean=self.mean)
        if self.ranks:
            banks["align_predicted"] = self.predicted
        return {k: v.clone() for k, v in banks.items()}

    def load(self, state: Dict[str, torch.Tensor]) -> None:
        """The banks from a method state; a checkpoint without them leaves them empty (the first step fills them)."""
        if (self.on or self.ranks) and "align_mean" in state:
            self.labeled, self.mean = state["align_labeled"].clone().double(), state["align_mean"].clone().float()
        if self.ranks and "align_predicted" in state:
            self.predicted = state["align_predicted"].clone().float()

    def _observe_predicted(self, probs: torch.Tensor, valid: torch.Tensor) -> None:
        c = len(self.predicted)
        stats = torch.cat([torch.bincount(probs.argmax(1)[valid], minlength=c), valid.sum()[None]]).float()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(stats)
        counts, n = stats[:c].cpu(), float(stats[c])
        if n > 0:
            fresh = not bool(self.predicted.any())
            self.predicted = counts / n if fresh else self.momentum * self.predicted + (1 - self.momentum) * counts / n

    def __call__(self, y: torch.Tensor, ignore: torch.Tensor, probs: torch.Tensor, *others: torch.Tensor):
        """Observe the labeled batch ``y`` and ``probs`` (B, C, H, W) on its pixels outside ``ignore``, then
        return ``probs`` and ``others`` (the partner's, say) aligned with the banks."""
        if not (self.on or self.ranks):
            return (probs, *others)
        c = len(self.mean)
        valid = ~ignore
        stats = torch.stack([torch.bincount(y[y < c], minlength=c).to(probs.dtype),
                             probs.permute(1, 0, 2, 3)[:, valid].sum(1),
                             valid.sum().to(probs.dtype).expand(c)])
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(stats)  # one pair of banks for every process
        counts, sums, n = stats.cpu()
        self.labeled += counts.double()
        if n[0] > 0:
            batch = sums / n[0]
            fresh = not bool(self.mean.any())  # the first batch sets the bank: no pull towards zero
            self.mean = batch if fresh else self.momentum * self.mean + (1 - self.momentum) * batch
        out = (probs, *others)
        if self.on and self.labeled.any() and self.mean.any():
            out = tuple(align(p, self.labeled_shares(), self.mean) for p in out)
        if self.ranks:
            self._observe_predicted(out[0], valid)
        return out
