"""SemiRES for referring expression segmentation, the task of its paper (ICML 2024; code
github nini0919/SemiRES; docs/methods.md, "semires_res"): one referent per expression.

    burn-in (burn_in_steps):  L = L_x                          (teacher copied from the student at its end)
    then:                     L = sup_weight * L_x + L_u       (IOM script: sup_weight 10; CPI script: 1)

L_x: the run's criterion; SemiRES's configs set ``train.class_weights: [0.9, 1.1]`` (background, referent),
a per-pixel weighted CE averaged over pixels. The EMA teacher (0.9996, eval mode, no_grad) predicts the
weak view (the resized image; no flip, expressions say left and right); its referent mask (p > 0.5) is
replaced by the proposal IOM or CPI matches (``matcher``), and where none matches PWA weights the teacher's
mask per pixel. The strong view (ColorJitter 0.25, p 0.5) learns it. L_u is the mean of two groups, each a
mean over its pixels, as the authors' code: the refined samples' criterion and the PWA samples' weighted
CE. ``matcher: none`` is the teacher-student recipe without refinement (every sample a PWA sample).
``miss_rate`` logs the share of samples that fell back to PWA.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict

import torch
import torch.nn.functional as F

from semiseg.config import choice
from semiseg.data.augment import SEMIRES_STRONG, strong_photometric
from semiseg.methods.base import Method, MethodConfig
from semiseg.methods.registry import METHODS
from semiseg.methods.semires import SemiRESConfig
from semiseg.methods.teacher import BurnIn, EMATeacher
from semiseg.pseudo.refiners import refine_binary


@dataclass
class ReferringSemiRESConfig(MethodConfig):
    matcher: str = choice("iom", "cpi", "none")  # how a proposal is matched; none: no refinement, PWA everywhere
    ema_momentum: float = SemiRESConfig.ema_momentum  # SemiRES's settings, as the semantic recipe's
    ema_horizon: float = 0.0  # > 0: the momentum from a horizon given as a share of the schedule
    burn_in_steps: int = 500
    sup_weight: float = SemiRESConfig.sup_weight


@METHODS.register("semires_res")
class ReferringSemiRES(BurnIn, Method):
    Config = ReferringSemiRESConfig
    tasks = ("res",)
    unlabeled_streams = 1

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.teacher = EMATeacher(self.student, self.cfg.ema_momentum)

    @classmethod
    def proposals_needed(cls, cfg: Any) -> bool:
        return cfg.matcher != "none"

    def training_step(self, batch: Dict[str, torch.Tensor], step: int) -> Dict[str, torch.Tensor]:
        c = self.cfg
        loss_x = self.criterion(self.model(batch["x"], batch["text"]), batch["y"])
        if self.burning_in(step):
            return {"loss": loss_x, "loss_x": loss_x.detach()}
        u, text = batch["u"], batch["u_text"]
        p_fg = self.teacher.probs(u, text=text)[:, 1]
        if c.matcher == "none":  # no proposals: refine_binary falls back to PWA whichever the matcher
            none = torch.zeros(0, *p_fg.shape[1:], dtype=torch.bool, device=p_fg.device)
            props, kind = [none] * p_fg.shape[0], "iom"
        else:
            props, kind = batch["u_props"], c.matcher
        pls, weights, refined = [], [], []
        for i in range(p_fg.shape[0]):
            pl, w, ok = refine_binary(p_fg[i], props[i], kind)
            pls.append(pl), weights.append(w), refined.append(ok)
        pl, weight = torch.stack(pls), torch.stack(weights)
        refined = torch.tensor(refined, device=pl.device)
        pred = self.model(strong_photometric(u, self.mean, self.std, **SEMIRES_STRONG), text).float()
        groups = []
        if refined.any():
            groups.append(self.criterion(pred[refined], pl[refined]))
        if (~refined).any():
            groups.append((F.cross_entropy(pred[~refined], pl[~refined], reduction="none") * weight[~refined]).mean())
        loss_u = sum(groups) / len(groups)
        loss = c.sup_weight * loss_x + loss_u
        return {"loss": loss, "loss_x": loss_x.detach(), "loss_u": loss_u.detach(),
                "miss_rate": (~refined).float().mean()}
