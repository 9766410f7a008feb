"""SemiRES (ICML 2024, "SAM as the guide") for semantic segmentation: mask proposals refine the pseudo-labels
of an EMA teacher (code github nini0919/SemiRES; docs/methods.md, "semires").

    burn-in (optional): L = L_x, teacher copied from the student at its end
    then:               L = sup_weight * L_x + unsup_weight * L_u

The EMA teacher (0.9996, parameters and buffers, eval mode, no_grad) predicts the weak view; its labels
are refined per image and per class by IOM (default; CPI as a switch) against the image's proposals,
with PWA's per-pixel weights where no proposal matches. The strong view learns from them: SemiRES's
ColorJitter(0.25) with p 0.5, the same geometry, no CutMix (``strong_view: unimatch`` gives the UniMatch
family's stronger view instead: jitter 0.5, grayscale, blur). The burn-in loss is the plain CE, as the
code's supervised stage. The IOM script weights the supervised loss x10
(``sup_weight``), the CPI script x1. ``miss_rate`` logs the share of class masks that fell back to PWA.

Deviations: SemiRES is binary (one referent); here every predicted class of an image is a mask to refine.
Its unlabeled loss averages a refined-sample CE and a PWA-sample CE per batch; here one masked CE over all
pixels with the per-pixel weights, divided by the valid pixels (the UniMatch family's rule).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict

import torch

from semiseg.config import choice
from semiseg.losses import masked_ce
from semiseg.methods.common import SemiMethod, TeacherConfig
from semiseg.methods.registry import METHODS
from semiseg.methods.teacher import BurnIn, EMATeacher


@dataclass
class SemiRESConfig(TeacherConfig):
    selector: Dict[str, Any] = field(default_factory=lambda: {"name": "none"})
    refiner: Dict[str, Any] = field(default_factory=lambda: {"name": "iom"})
    mix: str = choice("roll", "flip", "batch")  # no partner stream needed: SemiRES uses no CutMix
    cutmix_p: float = 0.0
    ema_momentum: float = 0.9996
    burn_in_steps: int = 0
    sup_weight: float = 10.0
    strong_view: str = choice("semires", "unimatch")  # ColorJitter 0.25 p 0.5 | jitter 0.5, grayscale, blur
    unsup_weight: float = 1.0


@METHODS.register("semires")
class SemiRES(BurnIn, SemiMethod):
    Config = SemiRESConfig
    needs_proposals = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.teacher = EMATeacher(self.student, self.cfg.ema_momentum, scales=self.cfg.teacher_scales)

    def training_step(self, batch: Dict[str, torch.Tensor], step: int) -> Dict[str, torch.Tensor]:
        c = self.cfg
        x, y = batch["x"], batch["y"]
        if self.burning_in(step):
            loss_x = self.criterion(self.model(x), y)
            return {"loss": loss_x, "loss_x": loss_x.detach()}
        u_w, ign_u = batch["u"], batch["u_ignore"]
        probs_w = self.teacher.probs(u_w)
        pl, weight = self.labeler(probs_w, ign_u, batch.get("u_props"))
        stats = self.stats(pl, weight, ign_u, batch)  # before any CutMix: the hidden labels belong to u
        u_s = self.strong(u_w)
        if c.cutmix_p > 0:
            u_mix, ign_mix = self.partner.images(batch)
            probs_mix = self.teacher.probs(u_mix)
            box = self.partner.box(u_w)
            u_s = torch.where(box.unsqueeze(1), self.strong(u_mix), u_s)
            ((pl, weight, ign_u),) = self.labeler.mixed_views([box], probs_w, ign_u, probs_mix, ign_mix,
                                                              self.partner.proposals(batch), (pl, weight))

        if c.running_stats == "clean":  # the strong view alone, so that its statistics can be left out
            pred_x = self.model(x)
            with self.perturbed_stats():
                pred_u_s = self.model(u_s)
        else:
            pred_x, pred_u_s = self.model(torch.cat([x, u_s])).split([x.shape[0], u_s.shape[0]])
        loss_x = self.criterion(pred_x, y)
        loss_u = masked_ce(pred_u_s, pl, weight, ign_u)
        loss = c.sup_weight * loss_x + c.unsup_weight * loss_u
        return {"loss": loss, "loss_x": loss_x.detach(), "loss_u": loss_u.detach(),
                **stats, **self.labeler.log()}
