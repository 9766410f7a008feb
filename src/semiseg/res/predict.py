"""Apply a referring checkpoint (``semiseg train`` with ``task: res``) to images and one expression."""
from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from semiseg.config import from_dict
from semiseg.data.io import output_names, read_image, save_mask
from semiseg.res.dataset import resized_image
from semiseg.res.model import build_res_model


class ResPredictor:
    """The teacher where the checkpoint has one (the network a teacher-student RES run is scored on)."""

    def __init__(self, ckpt: dict) -> None:
        self.cfg = from_dict(ckpt["config"], "the checkpoint's config")
        self.cfg.model.pretrained = ""  # the checkpoint has the weights
        self.model = build_res_model(self.cfg.model, ckpt["meta"]["vocabulary"])
        self.model.load_state_dict(ckpt["method"].get("teacher", ckpt["model"]))
        self.model.eval()

    @torch.no_grad()
    def predict(self, image: np.ndarray, sentence: str) -> np.ndarray:
        d = self.cfg.data
        logits = self.model(resized_image(image, d.crop_size, d.mean, d.std)[None], [sentence]).float()
        return F.interpolate(logits, size=image.shape[:2], mode="bilinear", align_corners=False).argmax(1)[0].byte().numpy()


def predict_res(ckpt: dict, files: List[Path], sentence: str, out: Path, opacity: float = 0.5) -> None:
    predictor = ResPredictor(ckpt)
    for sub in ("index", "overlay"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for f, name in zip(files, output_names(files)):
        img = read_image(f)
        mask = predictor.predict(img, sentence)
        save_mask(out / "index" / name, mask)  # 1 = the referred object
        Image.fromarray(overlay(img, mask, ckpt["meta"]["palette"][1], opacity)).save(out / "overlay" / name)


def overlay(img: np.ndarray, mask: np.ndarray, colour, opacity: float = 0.5) -> np.ndarray:
    """The referent (mask > 0) tinted with ``colour`` over the image."""
    tint = img * (1 - opacity) + np.asarray(colour, np.float32) * opacity
    return np.where(mask[..., None] > 0, tint, img).astype(np.uint8)
