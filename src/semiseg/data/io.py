"""Reading images and index masks with errors that name the file and the problem."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List

import numpy as np
from PIL import Image, UnidentifiedImageError

from semiseg.errors import SemisegError


def read_image(path: str | Path) -> np.ndarray:
    """RGB uint8 (H, W, 3); grayscale and RGBA inputs are converted."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise SemisegError(f"image file {path} does not exist") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise SemisegError(f"image file {path} cannot be read ({e.__class__.__name__}: {e})") from None


def read_mask(path: str | Path) -> np.ndarray:
    """Single-channel index mask (H, W) uint8. RGB masks are refused: they hold colours, not class ids."""
    try:
        with Image.open(path) as im:
            if im.mode in ("RGB", "RGBA"):
                raise SemisegError(
                    f"mask file {path} is an {im.mode} image; masks must be single-channel class-id PNGs "
                    "(mode L or P). Convert colours to ids first (see `semiseg data check`)."
                )
            arr = np.asarray(im)
    except FileNotFoundError:
        raise SemisegError(f"mask file {path} does not exist") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise SemisegError(f"mask file {path} cannot be read ({e.__class__.__name__}: {e})") from None
    if arr.dtype != np.uint8:
        if arr.max(initial=0) > 255:
            raise SemisegError(f"mask file {path} holds values above 255 ({arr.dtype}); class ids must fit in uint8")
        arr = arr.astype(np.uint8)
    return arr


def check_mask_values(mask: np.ndarray, path: str | Path, num_classes: int, ignore_index: int) -> None:
    bad = (mask >= num_classes) & (mask != ignore_index)
    if bad.any():
        values = sorted(set(np.unique(mask[bad]).tolist()))[:8]
        raise SemisegError(
            f"mask file {path} has label values {values} outside [0, {num_classes}) and {ignore_index}"
            + ("; it looks like a binary mask saved as 0/255" if values == [255] or set(values) <= {1, 255} else "")
        )


def is_binary_255(values, num_classes: int) -> bool:
    """A mask whose only values are 0 and 255: a binary mask saved as 0/255, whose foreground the ignore
    label 255 would silently drop (IoU 0)."""
    values = set(np.asarray(values).tolist())
    return 255 in values and values <= {0, 255} and num_classes <= 255


def save_mask(path: str | Path, mask: np.ndarray, palette: list[list[int]] | None = None) -> None:
    """Index PNG; with a palette it is a 'P' image that viewers show in colour and readers see as ids."""
    im = Image.fromarray(mask.astype(np.uint8), mode="L")
    if palette:
        im = im.convert("P")
        flat = [c for rgb in palette for c in rgb]
        im.putpalette(flat + [0] * (768 - len(flat)))
    im.save(path)


def output_names(inputs: List[Path]) -> List[str]:
    """One distinct PNG name per input: its stem (``pic.png``) unless another input has the same stem, then
    its file name (``pic.jpg.png``); equal file names in several folders take their path below the common
    folder (``a__pic.jpg.png``). No prediction overwrites another."""
    stems = [f.stem for f in inputs]
    names = [f.stem if stems.count(f.stem) == 1 else f.name for f in inputs]
    if len(set(names)) < len(names):
        resolved = [f.resolve() for f in inputs]
        root = Path(os.path.commonpath(resolved))
        names = [str(r.relative_to(root)).replace(os.sep, "__") for r in resolved]
    return [n + ".png" for n in names]
