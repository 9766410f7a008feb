"""One dataset class for every preset: labeled, unlabeled and validation samples from split lists."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from semiseg.data.io import check_mask_values, read_image, read_mask
from semiseg.data.presets import Layout
from semiseg.data.splits import Sample
from semiseg.data.transforms import (PAD_LABELED, PAD_UNLABELED, normalize, resize_long_side, resize_stack,
                                     train_geometry)
from semiseg.errors import SemisegError


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """Augmentation randomness that depends only on (seed, epoch, index): identical across worker
    counts and after a resume, which exact-resume tests rely on."""
    return np.random.default_rng([seed, epoch, index])


class SegDataset(Dataset):
    """``mode``: ``train_l`` (image, mask), ``train_u`` (image, ignore; hidden mask on request), ``val``.

    Items are indexed by ``(index, epoch)`` pairs from :class:`EpochSampler` (or a plain int for val).
    """

    def __init__(self, samples: List[Sample], layout: Layout, data_cfg, mode: str, seed: int = 0,
                 with_hidden: bool = False, proposals=None) -> None:
        assert mode in ("train_l", "train_u", "val")
        self.samples, self.layout, self.cfg, self.mode, self.seed = samples, layout, data_cfg, mode, seed
        self.with_hidden, self.proposals = with_hidden, proposals
        self.num_classes = len(layout.class_names)

    def __len__(self) -> int:
        return len(self.samples)

    def path(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else self.layout.root / p

    def load(self, i: int, need_mask: bool):
        s = self.samples[i]
        img_path = self.path(s.image)
        img = read_image(img_path)
        mask = None
        if need_mask and s.mask is not None:
            mask_path = self.path(s.mask)
            mask = self.layout.map_mask(read_mask(mask_path), s.mask)
            if mask.shape != img.shape[:2]:
                raise SemisegError(
                    f"mask file {mask_path} is {mask.shape[1]}x{mask.shape[0]} but its image {img_path} is "
                    f"{img.shape[1]}x{img.shape[0]}"
                )
            check_mask_values(mask, mask_path, self.num_classes, self.cfg.ignore_index)
        return img, mask

    def load_proposals(self, i: int, size) -> np.ndarray:
        stack = self.proposals.get(self.samples[i].image)
        if stack.shape[1:] != tuple(size):
            raise SemisegError(f"proposal store {self.proposals.root}: masks for {self.samples[i].image} are "
                               f"{stack.shape[2]}x{stack.shape[1]}, the image is {size[1]}x{size[0]}")
        return stack

    def __getitem__(self, key):
        try:
            return self._get(key)
        except SemisegError as e:
            if self.cfg.on_error != "skip" or self.mode == "val":
                raise
            import sys

            print(f"warning: skipped a sample: {e}", file=sys.stderr, flush=True)
            return None  # collate_train drops it and counts it

    def _get(self, key):
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        cfg = self.cfg
        if self.mode == "val":
            img, mask = self.load(index, need_mask=True)
            full_mask = mask
            if cfg.resize:
                img, _ = resize_long_side(img, None, cfg.resize)
            return {"image": normalize(img, cfg.mean, cfg.std), "mask": torch.from_numpy(full_mask.astype(np.int64)),
                    "index": index}
        labeled = self.mode == "train_l"
        img, mask = self.load(index, need_mask=labeled or self.with_hidden)
        if mask is None:  # no (hidden) label: geometry still needs a map; 255 = unknown
            mask = np.full(img.shape[:2], 255, np.uint8)
        stack = self.load_proposals(index, img.shape[:2]) if self.proposals is not None else None
        if cfg.resize:
            img, mask = resize_long_side(img, mask, cfg.resize)
            stack = resize_stack(stack, img.shape[:2]) if stack is not None else None
        rng = sample_rng(self.seed, epoch, index)
        pad = PAD_LABELED if labeled else PAD_UNLABELED
        img, mask, *rest = train_geometry(img, mask, rng, cfg.crop_size, cfg.scale_range, cfg.flip, pad, stack)
        out = {"image": normalize(img, cfg.mean, cfg.std), "index": index}
        if rest:
            out["props"] = torch.from_numpy(np.ascontiguousarray(rest[0]))
        mask_t = torch.from_numpy(mask.astype(np.int64))
        if labeled:
            out["mask"] = mask_t
        else:
            out["ignore"] = mask_t == PAD_UNLABELED  # padding only; never the unlabeled ground truth
            if self.with_hidden:
                out["hidden"] = mask_t.masked_fill(mask_t == PAD_UNLABELED, PAD_LABELED)
        return out


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
