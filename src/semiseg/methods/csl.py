"""CSL: confidence separable learning (ICCV 2025, Pan Liu and Jinshi Liu), as the near-official code.

A UniMatch-style single network, no EMA teacher. Views of each unlabeled image: weak (with one FP
branch), strong + CutMix, and masked (Trusted Mask Perturbation). Pseudo-labels and soft weights come
from the ``csl`` selector (per-image spectral separation in the confidence/dispersion plane).

    L = 1/2 [L_x + 0.25 L_s + 0.25 L_m + 0.5 L_fp]   (soft-weighted CE, divided by valid pixels)

- Weak labels: argmax of the detached weak prediction (train mode, same forward as the labeled batch).
- CutMix partner: predicted under no_grad in train mode (the code's ``on_train_batch_start``). Its labels
  and weights are selected on its own map and pasted inside the box.
- BatchNorm running statistics: only the labeled + weak forward updates them; the partner, strong and
  masked forwards use batch statistics and their updates are undone, as the code does
  (``running_stats: clean``, which any semi-supervised method can take; ``all`` lets every forward update).
- TMP: for half of the samples, mild jitter (0.2, 0.2, 0.2, 0.2) p 0.8 + blur p 0.5 and a block mask
  (cover 0.7) on a ``tmp_grid`` x ``tmp_grid`` grid (10: the code's 32-px blocks on its 321 crop, the
  same share of the image on any crop; ``tmp_block`` > 0 fixes the block size in pixels instead) that
  erases the *reliable* (weight 1) pixels of the current weak prediction (set to 0 in the
  normalised tensor, the mean colour); the other half get the ordinary strong view, unmasked. The masked
  view learns the weak labels and weights on all valid pixels, so erased pixels are inferred from context.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict

import torch

from semiseg.config import choice
from semiseg.data.augment import block_mask, mix, strong_photometric
from semiseg.losses import masked_ce
from semiseg.methods.common import SemiConfig, SemiMethod
from semiseg.methods.registry import METHODS


@dataclass
class CSLConfig(SemiConfig):
    selector: Dict[str, Any] = field(default_factory=lambda: {"name": "csl", "alpha": 8.0, "features": "raw"})
    tmp: bool = True  # Trusted Mask Perturbation (off: the masked view is a plain strong view)
    tmp_grid: int = 10  # cells per side: the code's 32 px blocks on a 321 crop
    tmp_block: int = 0  # > 0: block size in pixels instead of the grid
    tmp_cover: float = 0.7
    running_stats: str = choice("clean", "all")


@METHODS.register("csl")
class CSL(SemiMethod):
    Config = CSLConfig

    @torch.no_grad()
    def predict_partner(self, u_mix: torch.Tensor) -> torch.Tensor:
        with self.perturbed_stats():
            return self.model(u_mix).float().softmax(1)  # train mode: batch statistics

    def masked_view(self, u_w: torch.Tensor, w_w: torch.Tensor) -> torch.Tensor:
        b, _, h, w = u_w.shape
        strong = self.strong(u_w)
        if not self.cfg.tmp:
            return strong
        mild = strong_photometric(u_w, self.mean, self.std, p_jitter=0.8, p_gray=0.0, p_blur=0.5,
                                  jitter=(0.2, 0.2, 0.2, 0.2))
        erase = block_mask(b, h, w, u_w.device, self.cfg.tmp_block, self.cfg.tmp_cover,
                           grid=0 if self.cfg.tmp_block > 0 else self.cfg.tmp_grid) & (w_w == 1)
        masked = mild.masked_fill(erase.unsqueeze(1), 0.0)
        masked_half = (torch.rand(b, 1, 1, 1, device=u_w.device) < 0.5)
        return torch.where(masked_half, masked, strong)

    def training_step(self, batch: Dict[str, torch.Tensor], step: int) -> Dict[str, torch.Tensor]:
        x, y, u_w, ign_u = batch["x"], batch["y"], batch["u"], batch["u_ignore"]
        u_mix, ign_mix = self.partner.images(batch)
        probs_mix = self.predict_partner(u_mix)
        pl_mix, w_mix = self.labeler(probs_mix, ign_mix, self.partner.proposals(batch))

        n = x.shape[0]
        preds, (preds_fp,) = self.model(torch.cat([x, u_w]), fp_branches=1)
        pred_x, pred_u_w = preds.split([n, u_w.shape[0]])
        pred_u_w_fp = preds_fp[n:]
        pl_w, w_w = self.labeler(pred_u_w.detach().float().softmax(1), ign_u, batch.get("u_props"))

        box = self.partner.box(u_w)
        u_s = mix(self.strong(u_w), self.strong(u_mix), box)
        pl_s, w_s, ign_s = mix(pl_w, pl_mix, box), mix(w_w, w_mix, box), mix(ign_u, ign_mix, box)
        u_m = self.masked_view(u_w, w_w)
        with self.perturbed_stats():
            pred_u_s, pred_u_m = self.model(torch.cat([u_s, u_m])).chunk(2)

        loss_x = self.criterion(pred_x, y)
        loss_s = masked_ce(pred_u_s, pl_s, w_s, ign_s)
        loss_m = masked_ce(pred_u_m, pl_w, w_w, ign_u)
        loss_fp = masked_ce(pred_u_w_fp, pl_w, w_w, ign_u)
        loss = (loss_x + 0.25 * loss_s + 0.25 * loss_m + 0.5 * loss_fp) / 2
        return {"loss": loss, "loss_x": loss_x.detach(), "loss_s": loss_s.detach(), "loss_m": loss_m.detach(),
                "loss_fp": loss_fp.detach(), "mean_weight": (w_w.sum() / (~ign_u).sum().clamp(min=1)).detach(),
                **self.stats(pl_w, w_w, ign_u, batch), **self.labeler.log()}
