"""Teachers: an EMA copy of the student (parameters and buffers), or none (the student under no_grad)."""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMATeacher(nn.Module):
    """``t <- m * t + (1 - m) * s`` over every floating state entry (weights and BN statistics).

    ``ramp=True`` uses UniMatch V2's ``m_step = min(1 - 1 / (step + 1), m)``, so the teacher follows the
    student closely at first; ``ramp=False`` uses the constant ``m`` (DSSN 0.996, SemiRES 0.9996).
    Never DDP-wrapped; saved with the method state.
    """

    def __init__(self, student: nn.Module, momentum: float, ramp: bool = False) -> None:
        super().__init__()
        self.module = copy.deepcopy(student)
        self.module.requires_grad_(False)
        self.momentum, self.ramp = momentum, ramp

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    @property
    def horizon(self) -> float:
        """Steps the average reaches back (its weights decay by 1/e over them): 1 / (1 - m)."""
        return 1 / (1 - self.momentum) if self.momentum < 1 else float("inf")

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
