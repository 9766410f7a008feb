"""UniMatch (CVPR 2023) V1, as its authors' unimatch.py: two strong views and one feature-perturbed view.

    L = 1/2 [L_x + 0.25 L_s1 + 0.25 L_s2 + 0.5 L_fp]

The weak prediction (train mode, the same forward as the labeled batch, with one Dropout2d(0.5) FP
branch on c1 and c4) labels the FP branch and, outside the CutMix boxes, both strong views; inside
each view's own box the partner's eval-mode prediction does. Threshold 0.95 (VOC/COCO), 0 (Cityscapes).
"""
from __future__ import annotations

from typing import Dict

import torch

from semiseg.data.augment import mix
from semiseg.losses import masked_ce
from semiseg.methods.common import SemiMethod
from semiseg.methods.registry import METHODS


@METHODS.register("unimatch")
class UniMatch(SemiMethod):
    def training_step(self, batch: Dict[str, torch.Tensor], step: int) -> Dict[str, torch.Tensor]:
        x, y, u_w, ign_u = batch["x"], batch["y"], batch["u"], batch["u_ignore"]
        u_mix, ign_mix = self.partner(batch)
        probs_mix = self.predict_eval(u_mix)

        box1, box2 = self.box(u_w), self.box(u_w)
        u_s1 = mix(self.strong(u_w), self.strong(u_mix), box1)
        u_s2 = mix(self.strong(u_w), self.strong(u_mix), box2)

        n = x.shape[0]
        preds, (preds_fp,) = self.model(torch.cat([x, u_w]), fp_branches=1)
        pred_x, pred_u_w = preds.split([n, u_w.shape[0]])
        pred_u_w_fp = preds_fp[n:]
        with self.perturbed_stats():
            pred_u_s1, pred_u_s2 = self.model(torch.cat([u_s1, u_s2])).chunk(2)

        probs_w = pred_u_w.detach().float().softmax(1)
        pl_w, w_w = self.pseudo(probs_w, ign_u, batch.get("u_props"))
        (pl_s1, w_s1, ign_s1), (pl_s2, w_s2, ign_s2) = self.view_labels([box1, box2], probs_w, ign_u, probs_mix,
                                                                         ign_mix, batch, (pl_w, w_w))

        loss_x = self.criterion(pred_x, y)
        loss_s1 = masked_ce(pred_u_s1, pl_s1, w_s1, ign_s1)
        loss_s2 = masked_ce(pred_u_s2, pl_s2, w_s2, ign_s2)
        loss_fp = masked_ce(pred_u_w_fp, pl_w, w_w, ign_u)
        loss = (loss_x + 0.25 * loss_s1 + 0.25 * loss_s2 + 0.5 * loss_fp) / 2
        return {"loss": loss, "loss_x": loss_x.detach(), "loss_s1": loss_s1.detach(), "loss_s2": loss_s2.detach(),
                "loss_fp": loss_fp.detach(), **self.stats(pl_w, w_w, ign_u, batch), **self.refine_stats()}
