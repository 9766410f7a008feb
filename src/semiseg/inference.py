"""Apply a checkpoint to images: ``semiseg.load(ckpt).predict(image)`` and ``semiseg predict``.

Writes, per input, an index PNG (class ids), a colour PNG with the dataset palette and an overlay on
the image (opacity 0.5 by default, mmseg's). Sliding-window mode handles images larger than training
crops. The checkpoint's embedded config is all that is needed.
"""
from __future__ import annotations

import glob
from pathlib import Path
from typing import List, Union

import numpy as np
import torch
from PIL import Image, ImageOps

from semiseg.config import from_dict
from semiseg.data.io import IMAGE_EXTS, output_names, read_image, save_mask, to_rgb
from semiseg.data.presets import CITYSCAPES_ID_TO_TRAINID
from semiseg.data.transforms import normalize, resize_long_side
from semiseg.engine.checkpoint import load_checkpoint
from semiseg.engine.evaluator import predict_logits
from semiseg.errors import SemisegError
from semiseg.models import build_model
from semiseg.models.weights import load_weights


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


def check_device(device: str) -> torch.device:
    """The device, or one line saying which ones this machine has (torch's own errors are an assertion
    deep in ``.to()`` for CUDA without CUDA, and a parse error naming every device type it knows)."""
    have = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise SemisegError(f"device {device!r} is not a device name; this machine has: {', '.join(have)}") from None
    if dev.type not in ("cpu", "cuda"):
        raise SemisegError(f"device {device}: semiseg runs on cpu or cuda; this machine has: {', '.join(have)}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SemisegError(f"device {device}: CUDA is not available here; this machine has: {', '.join(have)}")
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise SemisegError(f"device {device}: no such GPU; this machine has: {', '.join(have)}")
    return dev


class Predictor:
    """A model plus what it needs to read raw images: normalisation, resize, class names and palette."""

    def __init__(self, model: torch.nn.Module, cfg, class_names: List[str], palette: List[List[int]],
                 device: str = "cpu") -> None:
        dev = check_device(device)
        self.model, self.cfg = model.to(dev).eval(), cfg
        self.class_names, self.palette, self.device = class_names, palette, dev

    @classmethod
    def from_checkpoint(cls, path: str, device: str = "cpu", teacher: bool = False) -> "Predictor":
        ckpt = load_checkpoint(path)
        if ckpt.get("task", "semantic") != "semantic":  # its model takes an expression beside the image
            raise SemisegError(f"checkpoint {path} is a referring segmentation model (task: {ckpt['task']}): it reads "
                               "an expression too; `semiseg predict CKPT --text ...` applies it (no export yet)")
        cfg = from_dict(ckpt["config"], f"the config in {path}")
        meta = ckpt.get("meta") or {}
        names = meta.get("class_names") or list(cfg.data.class_names)
        palette = meta.get("palette") or [list(p) for p in cfg.data.palette]
        if not names:
            raise SemisegError(f"checkpoint {path} has no class names (written by an older semiseg?)")
        cfg.model.pretrained = ""  # weights come from the checkpoint, nothing else is read
        model = build_model(cfg.model, len(names))
        sd = ckpt["method"]["teacher"] if teacher else ckpt["model"]
        load_weights(model, sd, path, "teacher" if teacher else "model")
        return cls(model, cfg, names, palette, device)

    @torch.no_grad()
    def predict(self, image: Union[np.ndarray, Image.Image, str, Path], mode: str = "whole") -> np.ndarray:
        """One image: a path, a PIL image (any mode: L, RGBA, P, I;16... are converted as a path's would be) or
        a uint8 array, (H, W, 3) RGB or (H, W) gray -> (H, W) uint8 class ids at the image's own (upright)
        size. A list is refused: predict returns one mask, so loop over the images."""
        img = as_rgb(image)
        h, w = img.shape[:2]
        d = self.cfg.data
        x_img = resize_long_side(img, None, d.resize)[0] if d.resize else img
        x = normalize(x_img, d.mean, d.std)[None].to(self.device)
        window = self.cfg.eval.window or d.crop_size
        logits = predict_logits(self.model, x, len(self.class_names), mode, window, (h, w))
        return logits.argmax(1)[0].byte().cpu().numpy()

    def colorize(self, pred: np.ndarray) -> np.ndarray:
        pal = np.zeros((256, 3), np.uint8)
        pal[: len(self.palette)] = np.asarray(self.palette, np.uint8)
        return pal[pred]

    def overlay(self, image: np.ndarray, pred: np.ndarray, opacity: float = 0.5) -> np.ndarray:
        return (image * (1 - opacity) + self.colorize(pred) * opacity).astype(np.uint8)


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


def predict_files(predictor: Predictor, inputs: List[Path], out: Path, opacity: float = 0.5,
                  mode: str = "whole", label_ids: bool = False) -> List[Path]:
    """index/ (class ids; with ``label_ids`` Cityscapes' labelIds), color/ and overlay/ PNGs per input."""
    if label_ids and predictor.cfg.data.dataset != "cityscapes":
        raise SemisegError(f"--label-ids maps Cityscapes train ids to its labelIds; this checkpoint was trained on "
                           f"data.dataset={predictor.cfg.data.dataset}")
    to_ids = np.zeros(256, np.uint8)
    for label_id, train_id in CITYSCAPES_ID_TO_TRAINID.items():
        to_ids[train_id] = label_id
    for sub in ("index", "color", "overlay"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    written = []
    for f, name in zip(inputs, output_names(inputs)):
        img = read_image(f)
        pred = predictor.predict(img, mode)
        save_mask(out / "index" / name, to_ids[pred] if label_ids else pred)
        Image.fromarray(predictor.colorize(pred)).save(out / "color" / name)
        Image.fromarray(predictor.overlay(img, pred, opacity)).save(out / "overlay" / name)
        written.append(out / "overlay" / name)
    return written
