"""The semantic task's samples: images and index masks from a data preset's split lists, with per-sample
geometry (labeled, unlabeled with proposals and hidden masks on request, validation), and the checks made
before any step: the lists exist and hold files, labeled masks are not 0/255, every validation sample decodes."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List

import numpy as np
import torch
from torch.utils.data import Dataset

from semiseg.data.io import check_mask_values, is_binary_255, read_image, read_mask
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


def check_lists(cfg, layout: Layout, unlabeled_streams: int) -> None:
    """The split's lists before any step: present, holding images (the unlabeled one when the method reads
    it), their files on disk, hidden masks where ``data.hidden_labels`` asks for them, no 0/255 labeled masks."""
    for kind in ("labeled", "val"):  # what the folder could not make, before anything that follows from it
        if not getattr(layout, kind) and kind in layout.why:
            raise SemisegError(layout.why[kind])
    if layout.labeled is None:
        raise SemisegError(no_split_found(layout.root, cfg.data.split, "labeled"))
    if unlabeled_streams and layout.unlabeled is None:
        where = (f"no unlabeled/ folder in {layout.root} and every image of images/ has a mask (put the "
                 "unlabeled images in unlabeled/, or in images/ without a mask)" if cfg.data.dataset == "folder"
                 else no_split_found(layout.root, cfg.data.split, "unlabeled"))
        raise SemisegError(f"method {cfg.method.name} needs unlabeled data: {where}")
    if unlabeled_streams and not layout.unlabeled:
        raise SemisegError(f"method {cfg.method.name} needs unlabeled data, but "
                           f"{layout.sources.get('unlabeled', 'the unlabeled list')} holds no images")
    d = cfg.data
    if d.hidden_labels and unlabeled_streams:
        unmasked = [s.image for s in layout.unlabeled if s.mask is None]
        if unmasked:
            raise SemisegError(f"data.hidden_labels is on, but {len(unmasked)} of the {len(layout.unlabeled)} "
                               f"unlabeled samples in {layout.sources.get('unlabeled', 'the unlabeled split')} "
                               f"have no mask, e.g. {unmasked[:3]}: set data.hidden_labels=false (it only logs "
                               "selection precision where the unlabeled truth is known, as on the scenes)")
    check_files(layout, ["labeled"] + (["unlabeled"] if unlabeled_streams else []), d.hidden_labels)
    check_binary_masks(layout)


def no_split_found(root, split: str, kind: str) -> str:
    """Why a list is missing, naming data.split and the splits that exist when its folder is absent."""
    folder = root / "splits" / split
    if folder.is_dir():
        return f"no {kind} list found: {folder / (kind + '.txt')} does not exist (set data.{kind} or data.split)"
    found = sorted(p.name for p in (root / "splits").iterdir() if p.is_dir()) if (root / "splits").is_dir() else []
    return (f"data.split={split}: no folder {folder}; splits under {root / 'splits'}: {', '.join(found)}" if found
            else f"no {kind} list found under {root} (set data.{kind}, or data.split to a folder of {root / 'splits'})")


def check_files(layout: Layout, kinds, unlabeled_masks: bool = False) -> None:
    """Every listed image and mask exists, checked at start (a truncated or stale split file fails here,
    with counts, instead of hours into training)."""
    for kind in kinds:
        samples = getattr(layout, kind) or []
        masks = kind != "unlabeled" or unlabeled_masks
        paths = [p for s in samples for p in ((s.image, s.mask) if masks else (s.image,)) if p]
        missing = [p for p in paths if not (layout.root / p).is_file()]
        if missing:
            raise SemisegError(f"{len(missing)} of the {len(paths)} files listed in {layout.sources.get(kind, kind)} "
                               f"do not exist under {layout.root}, e.g. {missing[:3]}")


def check_binary_masks(layout: Layout) -> None:
    """The trap ``data check`` flags, looked for at the start of training too: labeled masks saved as 0/255
    train on background only (255 is the ignore label). All of them: refused before any step; some (a mask
    may hold background and ignore alone): a warning. The labeled list is the small one here: cheap to read."""
    n = len(layout.class_names)

    def binary_255(mask: str) -> bool:
        try:
            return is_binary_255(np.unique(read_mask(layout.root / mask)), n)
        except SemisegError:  # an unreadable mask is data.on_error's to handle, when it is loaded
            return False

    binary = [s.mask for s in layout.labeled if s.mask and binary_255(s.mask)]
    if not binary:
        return
    what = (f"{len(binary)} of the {len(layout.labeled)} labeled masks hold only 0 and 255, e.g. {binary[:3]}: "
            "255 is the ignore label, so their foreground is never learned; save them as 0/1 (`semiseg data check` "
            "lists them)")
    if len(binary) == len(layout.labeled):
        raise SemisegError(what)
    print(f"warning: {what}", file=sys.stderr, flush=True)


def verify_val(ds: SegDataset, source: str, on_error: str) -> None:
    """Decode every validation image and mask before training starts: a bad file found at the first
    evaluation would end the run after it had trained, before that step's checkpoint. ``stop`` lists the
    bad files and stops; ``skip`` drops them from the validation set and says how many."""
    bad = []
    for i in range(len(ds)):
        try:
            ds.load(i, need_mask=True)
        except SemisegError as e:
            bad.append((i, str(e)))
    if not bad:
        return
    listed = "\n  ".join(msg for _, msg in bad[:5]) + (f"\n  ... and {len(bad) - 5} more" if len(bad) > 5 else "")
    if on_error != "skip":
        raise SemisegError(f"{len(bad)} of the {len(ds)} samples of {source} cannot be used (data.on_error=skip "
                           f"drops them):\n  {listed}")
    drop = {i for i, _ in bad}
    ds.samples = [smp for i, smp in enumerate(ds.samples) if i not in drop]
    print(f"warning: {len(bad)} of the validation samples dropped (data.on_error=skip); scores are over the "
          f"other {len(ds.samples)}:\n  {listed}", file=sys.stderr, flush=True)


def labeled_class_pixels(layout: Layout, num_classes: int, ignore_index: int) -> np.ndarray:
    """Pixels of each class over the labeled masks (label mapping applied, ignore left out)."""
    counts = np.zeros(num_classes, np.int64)
    for s in layout.labeled or []:
        mask = layout.map_mask(read_mask(layout.root / s.mask), s.mask)
        counts += np.bincount(mask[mask != ignore_index].ravel(), minlength=num_classes)[:num_classes]
    return counts
