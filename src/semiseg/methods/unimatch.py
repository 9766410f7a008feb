"""UniMatch (CVPR 2023) V1, as its authors' unimatch.py: two strong views and one feature-perturbed view.

    L = 1/2 [L_x + 0.25 L_s1 + 0.25 L_s2 + 0.5 L_fp]

The weak prediction (train mode, the same forward as the labeled batch, with one Dropout2d(0.5) FP
branch on c1 and c4) labels the FP branch and, outside the CutMix boxes, both strong views; inside
each view's own box the partner's eval-mode prediction does. Threshold 0.95 (VOC/COCO), 0 (Cityscapes).

``fp`` and ``dual`` switch off the paper's two additions to FixMatch, for its ablation only: the image-level
streams keep 0.5 of the unlabeled weight beside the FP stream (1 without it), split evenly among the strong
views, so with both off the loss is FixMatch's 1/2 [L_x + L_s].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

import torch

from semiseg.data.augment import mix
from semiseg.losses import masked_ce
from semiseg.methods.common import SemiConfig, SemiMethod
from semiseg.methods.registry import METHODS


@dataclass
class UniMatchConfig(SemiConfig):
    fp: bool = True  # the feature-perturbed stream (off: ablation)
    dual: bool = True  # the second strong view (off: ablation)


@METHODS.register("unimatch")
class UniMatch(SemiMethod):
    Config = UniMatchConfig
    pastes = True
    aligns = True

    def training_step(self, batch: Dict[str, torch.Tensor], step: int) -> Dict[str, torch.Tensor]:
        x, y, u_w, ign_u = batch["x"], batch["y"], batch["u"], batch["u_ignore"]
        u_mix, ign_mix = self.partner.images(batch)
        probs_mix = self.predict_eval(u_mix)

        boxes = [self.partner.box(u_w) for _ in range(2 if self.cfg.dual else 1)]
        paste = self.paste.draw(x, y, u_w.shape[0], self.strong)  # None unless method.paste_p
        u_s = [self.paste.images(mix(self.strong(u_w), self.strong(u_mix), box), paste) for box in boxes]

        n = x.shape[0]
        if self.cfg.fp:
            preds, (preds_fp,) = self.model(torch.cat([x, u_w]), fp_branches=1)
        else:
            preds = self.model(torch.cat([x, u_w]))
        pred_x, pred_u_w = preds.split([n, u_w.shape[0]])
        with self.perturbed_stats():
            preds_s = self.model(torch.cat(u_s)).chunk(len(boxes))

        probs_w = pred_u_w.detach().float().softmax(1)
        probs_w, probs_mix = self.align(y, ign_u, probs_w, probs_mix)  # unchanged unless distribution_alignment
        pl_w, w_w = self.labeler(probs_w, ign_u, batch.get("u_props"))
        labels = self.labeler.mixed_views(boxes, probs_w, ign_u, probs_mix, ign_mix, self.partner.proposals(batch),
                                          (pl_w, w_w))
        labels = [self.paste.labels(*lab, paste) for lab in labels]

        loss_x = self.criterion(pred_x, y)
        self.paste.observe(pred_x, y)
        losses = {f"loss_s{i + 1}": masked_ce(pred, *lab) for i, (pred, lab) in enumerate(zip(preds_s, labels))}
        if self.cfg.fp:
            losses["loss_fp"] = masked_ce(preds_fp[n:], pl_w, w_w, ign_u)
        loss = (loss_x + self.unlabeled_loss(**losses)) / 2
        return {"loss": loss, "loss_x": loss_x.detach(), **{k: v.detach() for k, v in losses.items()},
                **self.stats(pl_w, w_w, ign_u, batch), **self.labeler.log()}

    def unlabeled_loss(self, loss_s1, loss_s2=None, loss_fp=None) -> torch.Tensor:
        """The paper's weights, and its ablation's: the image-level streams share what the FP stream leaves."""
        if self.cfg.fp and self.cfg.dual:
            return 0.25 * loss_s1 + 0.25 * loss_s2 + 0.5 * loss_fp  # UniMatch
        if self.cfg.fp:
            return 0.5 * loss_s1 + 0.5 * loss_fp  # without the second strong view
        if self.cfg.dual:
            return 0.5 * loss_s1 + 0.5 * loss_s2  # without the FP stream
        return loss_s1  # FixMatch
