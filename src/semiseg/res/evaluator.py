"""The RES evaluator: each expression's prediction at its image's size, scored as oIoU, mIoU and P@X."""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from semiseg.res.metrics import ResMetrics


@torch.no_grad()
def evaluate_res(model: nn.Module, loader, device: torch.device, amp_dtype=None) -> ResMetrics:
    """This process's share of the validation split; the caller adds the processes' ``sums`` up."""
    was_training = model.training
    model.eval()
    m = ResMetrics(device)
    autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()
    with autocast:
        for batch in loader:
            images = batch["image"] if torch.is_tensor(batch["image"]) else torch.stack(batch["image"])
            logits = model(images.to(device), batch["text"]).float()
            for lg, mask in zip(logits, batch["mask"]):
                up = F.interpolate(lg[None], size=tuple(mask.shape), mode="bilinear", align_corners=False)
                m.update(up.argmax(1).bool(), mask.to(device)[None])
    model.train(was_training)
    return m
