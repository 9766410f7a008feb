"""The referring task's evaluator: each expression's prediction at its image's size, scored as oIoU, mIoU
and P@X."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from semiseg.tasks.base import eval_loop
from semiseg.tasks.referring.metrics import ResMetrics


def evaluate_res(model: nn.Module, loader, device: torch.device, amp_dtype=None) -> ResMetrics:
    """This process's share of the validation split; the caller adds the processes' ``sums`` up."""
    m = ResMetrics(device)

    def score(batch: dict) -> None:
        images = batch["image"] if torch.is_tensor(batch["image"]) else torch.stack(batch["image"])
        logits = model(images.to(device), batch["text"]).float()
        for lg, mask in zip(logits, batch["mask"]):
            up = F.interpolate(lg[None], size=tuple(mask.shape), mode="bilinear", align_corners=False)
            m.update(up.argmax(1).bool(), mask.to(device)[None])

    eval_loop(model, loader, device, amp_dtype, score)
    return m
