"""A binary folder data set in seconds: the layout a practitioner's foreground or defect data has
(images/ + masks/ labeled, unlabeled/ without masks, val/), with the traits that make it hard: few
labels, a small foreground (1-3 ellipses, about a tenth of the pixels) on a textured background, and a
foreground that differs from it only by a brightness margin drawn per image (sometimes small).

``lighting=True`` adds what a camera on a line adds: each image its own exposure (a gain of 0.3-1.1) and a
shading ramp across it (up to +-50%), so that the few labeled images show few of the lighting conditions
that the unlabeled and validation images have. The light has its own random stream: the scenes, masks
and margins are those of the same seed without it.

Masks are 0 (background) / 1 (blob). The unlabeled images' masks go to unlabeled_masks/ (and
splits/hidden/unlabeled.txt lists the pairs), for selection diagnostics only (``data.hidden_labels``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def blob_image(rng: np.random.Generator, size: int):
    yy, xx = np.mgrid[:size, :size]
    fg = np.zeros((size, size), bool)
    for _ in range(rng.integers(1, 4)):
        cy, cx = rng.integers(size // 8, size - size // 8, 2)
        ry, rx = rng.integers(max(2, size // 16), max(3, size // 5), 2)
        fg |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
    img = rng.integers(0, 140, (size, size, 3)).astype(np.int32)
    img[fg] += rng.integers(30, 90)
    return np.clip(img, 0, 255).astype(np.uint8), fg.astype(np.uint8)


def light(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One exposure (gain 0.3-1.1, log-uniform) and a linear shading ramp in a random direction."""
    size = img.shape[0]
    yy, xx = np.mgrid[:size, :size] - size / 2
    gain = np.exp(rng.uniform(np.log(0.3), np.log(1.1)))
    angle, amp = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.5)
    ramp = np.clip((np.cos(angle) * xx + np.sin(angle) * yy) / (size / 2), -1, 1)
    return np.clip(img * (gain * (1 + amp * ramp))[..., None], 0, 255).astype(np.uint8)


def _write(root: Path, images: str, masks: str, n: int, rng: np.random.Generator, size: int,
           light_rng: np.random.Generator | None):
    (root / images).mkdir(parents=True, exist_ok=True)
    (root / masks).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img, mask = blob_image(rng, size)
        if light_rng is not None:
            img = light(img, light_rng)
        Image.fromarray(img).save(root / images / f"{i:04d}.png")
        Image.fromarray(mask).save(root / masks / f"{i:04d}.png")


def generate_blobs(out: str | Path, labeled: int = 4, unlabeled: int = 256, val: int = 64, size: int = 48,
                   seed: int = 0, lighting: bool = False) -> None:
    root = Path(out)
    rng = np.random.default_rng(seed)
    light_rng = np.random.default_rng([seed, 1]) if lighting else None
    _write(root, "images", "masks", labeled, rng, size, light_rng)
    _write(root, "unlabeled", "unlabeled_masks", unlabeled, rng, size, light_rng)
    _write(root, "val/images", "val/masks", val, rng, size, light_rng)
    (root / "splits" / "hidden").mkdir(parents=True, exist_ok=True)
    (root / "splits" / "hidden" / "unlabeled.txt").write_text(
        "".join(f"unlabeled/{i:04d}.png unlabeled_masks/{i:04d}.png\n" for i in range(unlabeled)))
