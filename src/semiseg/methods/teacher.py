"""Teachers: an EMA copy of the student (parameters and buffers), or none (the student under no_grad)."""
from __future__ import annotations

import copy
from typing import Callable, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn


class EMATeacher(nn.Module):
    """``t <- m * t + (1 - m) * s`` over every floating state entry (weights and BN statistics).

    ``ramp=True`` uses UniMatch V2's ``m_step = min(1 - 1 / (step + 1), m)``, so the teacher follows the
    student closely at first; ``ramp=False`` uses the constant ``m`` (DSSN 0.996, SemiRES 0.9996).
    ``scales`` other than ``[1.0]`` label at several input scales, the probabilities averaged at the input
    size (Naive-Student's multi-scale pseudo-labels; off as the authors label). Never DDP-wrapped; saved
    with the method state.
    """

    def __init__(self, student: nn.Module, momentum: float, ramp: bool = False,
                 scales: Sequence[float] = (1.0,)) -> None:
        super().__init__()
        self.module = copy.deepcopy(student)
        self.module.requires_grad_(False)
        self.momentum, self.ramp, self.scales = momentum, ramp, [float(s) for s in scales]

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    @torch.no_grad()
    def probs(self, x: torch.Tensor, batch_stats: bool = False, text=None) -> torch.Tensor:
        """The teacher's class probabilities (float32) for pseudo-labels: no_grad, eval mode, or train mode
        (BatchNorm on the batch's statistics, updating the running ones) where a method asks for it, as
        DSSN's code does through its first epoch. ``text``: a referring model's expressions."""
        self.train(batch_stats)
        return multiscale_probs(self.module if text is None else lambda xs: self.module(xs, text), x, self.scales)

    @property
    def horizon(self) -> float:
        return horizon(self.momentum)

    def rate(self, step: int) -> float:
        return min(1 - 1 / (step + 1), self.momentum) if self.ramp else self.momentum

    @torch.no_grad()
    def update(self, student: nn.Module, step: int) -> None:
        m = self.rate(step)
        s = student.state_dict()
        for k, t in self.module.state_dict().items():
            if t.dtype.is_floating_point:
                t.mul_(m).add_(s[k].detach(), alpha=1 - m)
            else:  # num_batches_tracked
                t.copy_(s[k])

    @torch.no_grad()
    def copy_from(self, student: nn.Module) -> None:
        self.module.load_state_dict(student.state_dict())

    def follow(self, student: nn.Module, step: int, copy_until: int = 0) -> None:
        """After optimizer step ``step``: a copy of the student (keep rate 0) while ``step < copy_until`` (DSSN's
        warm-up, SemiRES's burn-in), the EMA update afterwards."""
        if step < copy_until:
            self.copy_from(student)
        else:
            self.update(student, step)


def multiscale_probs(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, scales: Sequence[float],
                     size: Optional[Tuple[int, int]] = None) -> torch.Tensor:
    """Class probabilities (float32) of ``forward`` at each input scale (bilinear), each map's logits resized
    to ``size`` (default: the input's), averaged over the scales."""
    size = tuple(size or x.shape[-2:])
    total = 0
    for s in scales:
        xs = x if s == 1 else F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=True)
        logits = forward(xs).float()
        if tuple(logits.shape[-2:]) != size:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=True)
        total = total + logits.softmax(1)
    return total / len(scales)


class BurnIn:
    """SemiRES's schedule, shared by its recipes for both tasks: the labeled loss alone for ``burn_in_steps``
    steps with the teacher a copy of the student, then the teacher's EMA (from the burned-in student) and the
    unlabeled loss. A method using it has ``self.cfg.burn_in_steps``, ``self.teacher`` and ``self.student``."""

    def burning_in(self, step: int) -> bool:
        return step < self.cfg.burn_in_steps

    def after_step(self, step: int) -> None:
        self.teacher.follow(self.student, step, copy_until=self.cfg.burn_in_steps)


def horizon(momentum: float) -> float:
    """Steps an EMA with this momentum reaches back (older weights decay by 1/e over them): 1 / (1 - m)."""
    return 1 / (1 - momentum) if momentum < 1 else float("inf")


HORIZON_WARN = 0.05  # share of the schedule above which an EMA teacher lags the student noticeably


def teacher_horizon_note(momentum: float, iters: int) -> str:
    """The EMA teacher's horizon 1/(1-m) as a share of the schedule; a warning when it is long. DSSN's 0.996
    is 250 steps, 0.2% of its VOC run: on a 1500-step run it is 17%, and at step 250 the teacher still
    holds 37% of its random start."""
    steps = horizon(momentum)
    share = steps / max(iters, 1)
    note = f"EMA teacher: momentum {momentum:.6g}, horizon {steps:.0f} steps = {100 * share:.1f}% of {iters} steps"
    if share > HORIZON_WARN:
        note += (f"\nwarning: the teacher's horizon is over {100 * HORIZON_WARN:.0f}% of the schedule: it lags the "
                 "student for much of the run; set method.ema_horizon (a share of the schedule, e.g. 0.01) or "
                 "method.ema_momentum")
    return note
