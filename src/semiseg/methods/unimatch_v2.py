"""UniMatch V2 recipe (arXiv 2410.10777) on our DeepLabV3+: EMA teacher, two strong views with
Complementary Dropout, CutMix within the batch (partner = the batch reversed).

    L = 1/2 [L_x + 1/2 (L_s1 + L_s2)]

The EMA teacher (eval mode, no_grad) labels the weak view; its momentum ramps as
min(1 - 1/(step + 1), 0.996). Complementary Dropout perturbs c1 and c4 of the two strong views with
complementary channel masks, one mask for both levels, exactly half of the pairs left unperturbed.
The paper's DINOv2 + DPT network is not available offline; the recipe is.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

import torch

from semiseg.config import choice
from semiseg.data.augment import mix
from semiseg.losses import masked_ce
from semiseg.methods.common import SemiMethod, TeacherConfig
from semiseg.methods.registry import METHODS
from semiseg.methods.teacher import EMATeacher


@dataclass
class UniMatchV2Config(TeacherConfig):
    mix: str = choice("flip", "batch", "roll")


@METHODS.register("unimatch_v2")
class UniMatchV2(SemiMethod):
    Config = UniMatchV2Config
    pastes = True
    aligns = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.teacher = EMATeacher(self.student, self.cfg.ema_momentum, ramp=True, scales=self.cfg.teacher_scales)

    def training_step(self, batch: Dict[str, torch.Tensor], step: int) -> Dict[str, torch.Tensor]:
        x, y, u_w, ign_u = batch["x"], batch["y"], batch["u"], batch["u_ignore"]
        u_mix, ign_mix = self.partner.images(batch)
        probs_w = self.teacher.probs(u_w)
        probs_mix = probs_w.flip(0) if self.cfg.mix == "flip" else self.teacher.probs(u_mix)
        probs_w, probs_mix = self.align(y, ign_u, probs_w, probs_mix)  # unchanged unless distribution_alignment

        box1, box2 = self.partner.box(u_w), self.partner.box(u_w)
        u_s1 = mix(self.strong(u_w), self.strong(u_mix), box1)
        u_s2 = mix(self.strong(u_w), self.strong(u_mix), box2)
        paste = self.paste.draw(x, y, u_w.shape[0], self.strong)  # None unless method.paste_p
        u_s1, u_s2 = self.paste.images(u_s1, paste), self.paste.images(u_s2, paste)

        pred_x = self.model(x)
        with self.perturbed_stats():
            pred_u_s1, pred_u_s2 = self.model(torch.cat([u_s1, u_s2]), comp_drop=True).chunk(2)

        pl_w, w_w = self.labeler(probs_w, ign_u, batch.get("u_props"))
        views = self.labeler.mixed_views([box1, box2], probs_w, ign_u, probs_mix, ign_mix,
                                         self.partner.proposals(batch), (pl_w, w_w))
        (pl_s1, w_s1, ign_s1), (pl_s2, w_s2, ign_s2) = [self.paste.labels(*v, paste) for v in views]

        loss_x = self.criterion(pred_x, y)
        self.paste.observe(pred_x, y)
        loss_s1 = masked_ce(pred_u_s1, pl_s1, w_s1, ign_s1)
        loss_s2 = masked_ce(pred_u_s2, pl_s2, w_s2, ign_s2)
        loss = (loss_x + 0.5 * (loss_s1 + loss_s2)) / 2
        return {"loss": loss, "loss_x": loss_x.detach(), "loss_s1": loss_s1.detach(), "loss_s2": loss_s2.detach(),
                **self.stats(pl_w, w_w, ign_u, batch), **self.labeler.log()}

    def after_step(self, step: int) -> None:
        self.teacher.update(self.student, step)
