"""UniMatch V2's training step as its authors' ``unimatch_v2.py`` runs it: the speed reference that
``semiseg bench speed --vs-reference`` times beside semiseg's ``unimatch_v2`` on the same DINOv2 + DPT
network, batch and crop.

What makes it the authors' step: fp32 without autocast, eager (no compile), the DINOv2 package's explicit
softmax attention (their logs run without xFormers), and their order and arithmetic:
- the EMA model (eval mode, no_grad) labels the weak view: confidence = max softmax, label = argmax;
- the labeled batch, then the two CutMixed strong batches concatenated with complementary dropout, as two
  forwards of the student;
- labels, confidences and ignore masks pasted by each box from the batch flipped along dim 0;
- L = (L_x + (L_s1 + L_s2) / 2) / 2, each L_s the CE of the pixels at confidence >= 0.95 summed over the
  crop's non-padding pixels;
- AdamW (their two groups: encoder at lr, the rest at lr x lr_multi), then the poly LR of the next step,
  then the EMA of every parameter and buffer at min(1 - 1/(it + 1), 0.996).

The inputs a data loader hands over (the strong views and CutMix boxes) are drawn with semiseg's helpers
in semiseg's order, so that with one seed per step both steps see the same views and dropout masks, and
their losses can be compared step by step.
"""
from __future__ import annotations

import copy
from typing import Dict

import torch
import torch.nn.functional as F

from semiseg.data.augment import mix

CONF_THRESH = 0.95


class ReferenceV2Step:
    """One call = one training step of the authors' loop on ``trainer``'s student (a DPT model built with
    ``model.attention=explicit``), its batches and its view helpers; its own EMA model and optimizer."""

    def __init__(self, trainer) -> None:
        t = trainer.cfg.train
        self.model, self.method, self.cfg = trainer.model, trainer.method, t
        self.model_ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        head = [p for n, p in self.model.named_parameters() if not n.startswith("backbone.")]
        self.optimizer = torch.optim.AdamW(
            [{"params": [p for p in self.model.backbone.parameters() if p.requires_grad], "lr": t.lr},
             {"params": head, "lr": t.lr * t.lr_multi}], lr=t.lr, betas=(0.9, 0.999), weight_decay=0.01)
        self.batches = trainer.batches
        self.autocast = trainer.autocast  # fp32 at the authors' settings (train.amp=none); else a yardstick

    @staticmethod
    def _paste(a: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
        out = a.clone()
        out[box == 1] = a.flip(0)[box == 1]
        return out

    def _unlabeled_loss(self, pred, mask_u_w, conf_u_w, ignore, box) -> torch.Tensor:
        mask, conf, ign = self._paste(mask_u_w, box), self._paste(conf_u_w, box), self._paste(ignore, box)
        loss = F.cross_entropy(pred, mask, reduction="none") * ((conf >= CONF_THRESH) & (ign != 255))
        return loss.sum() / (ign != 255).sum().item()

    def __call__(self, step: int) -> Dict[str, float]:
        batch = next(self.batches)
        m, model = self.method, self.model
        img_x, mask_x, img_u_w = batch["x"], batch["y"], batch["u"]
        ignore = batch["u_ignore"].long() * 255  # the authors' ignore mask: 255 on the crop's padding
        # the loader's work, drawn as semiseg's step draws it
        u_mix, _ = m.partner.images(batch)
        box1, box2 = m.partner.box(img_u_w), m.partner.box(img_u_w)
        img_u_s1 = mix(m.strong(img_u_w), m.strong(u_mix), box1)
        img_u_s2 = mix(m.strong(img_u_w), m.strong(u_mix), box2)

        with torch.no_grad(), self.autocast():
            pred_u_w = self.model_ema(img_u_w).detach().float()
            conf_u_w = pred_u_w.softmax(dim=1).max(dim=1)[0]
            mask_u_w = pred_u_w.argmax(dim=1)
        model.train()
        with self.autocast():
            pred_x = model(img_x).float()
            pred_u_s1, pred_u_s2 = model(torch.cat((img_u_s1, img_u_s2)), comp_drop=True).float().chunk(2)

        loss_x = F.cross_entropy(pred_x, mask_x, ignore_index=255)
        loss_u_s = (self._unlabeled_loss(pred_u_s1, mask_u_w, conf_u_w, ignore, box1)
                    + self._unlabeled_loss(pred_u_s2, mask_u_w, conf_u_w, ignore, box2)) / 2.0
        loss = (loss_x + loss_u_s) / 2.0
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()

        lr = self.cfg.lr * (1 - step / self.cfg.iters) ** 0.9  # the authors set the next step's LR here
        self.optimizer.param_groups[0]["lr"], self.optimizer.param_groups[1]["lr"] = lr, lr * self.cfg.lr_multi
        ratio = min(1 - 1 / (step + 1), 0.996)
        with torch.no_grad():
            for p, p_ema in zip(model.parameters(), self.model_ema.parameters()):
                p_ema.copy_(p_ema * ratio + p.detach() * (1 - ratio))
            for b, b_ema in zip(model.buffers(), self.model_ema.buffers()):
                b_ema.copy_(b_ema * ratio + b.detach() * (1 - ratio))
        return {"loss": loss.detach()}
