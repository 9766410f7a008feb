"""Optimizer with the backbone/head LR split and the poly schedule of the UniMatch family."""
from __future__ import annotations

import torch
from torch import nn

from semiseg.errors import SemisegError


def build_optimizer(train_cfg, model: nn.Module) -> torch.optim.Optimizer:
    head = {id(p) for p in model.head_parameters()}
    # a frozen encoder (model.freeze_backbone) has no trainable parameters and no optimizer state
    backbone = [p for p in model.parameters() if id(p) not in head and p.requires_grad]
    groups = [{"params": backbone, "lr": train_cfg.lr, "lr_scale": 1.0},
              {"params": model.head_parameters(), "lr": train_cfg.lr * train_cfg.lr_multi,
               "lr_scale": train_cfg.lr_multi}]
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
