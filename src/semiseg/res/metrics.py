"""RES metrics as LAVT/SemiRES report them: overall IoU (sum I / sum U over all expressions), mean IoU
(mean of per-expression IoU) and precision at IoU thresholds 0.5-0.9."""
from __future__ import annotations

from typing import Dict, Iterable, Tuple

import torch

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


class ResMetrics:
    def __init__(self) -> None:
        self.inter, self.union, self.ious = 0.0, 0.0, []

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """pred, target: (B, H, W) bool (or 0/1) masks, one per expression."""
        pred, target = pred.bool().flatten(1), target.bool().flatten(1)
        inter = (pred & target).sum(1).double()
        union = (pred | target).sum(1).double()
        self.inter += inter.sum().item()
        self.union += union.sum().item()
        # an empty prediction of an empty target is a perfect answer
        self.ious += torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union)).tolist()

    def compute(self) -> Dict[str, float]:
        ious = torch.tensor(self.ious, dtype=torch.float64)
        out = {"oIoU": 100 * self.inter / max(self.union, 1), "mIoU": 100 * ious.mean().item() if len(ious) else 0.0}
        out.update({f"P@{t}": 100 * (ious > t).double().mean().item() if len(ious) else 0.0 for t in THRESHOLDS})
        return out


def res_metrics(pairs: Iterable[Tuple[torch.Tensor, torch.Tensor]]) -> Dict[str, float]:
    m = ResMetrics()
    for pred, target in pairs:
        m.update(pred, target)
    return m.compute()
