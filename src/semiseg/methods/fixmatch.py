"""FixMatch for segmentation, as UniMatch's fixmatch.py: one strong CutMixed view, threshold 0.95.

    L = 1/2 [L_x + L_s]

Pseudo-labels come from the same network: the weak view in train mode (same forward as the labeled
batch), the CutMix partner in eval mode under no_grad. L_s is masked CE divided by non-ignored pixels.
"""
from __future__ import annotations

from typing import Dict

import torch

from semiseg.data.augment import mix
from semiseg.losses import masked_ce
from semiseg.methods.common import SemiMethod, binary_note
from semiseg.methods.registry import METHODS


@METHODS.register("fixmatch")
class FixMatch(SemiMethod):
    pastes = True
    aligns = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.num_classes == 2:
            self.notes.append(binary_note("fixmatch"))

    def training_step(self, batch: Dict[str, torch.Tensor], step: int) -> Dict[str, torch.Tensor]:
        x, y, u_w, ign_u = batch["x"], batch["y"], batch["u"], batch["u_ignore"]
        u_mix, ign_mix = self.partner.images(batch)
        probs_mix = self.predict_eval(u_mix)

        box = self.partner.box(u_w)
        paste = self.paste.draw(x, y, u_w.shape[0], self.strong)  # None unless method.paste_p
        u_s = self.paste.images(mix(self.strong(u_w), self.strong(u_mix), box), paste)

        pred_x, pred_u_w = self.model(torch.cat([x, u_w])).split([x.shape[0], u_w.shape[0]])
        with self.perturbed_stats():
            pred_u_s = self.model(u_s)

        probs_w = pred_u_w.detach().float().softmax(1)
        probs_w, probs_mix = self.align(y, ign_u, probs_w, probs_mix)  # unchanged unless distribution_alignment
        pl_w, w_w = self.labeler(probs_w, ign_u, batch.get("u_props"))
        ((pl_s, w_s, ign_s),) = self.labeler.mixed_views([box], probs_w, ign_u, probs_mix, ign_mix,
                                                          self.partner.proposals(batch), (pl_w, w_w))
        pl_s, w_s, ign_s = self.paste.labels(pl_s, w_s, ign_s, paste)

        loss_x = self.criterion(pred_x, y)
        self.paste.observe(pred_x, y)
        loss_s = masked_ce(pred_u_s, pl_s, w_s, ign_s)
        loss = (loss_x + loss_s) / 2
        # statistics on the weak view's own selection: the hidden labels belong to u, not to the mixed view
        return {"loss": loss, "loss_x": loss_x.detach(), "loss_s": loss_s.detach(),
                **self.stats(pl_w, w_w, ign_u, batch), **self.labeler.log()}
