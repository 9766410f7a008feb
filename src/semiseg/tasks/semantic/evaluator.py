"""The semantic task's evaluator: whole image or sliding window, a confusion matrix added up across
processes, mIoU/aAcc/mAcc and the per-class table."""
from __future__ import annotations

from typing import Dict, List

import torch
import torch.nn.functional as F
from torch import nn

from semiseg.tasks.base import eval_loop, no_reduce


@torch.no_grad()
def slide_logits(model: nn.Module, image: torch.Tensor, num_classes: int, window: int) -> torch.Tensor:
    """Softmax summed over windows (stride 2/3 of the window), windows clamped to the border."""
    b, _, h, w = image.shape
    pad_h, pad_w = max(window - h, 0), max(window - w, 0)
    if pad_h or pad_w:
        image = F.pad(image, (0, pad_w, 0, pad_h))
    H, W = image.shape[-2:]
    stride = max(1, int(window * 2 / 3))
    acc = image.new_zeros(b, num_classes, H, W, dtype=torch.float32)
    count = image.new_zeros(1, 1, H, W, dtype=torch.float32)
    ys = list(range(0, max(H - window, 0) + 1, stride))
    xs = list(range(0, max(W - window, 0) + 1, stride))
    ys += [H - window] if ys[-1] != H - window else []
    xs += [W - window] if xs[-1] != W - window else []
    for y in ys:
        for x in xs:
            out = model(image[:, :, y : y + window, x : x + window]).float().softmax(1)
            acc[:, :, y : y + window, x : x + window] += out
            count[:, :, y : y + window, x : x + window] += 1
    return (acc / count)[:, :, :h, :w]


@torch.no_grad()
def predict_logits(model: nn.Module, image: torch.Tensor, num_classes: int, mode: str, window: int,
                   out_size=None) -> torch.Tensor:
    """Class scores at ``out_size`` (the mask's size; the image may have been resized for the model)."""
    if mode == "slide":
        logits = slide_logits(model, image, num_classes, window)
    else:
        logits = model(image).float()
    if out_size is not None and tuple(logits.shape[-2:]) != tuple(out_size):
        logits = F.interpolate(logits, size=out_size, mode="bilinear", align_corners=True)
    return logits


def confusion(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int) -> torch.Tensor:
    keep = target != ignore_index
    idx = target[keep] * num_classes + pred[keep]
    return torch.bincount(idx, minlength=num_classes**2).view(num_classes, num_classes)


def metrics_from_confusion(cm: torch.Tensor) -> Dict[str, object]:
    cm = cm.double()
    tp = cm.diag()
    gt, pr = cm.sum(1), cm.sum(0)
    union = gt + pr - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
    acc = torch.where(gt > 0, tp / gt.clamp(min=1), torch.full_like(tp, float("nan")))
    total = cm.sum().clamp(min=1)
    # each class's share of the labeled pixels, as predicted and as labeled: a class that pseudo-labels
    # starve (a foreground shrinking under a confidence threshold) shows as pred% below true%
    return {"mIoU": 100 * iou.nanmean().item(), "aAcc": 100 * (tp.sum() / total).item(),
            "mAcc": 100 * acc.nanmean().item(), "iou": [100 * v for v in iou.tolist()],
            "share_pred": (100 * pr / total).tolist(), "share_true": (100 * gt / total).tolist()}


def evaluate(model: nn.Module, loader, num_classes: int, ignore_index: int, device: torch.device,
             mode: str = "whole", window: int = 64, amp_dtype=None, reduce=no_reduce) -> Dict[str, object]:
    cm = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)

    def score(batch: dict) -> None:
        images, masks = batch["image"], batch["mask"]
        if isinstance(images, torch.Tensor):
            pairs = [(images, masks)]
        else:  # images of different sizes: one at a time
            pairs = [(i[None], m[None]) for i, m in zip(images, masks)]
        for image, mask in pairs:
            image, mask = image.to(device), mask.to(device)
            logits = predict_logits(model, image, num_classes, mode, window, mask.shape[-2:])
            cm.add_(confusion(logits.argmax(1), mask, num_classes, ignore_index))

    eval_loop(model, loader, device, amp_dtype, score)
    return metrics_from_confusion(reduce(cm))


def summary(prefix: str, m: Dict[str, object], names: List[str]) -> Dict[str, float]:
    """Flat scalars for logging: ``<prefix>mIoU``, ``<prefix>aAcc``, ``<prefix>mAcc``, per-class IoU and each
    class's share of the labeled pixels as predicted and as labeled (``pred%_<class>``, ``true%_<class>``: a
    class that pseudo-labels starve shows as pred% below true%)."""
    out = {f"{prefix}{k}": float(m[k]) for k in ("mIoU", "aAcc", "mAcc")}
    out.update({f"{prefix}IoU_{n}": float(v) for n, v in zip(names, m["iou"])})
    out.update({f"{prefix}pred%_{n}": float(v) for n, v in zip(names, m["share_pred"])})
    out.update({f"{prefix}true%_{n}": float(v) for n, v in zip(names, m["share_true"])})
    return out


def iou_table(names: List[str], iou: List[float], extra: Dict[str, float], share_pred: List[float],
              share_true: List[float]) -> str:
    """Per-class IoU table, the form users diff against published logs, with each class's percentage of
    the labeled pixels as predicted and as labeled."""
    width = max(12, max(len(n) for n in names) + 2)
    lines = [f"{'class':<{width}}{'IoU':>8}{'pred%':>8}{'true%':>8}"]
    lines += [f"{n:<{width}}{v:>8.2f}{p:>8.1f}{t:>8.1f}" for n, v, p, t in zip(names, iou, share_pred, share_true)]
    lines.append("-" * (width + 24))
    lines += [f"{k:<{width}}{v:>8.2f}" for k, v in extra.items()]
    return "\n".join(lines)
