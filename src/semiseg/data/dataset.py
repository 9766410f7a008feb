"""How a loader batches samples of any task: tensors stacked, the rest (indices, expressions, proposal stacks)
as lists; samples a loader skipped under ``data.on_error=skip`` counted."""
from __future__ import annotations

from typing import List, Optional

import torch



def collate_train(items: List[Optional[dict]]) -> Optional[dict]:
    """Tensors stacked, except proposal stacks (K differs per image: a list of (K, H, W) bool tensors);
    anything else (indices, a referring expression) as a list.
    Samples skipped under ``data.on_error=skip`` (None) are dropped and counted in ``skipped``."""
    kept = [it for it in items if it is not None]
    if not kept:
        return {"skipped": torch.tensor(len(items))}
    out = {k: torch.stack([it[k] for it in kept]) if torch.is_tensor(kept[0][k]) and k != "props" else
           [it[k] for it in kept] for k in kept[0]}
    out["skipped"] = torch.tensor(len(items) - len(kept))
    return out


def collate_val(items: List[dict]) -> dict:
    """Stack when all images share a size (the common case); otherwise keep lists."""
    shapes = {tuple(it["image"].shape) for it in items} | {("m",) + tuple(it["mask"].shape) for it in items}
    if len(shapes) == 2:
        return {k: torch.stack([it[k] for it in items]) if torch.is_tensor(items[0][k]) else [it[k] for it in items]
                for k in items[0]}
    return {k: [it[k] for it in items] for k in items[0]}
