"""Pieces the semi-supervised recipes share: config fields, views, mixing of pseudo-label maps, logging."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Tuple

import torch

from semiseg.data.augment import cutmix_box, mix, strong_photometric
from semiseg.errors import SemisegError
from semiseg.methods.base import Method, MethodConfig
from semiseg.pseudo.selectors import build_selector, selection_stats


@dataclass
class SemiConfig(MethodConfig):
    selector: Dict[str, Any] = field(default_factory=lambda: {"name": "threshold", "tau": 0.95})
    # CutMix partner: "batch" = another unlabeled batch (UniMatch V1 draws a second one; its author
    # confirmed mixing with a shuffled batch performs the same, UniMatch #51), "roll" = the batch rolled
    # by one, "flip" = the batch reversed (UniMatch V2)
    mix: str = "batch"
    cutmix_p: float = 0.5


class SemiMethod(Method):
    """Base for methods with unlabeled data: selector, strong views, CutMix partner, stats."""

    Config = SemiConfig

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.select = build_selector(self.cfg.selector)
        if self.cfg.mix not in ("batch", "roll", "flip"):
            raise SemisegError(f"method.mix must be one of batch, roll, flip; not {self.cfg.mix!r}")
        self.unlabeled_streams = 2 if self.cfg.mix == "batch" else 1

    def partner(self, batch: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """The CutMix partner images and their ignore masks."""
        if self.cfg.mix == "batch":
            return batch["mix"], batch["mix_ignore"]
        if self.cfg.mix == "roll":
            return batch["u"].roll(1, 0), batch["u_ignore"].roll(1, 0)
        return batch["u"].flip(0), batch["u_ignore"].flip(0)

    def strong(self, x: torch.Tensor) -> torch.Tensor:
        return strong_photometric(x, self.mean, self.std)

    def box(self, u: torch.Tensor) -> torch.Tensor:
        b, _, h, w = u.shape
        return cutmix_box(b, h, w, u.device, self.cfg.cutmix_p)

    @staticmethod
    def mixed_targets(box, probs_u, ign_u, probs_mix, ign_mix):
        """Pseudo-label inputs for a CutMixed strong view: the partner's inside the box."""
        return mix(probs_u, probs_mix, box), mix(ign_u, ign_mix, box)

    def stats(self, pl, weight, ignore, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Mask ratios; with ``data.hidden_labels`` also selection precision/recall against the unlabeled
        split's hidden ground truth (diagnostics only: it never reaches a loss)."""
        hidden = batch.get("u_hidden")
        return {k: v.detach() for k, v in selection_stats(pl, weight, ignore, self.num_classes, hidden).items()}
