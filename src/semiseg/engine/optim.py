"""Optimizer with the backbone/head LR split and the poly schedule of the UniMatch family."""
from __future__ import annotations

from typing import List, Tuple

import torch
from torch import nn

from semiseg.errors import SemisegError


def build_optimizer(train_cfg, model: nn.Module, scaled: List[Tuple[list, float]]) -> torch.optim.Optimizer:
    """Groups with an ``lr_scale`` each (the schedule's LR times it): the backbone (1) and the task's groups
    (``scaled``: the head at ``lr_multi``; a referring model's text encoder at ``text_lr`` / ``lr``)."""
    lr = train_cfg.lr
    if lr <= 0:  # the other groups' rates are multiples of it
        raise SemisegError(f"train.lr must be positive, got {lr}")
    own = {id(p) for params, _ in scaled for p in params}
    # a frozen encoder (model.freeze_backbone) has no trainable parameters and no optimizer state
    backbone = [p for p in model.parameters() if id(p) not in own and p.requires_grad]
    groups = [{"params": params, "lr": lr * scale, "lr_scale": scale} for params, scale in [(backbone, 1.0)] + scaled]
    if train_cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=train_cfg.lr, momentum=train_cfg.momentum,
                               weight_decay=train_cfg.weight_decay)
    if train_cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=train_cfg.lr, betas=tuple(train_cfg.betas),
                                 weight_decay=train_cfg.weight_decay)
    raise SemisegError(f"unknown train.optimizer {train_cfg.optimizer!r}; valid: sgd, adamw")


def poly_lr(base_lr: float, step: int, total: int, power: float) -> float:
    return base_lr * (1 - step / total) ** power


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr * g["lr_scale"]
