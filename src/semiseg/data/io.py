"""Reading images and index masks with errors that name the file and the problem.

Every reader goes through :func:`opened`: the file fully decoded and turned upright by its EXIF
orientation, so an image, its mask and every size check see what a viewer shows. Images of more than
8 bits (16-bit PNG/TIFF, 32-bit integer, float) are scaled to 8 bits by their type before RGB.
"""
from __future__ import annotations

import glob
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from semiseg.errors import SemisegError
from semiseg.files import atomic_file

# the files a folder or a glob yields as images (predict's --input, folder data sets): what read_image reads
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm")
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError)


@contextmanager
def opened(path: str | Path) -> Iterator[Image.Image]:
    """The file decoded (every pixel: a torn file fails here) and turned upright by its EXIF orientation
    (a phone's portrait JPEG is stored landscape). Errors are the decoder's own: callers word them."""
    with Image.open(path) as im:
        im.load()
        ImageOps.exif_transpose(im, in_place=True)
        yield im


def to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    """High-bit-depth gray to 8 bits by its type: 16-bit (I;16*, and mode I, which some Pillow versions
    give for 16-bit PNGs) is value / 257; float (F) is [0, 1] or, when it exceeds 1, [0, 255]."""
    if mode == "F":
        arr = np.nan_to_num(arr.astype(np.float64))
        arr = np.clip(arr, 0, 1) * 255 if arr.max(initial=0) <= 1 else np.clip(arr, 0, 255)
    else:
        arr = np.clip(arr.astype(np.float64), 0, 65535) / 257
    return np.rint(arr).astype(np.uint8)


def to_rgb(im: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8. PIL's own convert clips 16-bit and float pixels at 255 (most of a 16-bit picture
    turns white), so those are scaled first; every other mode (L, P, RGBA, CMYK...) is PIL's convert."""
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        gray = to_uint8(np.asarray(im), im.mode)
        return np.repeat(gray[..., None], 3, axis=2)
    return np.asarray(im.convert("RGB"))


def read_image(path: str | Path) -> np.ndarray:
    """RGB uint8 (H, W, 3), upright; grayscale, RGBA and high-bit-depth inputs are converted."""
    try:
        with opened(path) as im:
            return to_rgb(im)
    except FileNotFoundError:
        raise SemisegError(f"image file {path} does not exist") from None
    except _DECODE_ERRORS as e:
        raise SemisegError(f"image file {path} cannot be read ({e.__class__.__name__}: {e})") from None


def read_mask(path: str | Path) -> np.ndarray:
    """Single-channel index mask (H, W) uint8, upright as its image. RGB masks are refused: they hold
    colours, not class ids."""
    try:
        with opened(path) as im:
            if im.mode in ("RGB", "RGBA"):
                raise SemisegError(
                    f"mask file {path} is an {im.mode} image; masks must be single-channel class-id PNGs "
                    "(mode L or P). Convert colours to ids first (see `semiseg data check`)."
                )
            arr = np.asarray(im)
    except FileNotFoundError:
        raise SemisegError(f"mask file {path} does not exist") from None
    except _DECODE_ERRORS as e:
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
            + ("; it looks like a binary mask saved as 0/255" if num_classes <= 2 and set(values) <= {1, 255} else "")
        )


def is_binary_255(values, num_classes: int) -> bool:
    """A binary data set's mask whose only values are 0 and 255: saved as 0/255, its foreground the ignore
    label 255 would silently drop (IoU 0). Only at 2 classes: a multi-class mask of class 0 and the ignore
    label alone is ordinary (a VOC background with its void border, Cityscapes road and void)."""
    values = set(np.asarray(values).tolist())
    return num_classes == 2 and 255 in values and values <= {0, 255}


def mask_image(mask: np.ndarray, palette: list[list[int]] | None = None) -> Image.Image:
    """Index image; with a palette a 'P' image that viewers show in colour and readers see as ids."""
    im = Image.fromarray(mask.astype(np.uint8), mode="L")
    if palette:
        im = im.convert("P")
        flat = [c for rgb in palette for c in rgb]
        im.putpalette(flat + [0] * (768 - len(flat)))
    return im


def save_mask(path: str | Path, mask: np.ndarray, palette: list[list[int]] | None = None) -> None:
    mask_image(mask, palette).save(path)


def save_png(image: Image.Image, path: Path) -> None:
    """Written beside ``path`` and renamed over it: Ctrl-C or a full disk mid-write keeps the earlier file (a
    prediction folder is written again and again) and the error names this one. Not synced to the disk: a
    prediction is made again in a moment, and a sync per small PNG costs more than writing it."""
    with atomic_file(path, durable=False) as f:
        image.save(f, format="PNG")


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


def as_rgb(image) -> np.ndarray:
    """Whatever ``predict`` accepts, as (H, W, 3) uint8 RGB, or a one-line reason it cannot be. A PIL image is
    read as a path to its file would be: turned upright by its EXIF orientation, high bit depths scaled."""
    if isinstance(image, (str, Path)):
        img = read_image(image)
    elif isinstance(image, Image.Image):
        img = to_rgb(ImageOps.exif_transpose(image))
    elif isinstance(image, (list, tuple)) and image and isinstance(image[0], (str, Path, Image.Image, np.ndarray)):
        raise SemisegError(f"predict takes one image, got a {type(image).__name__} of {len(image)}; "
                           "loop over them: [predictor.predict(x) for x in images]")
    else:
        img = _array_rgb(np.asarray(image))
    if img.shape[0] == 0 or img.shape[1] == 0:  # nothing to resize or segment (resize would divide by 0)
        shape = image.shape if isinstance(image, np.ndarray) else img.shape  # the caller's, not the RGB one
        raise SemisegError(f"predict got an empty image of shape {shape}")
    return img


def _array_rgb(img: np.ndarray) -> np.ndarray:
    if img.dtype != np.uint8:
        raise SemisegError(f"predict expects uint8 pixel values 0-255, got an array of {img.dtype}; "
                           "for floats in [0, 1] pass (img * 255).round().astype(np.uint8)")
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise SemisegError(f"predict expects an RGB image (H, W, 3) or a gray one (H, W), got shape {img.shape}")
    return np.ascontiguousarray(img[..., :3])


def expand_inputs(spec: str) -> List[Path]:
    """A file (taken as it is), or the images of a folder or a glob: the files whose extension the reader
    reads (``IMAGE_EXTS``, one list for both, so a folder and ``folder/*`` find the same images)."""
    p = Path(spec)
    if p.is_file():
        return [p]
    found = p.iterdir() if p.is_dir() else (Path(f) for f in glob.glob(spec))
    files = sorted(f for f in found if f.suffix.lower() in IMAGE_EXTS and f.is_file())
    if not files:
        raise SemisegError(f"--input {spec} matches no image file")
    return files
