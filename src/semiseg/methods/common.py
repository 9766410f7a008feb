"""What the semi-supervised recipes share: their config fields and a base that composes the parts of
``methods/parts.py`` (strong view, CutMix partner, perturbed views' statistics, pseudo-labeler)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List

import torch

from semiseg.config import bounded, choice
from semiseg.errors import SemisegError
from semiseg.methods.base import Method, MethodConfig
from semiseg.methods.parts import (CutMixPartner, DistributionAlignment, LabeledPaste, PerturbedStats, PseudoLabeler,
                                   StrongView)
from semiseg.pseudo.selectors import selection_stats


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
    # labeled objects pasted into the strong views with their true labels, per unlabeled image with this
    # probability, the least confident classes most often (parts.LabeledPaste); 0: off, as every author trains
    paste_p: float = bounded(0.0, 0.0, 1.0)
    # the probabilities pseudo-labels are made from, aligned to the labeled class shares before selection
    # (parts.DistributionAlignment, ReMixMatch's distribution alignment); off, as every author trains
    distribution_alignment: bool = False


@dataclass
class TeacherConfig(SemiConfig):
    """The EMA teacher's knobs. Its averaging horizon is 1/(1 - m) steps: 250 for 0.996, 0.2% of DSSN's
    123k-iteration VOC run but 17% of a 1500-step CPU run, where the teacher then still holds a third of
    its random start at step 250. ``ema_horizon`` > 0 sets m from a horizon given as a share of the
    schedule, m = 1 - 1/(ema_horizon * train.iters), instead of ``ema_momentum``. ``teacher_scales``: the
    input scales the teacher labels at, its probabilities averaged (``[1.0]``: once, as authored)."""

    ema_momentum: float = 0.996
    ema_horizon: float = 0.0
    teacher_scales: List[float] = bounded([1.0], 0.25, 4.0, min_length=1)


def binary_note(method: str) -> str:
    """What was measured for this recipe, as authored, on two-class data: a first-run notice (the trainer
    logs a method's notes), pointing to the comparison that settles it on the user's own data."""
    return (f"on two-class data {method} as authored fell below supervised-only on every seed of the binary "
            "suite with varied lighting (docs/benchmarks.md, \"Binary data\"); measure it on yours: semiseg compare "
            f"CONFIG --recipes {method},dssn-horizon-clean")


class SemiMethod(Method):
    """Base for methods with unlabeled data: it composes the parts of ``methods/parts.py`` from the config
    (``self.strong``, ``self.partner``, ``self.perturbed_stats``, ``self.labeler``) and logs the selection."""

    Config = SemiConfig
    pastes = False  # its strong views take LabeledPaste's objects (method.paste_p)
    aligns = False  # its pseudo-labels' probabilities pass through DistributionAlignment

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        c = self.cfg
        if c.paste_p and not self.pastes:
            raise SemisegError(f"method.paste_p={c.paste_p}: method {type(self).__name__.lower()} has no strong views "
                               "to paste labeled objects into; fixmatch, unimatch, unimatch_v2 and dssn have")
        if c.distribution_alignment and not self.aligns:
            raise SemisegError(f"method.distribution_alignment: method {type(self).__name__.lower()} does not align "
                               "its pseudo-labels; fixmatch, unimatch, unimatch_v2 and dssn do")
        self.paste = LabeledPaste(c.paste_p, self.num_classes)
        self.align = DistributionAlignment(c.distribution_alignment, self.num_classes)
        self.strong = StrongView(c.strong_view, self.mean, self.std)
        self.partner = CutMixPartner(c.mix, c.cutmix_p)
        self.perturbed_stats = PerturbedStats(c.running_stats, self.student)
        # the class shares reach a selector that takes them (class_share) from the alignment's banks
        self.labeler = PseudoLabeler(c.selector, c.refiner, self.num_classes,
                                     self.align.shares if self.aligns else None)
        self.align.ranks = bool(self.labeler.wants)
        self.notes += self.labeler.notes
        self.unlabeled_streams = self.partner.streams  # the trainer builds this many unlabeled loaders

    @classmethod
    def proposals_needed(cls, cfg: Any) -> bool:
        return cls.needs_proposals or bool(cfg.refiner)  # a refiner matches the teacher's labels to proposals

    def state_dict(self) -> Dict[str, Any]:
        state = super().state_dict()
        if self.paste.p:
            state["paste_confidence"] = self.paste.confidence.clone()
        return {**state, **self.align.state()}

    def load_state_dict(self, state: Dict[str, Any], source: str = "the method state") -> None:
        super().load_state_dict(state, source)
        if self.paste.p and "paste_confidence" in state:
            self.paste.confidence = state["paste_confidence"].clone().float()
        self.align.load(state)

    @torch.no_grad()
    def predict_eval(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities from the model in eval mode (UniMatch's CutMix-partner prediction)."""
        self.model.eval()
        probs = self.model(x).float().softmax(1)
        self.model.train()
        return probs

    def stats(self, pl, weight, ignore, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Mask ratios; with ``data.hidden_labels`` also selection precision/recall against the unlabeled
        split's hidden ground truth (diagnostics only: it never reaches a loss)."""
        hidden = batch.get("u_hidden")
        return {k: v.detach() for k, v in selection_stats(pl, weight, ignore, self.num_classes, hidden).items()}
