"""The scenes benchmark: real object items pasted on real photos, with exact class and instance maps.

Each scene is a crop of a scikit-image photo with 1-4 items (Fashion-MNIST by default, MNIST digits
as fallback) pasted at random scale and position, optionally tinted; later items occlude earlier
ones, and the label maps record exactly what is visible. Training scenes use Fashion-MNIST's train
items and one set of photos, validation scenes the test items and other photos, so nothing leaks.

Written in the split-file layout, so the benchmark runs the same loader path as VOC::

    images/{train,val}_NNNNN.png   masks/...png (class ids, palette PNG)   instances/...png (0 = none)
    scenes.jsonl (per scene: its instances with class, bbox, visible pixels)   meta.json
    splits/<ratio>/labeled.txt, unlabeled.txt (unlabeled lines keep the hidden mask)   splits/val.txt
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image
from scipy import ndimage

from semiseg.data import items as item_sources
from semiseg.data.io import save_mask
from semiseg.data.presets import voc_palette
from semiseg.data.splits import Sample, write_split

RATIOS = {"1_32": 1 / 32, "1_16": 1 / 16, "1_8": 1 / 8, "all": 1.0}


@dataclass
class ScenesConfig:
    seed: int = 0
    canvas: int = 64
    n_train: int = 1024  # calibrated (docs/benchmarks.md): 1/16 = 64 labeled scenes leaves room for SSL
    n_val: int = 512
    items_min: int = 1
    items_max: int = 4
    item_scale: List[float] = field(default_factory=lambda: [0.8, 1.6])  # item side / 28 px
    tint: bool = True
    background: str = "photos"  # photos | dimmed | plain
    items: str = "fashion"  # fashion | digits | auto (fashion when installed, else digits)
    # coarse (default; fashion groups top, trouser, dress, footwear, bag) | medium (t-shirt, long-top =
    # pullover/coat/shirt, trouser, dress, sandal, sneaker, ankle-boot, bag) | fine (the 10 item classes);
    # the calibration in docs/benchmarks.md explains the choice. Digits always use their 10 classes.
    classes: str = "coarse"


def _class_table(cfg: ScenesConfig, source: str) -> Tuple[List[str], np.ndarray]:
    """Class names (background first) and the item-label -> scene-class lookup."""
    if source == "digits":  # no coarse groups for digits: always the 10 classes
        return ["background"] + [f"digit-{i}" for i in range(10)], np.arange(1, 11)
    groups = {"coarse": item_sources.FASHION_COARSE, "medium": item_sources.FASHION_MEDIUM}.get(cfg.classes)
    if groups is not None:
        lut = np.zeros(10, np.int64)
        for k, members in enumerate(groups.values(), 1):
            lut[members] = k
        return ["background"] + list(groups), lut
    return ["background"] + item_sources.FASHION_CLASSES, np.arange(1, 11)


def _background(rng: np.random.Generator, photos: List[np.ndarray], cfg: ScenesConfig) -> np.ndarray:
    s = cfg.canvas
    if cfg.background == "plain":
        return np.broadcast_to(rng.integers(0, 256, 3).astype(np.uint8), (s, s, 3)).copy()
    photo = photos[rng.integers(len(photos))]
    h, w = photo.shape[:2]
    side = int(rng.integers(min(h, w) // 6, min(h, w) // 2 + 1))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    bg = np.asarray(Image.fromarray(photo[y : y + side, x : x + side]).resize((s, s), Image.BILINEAR))
    if cfg.background == "dimmed":
        bg = (bg.astype(np.float32) * 0.4).astype(np.uint8)
    return bg


def _tint(rng: np.random.Generator) -> np.ndarray:
    # saturated-ish random colour, never too dark, so the item stays visible on most photos
    c = rng.uniform(0.25, 1.0, 3)
    return c / c.max()


def compose(rng: np.random.Generator, items: np.ndarray, labels: np.ndarray, lut: np.ndarray,
            photos: List[np.ndarray], cfg: ScenesConfig):
    """One scene: image (H, W, 3) uint8, class mask, instance map and the instance records."""
    s = cfg.canvas
    img = _background(rng, photos, cfg).copy()
    mask = np.zeros((s, s), np.uint8)
    inst = np.zeros((s, s), np.uint8)
    records = []
    for k in range(1, int(rng.integers(cfg.items_min, cfg.items_max + 1)) + 1):
        i = int(rng.integers(len(items)))
        side = min(s, max(8, int(round(28 * rng.uniform(*cfg.item_scale)))))
        item = np.asarray(Image.fromarray(items[i]).resize((side, side), Image.BILINEAR)).astype(np.float32)
        # exact silhouette: the item's nonzero pixels, inner holes filled (they are part of the object)
        m = ndimage.binary_fill_holes(item > 8)
        y, x = int(rng.integers(0, s - side + 1)), int(rng.integers(0, s - side + 1))
        colour = _tint(rng) if cfg.tint else np.ones(3)
        rgb = np.clip(item[..., None] * colour, 0, 255).astype(np.uint8)
        win = (slice(y, y + side), slice(x, x + side))
        img[win][m] = rgb[m]
        mask[win][m] = lut[labels[i]]
        inst[win][m] = k
        records.append({"id": k, "class": int(lut[labels[i]]), "item": i})
    for r in records:
        ys, xs = np.nonzero(inst == r["id"])
        r["pixels"] = int(len(ys))
        r["bbox"] = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1] if len(ys) else None
    return img, mask, inst, records


def generate(out: str | Path, cfg: ScenesConfig) -> Dict[str, int]:
    """Write the benchmark to ``out``; deterministic (byte-identical files) for a given config."""
    out = Path(out)
    source = cfg.items
    if source == "auto":
        source = "fashion" if item_sources.fashion_available() else "digits"
    names, lut = _class_table(cfg, source)
    load = item_sources.load_fashion if source == "fashion" else item_sources.load_digits
    for sub in ("images", "masks", "instances"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    palette = voc_palette(len(names))
    counts = {}
    with open(out / "scenes.jsonl", "w") as index:
        for split, n in (("train", cfg.n_train), ("val", cfg.n_val)):
            items, labels = load(train=split == "train")
            photos = item_sources.load_photos(train=split == "train")
            rng = np.random.default_rng([cfg.seed, 0 if split == "train" else 1])
            samples = []
            for j in range(n):
                img, mask, inst, records = compose(rng, items, labels, lut, photos, cfg)
                name = f"{split}_{j:05d}.png"
                Image.fromarray(img).save(out / "images" / name)
                save_mask(out / "masks" / name, mask, palette)
                Image.fromarray(inst).save(out / "instances" / name)
                index.write(json.dumps({"name": name, "split": split, "instances": records}) + "\n")
                samples.append(Sample(f"images/{name}", f"masks/{name}"))
            counts[split] = n
            if split == "val":
                write_split(out / "splits" / "val.txt", samples)
            else:
                _write_ratio_splits(out, samples, cfg.seed)
    meta = {"class_names": names, "palette": palette, "item_source": source, "config": asdict(cfg)}
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return counts


def _write_ratio_splits(out: Path, samples: List[Sample], seed: int) -> None:
    """Nested labeled sets (1/32 within 1/16 within 1/8) so ratios compare like with like."""
    order = np.random.default_rng([seed, 2]).permutation(len(samples))
    for ratio, frac in RATIOS.items():
        k = max(1, int(round(len(samples) * frac)))
        chosen = set(order[:k].tolist())
        write_split(out / "splits" / ratio / "labeled.txt", [samples[i] for i in sorted(chosen)])
        if frac < 1:
            write_split(out / "splits" / ratio / "unlabeled.txt",
                        [samples[i] for i in range(len(samples)) if i not in chosen])
