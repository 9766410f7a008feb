"""Per-sample geometry (in loader workers): resize, random rescale, pad, crop, flip, normalize.

Follows UniMatch's dataset/transform.py: the long side is rescaled by U[0.5, 2.0], the image padded
with 0 and the mask with 255 (labeled) or 254 (unlabeled: padding kept apart from the 255 of labels,
so the unlabeled loss can ignore padding without ever reading the unlabeled ground truth).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

PAD_LABELED = 255
PAD_UNLABELED = 254


def resize_long_side(img: np.ndarray, mask: Optional[np.ndarray], long_side: int):
    h, w = img.shape[:2]
    scale = long_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # PIL wants (W, H)
    img = np.asarray(Image.fromarray(img).resize(size, Image.BILINEAR))
    if mask is not None:  # the same nearest rule as proposal stacks, so both stay aligned pixel for pixel
        mask = resize_stack(mask[None], (size[1], size[0]))[0]
    return img, mask


def random_rescale(img, mask, rng: np.random.Generator, scale_range: Sequence[float]):
    long0 = max(img.shape[:2])
    long_side = int(rng.integers(int(long0 * scale_range[0]), int(long0 * scale_range[1]) + 1))
    return resize_long_side(img, mask, max(long_side, 1))


def pad_to(img, mask, size: int, mask_pad: int):
    h, w = img.shape[:2]
    ph, pw = max(size - h, 0), max(size - w, 0)
    if ph or pw:
        img = np.pad(img, ((0, ph), (0, pw), (0, 0)), constant_values=0)
        mask = np.pad(mask, ((0, ph), (0, pw)), constant_values=mask_pad)
    return img, mask


def resize_stack(stack: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a (K, H, W) boolean stack (proposal masks) to ``size`` (H, W)."""
    k, h, w = stack.shape
    rows = np.minimum(((np.arange(size[0]) + 0.5) * h / size[0]).astype(int), h - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * w / size[1]).astype(int), w - 1)
    return stack[:, rows][:, :, cols]


def train_geometry(
    img: np.ndarray, mask: np.ndarray, rng: np.random.Generator, crop: int,
    scale_range: Sequence[float], flip: bool, mask_pad: int, stack: Optional[np.ndarray] = None,
):
    """Rescale, pad, crop, flip; ``stack`` (K, H, W) bool, if given, gets exactly the same geometry."""
    img, mask = random_rescale(img, mask, rng, scale_range)
    if stack is not None:
        stack = resize_stack(stack, img.shape[:2])
    h, w = img.shape[:2]
    img, mask = pad_to(img, mask, crop, mask_pad)
    if stack is not None:
        stack = np.pad(stack, ((0, 0), (0, max(crop - h, 0)), (0, max(crop - w, 0))))
    H, W = img.shape[:2]
    y, x = int(rng.integers(0, H - crop + 1)), int(rng.integers(0, W - crop + 1))
    img, mask = img[y : y + crop, x : x + crop], mask[y : y + crop, x : x + crop]
    if stack is not None:
        stack = stack[:, y : y + crop, x : x + crop]
    if flip and rng.random() < 0.5:
        img, mask = img[:, ::-1], mask[:, ::-1]
        stack = stack[:, :, ::-1] if stack is not None else None
    return (img, mask) if stack is None else (img, mask, stack)


def normalize(img: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (H, W, 3) -> float (3, H, W), ImageNet-normalised."""
    t = torch.from_numpy(np.array(img, copy=True)).permute(2, 0, 1).float().div_(255)
    m = torch.tensor(mean).view(3, 1, 1)
    s = torch.tensor(std).view(3, 1, 1)
    return (t - m) / s


def denormalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(B, 3, H, W) normalised -> [0, 1]."""
    m = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return (x * s + m).clamp(0, 1)
