"""RES metrics as LAVT/SemiRES report them: overall IoU (sum I / sum U over all expressions), mean IoU
(mean of per-expression IoU) and precision at IoU thresholds 0.5-0.9.

Everything is kept as sums (``sums``), so processes that each scored a shard of the validation split add
theirs up (one all-reduce) before :meth:`ResMetrics.compute`."""
from __future__ import annotations

from typing import Dict, Iterable, Tuple

import torch

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


class ResMetrics:
    def __init__(self, device="cpu") -> None:
        # intersection, union, expressions, sum of per-expression IoU, expressions above each threshold
        self.sums = torch.zeros(4 + len(THRESHOLDS), dtype=torch.float64, device=device)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """pred, target: (B, H, W) bool (or 0/1) masks, one per expression."""
        pred, target = pred.bool().flatten(1), target.bool().flatten(1)
        inter = (pred & target).sum(1).double()
        union = (pred | target).sum(1).double()
        # an empty prediction of an empty target is a perfect answer
        ious = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
        above = torch.stack([(ious > t).sum() for t in THRESHOLDS]).double()
        count = torch.tensor(float(len(ious)), device=ious.device, dtype=torch.float64)
        self.sums += torch.cat([torch.stack([inter.sum(), union.sum(), count, ious.sum()]), above])

    def compute(self) -> Dict[str, float]:
        inter, union, n, iou_sum, *above = self.sums.tolist()
        out = {"oIoU": 100 * inter / max(union, 1), "mIoU": 100 * iou_sum / n if n else 0.0}
        out.update({f"P@{t}": 100 * a / n if n else 0.0 for t, a in zip(THRESHOLDS, above)})
        return out


def res_metrics(pairs: Iterable[Tuple[torch.Tensor, torch.Tensor]]) -> Dict[str, float]:
    m = ResMetrics()
    for pred, target in pairs:
        m.update(pred, target)
    return m.compute()
