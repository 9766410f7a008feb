"""RES samples as the engine's loaders take them: the image resized to ``size`` x ``size`` (no crop, no flip:
expressions say left and right), its referent mask (at ``size`` for training, at the image's own size for
validation) and the expression; an unlabeled sample carries its proposals, resized like the mask."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from semiseg.data.io import read_image
from semiseg.errors import SemisegError
from semiseg.tasks.referring.sources import RefSample


def resized_image(img: np.ndarray, size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    x = torch.from_numpy(np.array(Image.fromarray(img).resize((size, size), Image.BILINEAR))).permute(2, 0, 1)
    return ((x.float() / 255) - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def resized_masks(masks: np.ndarray, size: int) -> torch.Tensor:
    """(K, H, W) masks -> (K, size, size) by one nearest resize, shared by referent masks and proposals so
    that both land on the same pixels."""
    if not len(masks):
        return torch.zeros(0, size, size)
    stack = torch.from_numpy(np.ascontiguousarray(masks)).unsqueeze(1).float()
    return F.interpolate(stack, size=(size, size), mode="nearest-exact")[:, 0]


def store_key(root: str | Path, s: RefSample) -> str:
    """A sample's image in a proposal store: its path under the data root (as `semiseg proposals` writes it)."""
    return str(s.image.relative_to(Path(root)))


class RefDataset(Dataset):
    """``mode``: ``train_l`` (image, mask, text), ``train_u`` (image, ignore, text, proposals from ``store``),
    ``val`` (image, mask at the image's size, text). Indexed by ``(index, epoch)`` pairs like the semantic
    dataset; nothing here is random."""

    def __init__(self, samples: List[RefSample], root: str | Path, data_cfg, mode: str, store=None) -> None:
        assert mode in ("train_l", "train_u", "val")
        self.samples, self.root, self.mode, self.store = samples, Path(root), mode, store
        # plain values: OmegaConf lookups are slow per sample
        self.size, self.mean, self.std = int(data_cfg.crop_size), list(data_cfg.mean), list(data_cfg.std)

    def __len__(self) -> int:
        return len(self.samples)


    def __getitem__(self, key) -> Optional[dict]:
        index = key[0] if isinstance(key, tuple) else key
        s = self.samples[index]
        img = read_image(s.image)
        out = {"image": resized_image(img, self.size, self.mean, self.std), "text": s.sentence, "index": index}
        if self.mode == "train_u":
            out["ignore"] = torch.zeros(self.size, self.size, dtype=torch.bool)
            if self.store is not None:
                out["props"] = resized_masks(self.store.get(store_key(self.root, s)), self.size).bool()
            return out
        mask = s.mask_fn()
        out["mask"] = (torch.from_numpy(np.asarray(mask, np.int64)) if self.mode == "val"
                       else resized_masks(mask[None], self.size)[0].long())
        return out


def check_refs(cfg, labeled: List[RefSample], unlabeled: List[RefSample], unlabeled_streams: int) -> None:
    """The split's refs before any step: labeled ones, unlabeled ones when the method reads them, and no
    CutMix partner stream (referring segmentation mixes nothing: expressions say left and right)."""
    if unlabeled_streams > 1:
        raise SemisegError(f"method {cfg.method.name} asks for a CutMix partner stream, which task res has not")
    if not labeled:
        raise SemisegError(f"data.split={cfg.data.split}: no labeled refs under {cfg.data.root}")
    if unlabeled_streams and not unlabeled:
        raise SemisegError(f"method {cfg.method.name} needs unlabeled refs, but data.split={cfg.data.split} "
                           f"labels every training image under {cfg.data.root}")
