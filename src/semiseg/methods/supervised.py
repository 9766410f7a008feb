"""Supervised-only baseline: the labeled batch and the configured criterion (CE or OHEM), nothing else."""
from __future__ import annotations

from typing import Dict

import torch

from semiseg.methods.base import Method
from semiseg.methods.registry import METHODS


@METHODS.register("supervised")
class Supervised(Method):
    """L = L_x (UniMatch's supervised.py). For referring segmentation the model reads the batch's expressions."""

    tasks = ("semantic", "res")

    def training_step(self, batch: Dict[str, torch.Tensor], step: int) -> Dict[str, torch.Tensor]:
        inputs = (batch["x"], batch["text"]) if "text" in batch else (batch["x"],)
        loss_x = self.criterion(self.model(*inputs), batch["y"])
        return {"loss": loss_x, "loss_x": loss_x.detach()}
