"""DSSN: dual-level Siamese structure network (ACM MM 2023; code github kunzhan/DSSN, VOC tree).

Two Siamese pairs: the image-level pair (strong views s1, s2, each with its own CutMix box) and the
feature-level pair (two FP branches with independent Dropout2d masks on c1 and c4). An EMA teacher
labels the strong views on its CutMixed map; the FP branches learn from the student's own weak
prediction, as in the authors' code. Pseudo-labels are selected by CPLG (``class_aware``), per image.

    L = 1/2 [L_x + 0.25 (L_s1 + L_s2 + L_fp1 + L_fp2) + 0.01 (L_img + L_feat)]

L_img / L_feat pull each pair together pixel by pixel over all pixels, gradients into both branches.

Deviations and switches (docs/methods.md, "dssn"):
- ``consistency: mse`` (default) is the code's MSE of channel-standardised logits; ``gaussian`` is the
  paper's Gaussian-similarity form 1 - exp(-||z1 - z2||^2 / 2 sigma^2). With two classes the standardised
  logits are +-1/sqrt(2), the sign of the logit difference (no gradient but at ties, where it explodes):
  there the logits are centred only (``losses.standardize``), our form for binary data.
- The first ``warmup_steps`` steps (the code: 1, VOC; 5 epochs, Cityscapes) drop L_s1/L_s2 and copy the
  student into the teacher after the step; afterwards EMA 0.996 over parameters and buffers.
- ``image_pair`` / ``feature_pair`` switch off L_img / L_feat (the Siamese consistency of a pair) for
  ablations; both views of each pair keep their pseudo-label losses.
- ``teacher_mode: first_epoch`` (default, the code): the teacher normalises with batch statistics through
  the first epoch (it is left in train mode until the first evaluation calls ``.eval()``), with running
  statistics afterwards; ``eval`` uses running statistics from step 0.
- ``extra_aug`` (default on, the VOC code): AugSeg's 1-3 random ops after the usual strong augmentation;
  off gives UniMatch's strong view alone (the Cityscapes code).
- ``align_fp`` (off: the FP branches label from the student's own map, unaligned): with
  ``distribution_alignment``, that map is aligned too, by the banks the teacher's maps fill.
- ``burn_in_steps`` (off: 0): the labeled loss alone for these steps, the teacher a copy of the student, so
  that no unlabeled loss learns from an early model's maps; the warm-up above keeps the FP branches on.
- ``ema_horizon`` sets the EMA momentum from a horizon given as a share of the schedule (off by default:
  0.996, whose 250-step horizon is 0.2% of the VOC run but 17% of a 1500-step CPU run).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict

import torch

from semiseg.config import bounded, choice
from semiseg.data.augment import mix
from semiseg.data.augment_extra import random_ops
from semiseg.errors import SemisegError
from semiseg.losses import consistency, masked_ce
from semiseg.methods.common import SemiMethod, TeacherConfig, binary_note
from semiseg.methods.parts import StrongView
from semiseg.methods.registry import METHODS
from semiseg.methods.teacher import EMATeacher


@dataclass
class DSSNConfig(TeacherConfig):
    selector: Dict[str, Any] = field(default_factory=lambda: {"name": "class_aware", "tau_low": 0.92, "ratio": 0.96})
    warmup_steps: int = 1
    teacher_mode: str = choice("first_epoch", "eval")  # first_epoch: batch statistics in epoch 0 (the code)
    consistency: str = choice("mse", "gaussian")  # mse (code) | gaussian (paper)
    sigma: float = 0.0  # gaussian width; 0 = sqrt(num classes)
    consistency_weight: float = 0.01
    image_pair: bool = True  # ablation switches: the image-level and feature-level Siamese pairs
    feature_pair: bool = True
    extra_aug: bool = True  # AugSeg's 1-3 random ops after the strong augmentation (the VOC code)
    align_fp: bool = False  # with distribution_alignment: the FP branches' labels (the student's map) aligned too
    burn_in_steps: int = bounded(0, 0)  # the labeled loss alone for these first steps (teacher copied)


@METHODS.register("dssn")
class DSSN(SemiMethod):
    Config = DSSNConfig
    pastes = True
    aligns = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.teacher = EMATeacher(self.student, self.cfg.ema_momentum, scales=self.cfg.teacher_scales)
        if self.num_classes == 2 and not self.cfg.ema_horizon and self.cfg.running_stats == "all":  # as authored
            self.notes.append(binary_note("dssn"))
        if self.cfg.align_fp and not self.cfg.distribution_alignment:
            raise SemisegError("method.align_fp: needs method.distribution_alignment=true, whose banks it aligns with")
        if self.cfg.extra_aug:  # AugSeg's random operations after the strong view's photometric part
            self.strong = StrongView(self.cfg.strong_view, self.mean, self.std, then=random_ops)

    def training_step(self, batch: Dict[str, torch.Tensor], step: int) -> Dict[str, torch.Tensor]:
        c = self.cfg
        x, y, u_w, ign_u = batch["x"], batch["y"], batch["u"], batch["u_ignore"]
        if step < c.burn_in_steps:  # labels alone; after_step copies the student into the teacher
            pred_x = self.model(x)
            self.paste.observe(pred_x, y)
            loss_x = self.criterion(pred_x, y)
            return {"loss": loss_x, "loss_x": loss_x.detach()}
        u_mix, ign_mix = self.partner.images(batch)
        batch_stats = c.teacher_mode == "first_epoch" and step < self.steps_per_epoch
        t_w, t_mix = self.teacher.probs(u_w, batch_stats), self.teacher.probs(u_mix, batch_stats)

        box1, box2 = self.partner.box(u_w), self.partner.box(u_w)
        u_s1 = mix(self.strong(u_w), self.strong(u_mix), box1)
        u_s2 = mix(self.strong(u_w), self.strong(u_mix), box2)
        paste = self.paste.draw(x, y, u_w.shape[0], self.strong)  # None unless method.paste_p
        u_s1, u_s2 = self.paste.images(u_s1, paste), self.paste.images(u_s2, paste)

        n = x.shape[0]
        preds, (fp1, fp2) = self.model(torch.cat([x, u_w]), fp_branches=2)
        pred_x, pred_u_w = preds.split([n, u_w.shape[0]])
        p_fp1, p_fp2 = fp1[n:], fp2[n:]
        s_w = pred_u_w.detach().float().softmax(1)
        if c.align_fp:  # the FP branches' labels aligned with the teacher's maps, by the same banks
            t_w, t_mix, s_w = self.align(y, ign_u, t_w, t_mix, s_w)
        else:  # unchanged unless distribution_alignment
            t_w, t_mix = self.align(y, ign_u, t_w, t_mix)
        with self.perturbed_stats():
            p_s1, p_s2 = self.model(torch.cat([u_s1, u_s2])).chunk(2)

        # FP branches: the student's own weak prediction; strong views: the teacher's CutMixed map
        pl_w, w_w = self.labeler(s_w, ign_u, batch.get("u_props"))
        pl_t, w_t = self.labeler(t_w, ign_u, batch.get("u_props"))  # the teacher's weak-view labels (also logged)
        views = self.labeler.mixed_views([box1, box2], t_w, ign_u, t_mix, ign_mix, self.partner.proposals(batch),
                                         (pl_t, w_t))
        (pl_s1, w_s1, ign_s1), (pl_s2, w_s2, ign_s2) = [self.paste.labels(*v, paste) for v in views]

        loss_x = self.criterion(pred_x, y)
        self.paste.observe(pred_x, y)
        strong_on = float(step >= c.warmup_steps)
        loss_s1 = masked_ce(p_s1, pl_s1, w_s1, ign_s1) * strong_on
        loss_s2 = masked_ce(p_s2, pl_s2, w_s2, ign_s2) * strong_on
        loss_fp1 = masked_ce(p_fp1, pl_w, w_w, ign_u)
        loss_fp2 = masked_ce(p_fp2, pl_w, w_w, ign_u)
        zero = loss_x.new_zeros(())
        loss_img = consistency(p_s1, p_s2, c.consistency, c.sigma) if c.image_pair else zero
        loss_feat = consistency(p_fp1, p_fp2, c.consistency, c.sigma) if c.feature_pair else zero
        loss = (loss_x + 0.25 * (loss_s1 + loss_s2 + loss_fp1 + loss_fp2)
                + c.consistency_weight * (loss_img + loss_feat)) / 2
        return {"loss": loss, "loss_x": loss_x.detach(), "loss_s1": loss_s1.detach(), "loss_s2": loss_s2.detach(),
                "loss_fp": (loss_fp1 + loss_fp2).detach() / 2, "loss_img": loss_img.detach(),
                "loss_feat": loss_feat.detach(), **self.stats(pl_t, w_t, ign_u, batch), **self.labeler.log()}

    def after_step(self, step: int) -> None:
        self.teacher.follow(self.student, step, copy_until=max(self.cfg.warmup_steps, self.cfg.burn_in_steps))
