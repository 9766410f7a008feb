"""Apply a RES checkpoint (written by ``semiseg res train``) to an image and a sentence."""
from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from PIL import Image

from semiseg.data.io import output_names, read_image, save_mask
from semiseg.models import build_backbone
from semiseg.res.model import ReferringSegmenter
from semiseg.res.text import build_text_encoder
from semiseg.res.train import ResConfig, _tensor


class ResPredictor:
    def __init__(self, ckpt: dict, teacher: bool = True) -> None:
        self.cfg = OmegaConf.merge(OmegaConf.structured(ResConfig), ckpt["config"])
        self.cfg.model.pretrained = ""  # the checkpoint has the weights
        self.model = ReferringSegmenter(build_backbone(self.cfg.model), build_text_encoder(self.cfg.text, ckpt["sentences"]))
        self.model.load_state_dict(ckpt["method"]["teacher"] if teacher else ckpt["model"])
        self.model.eval()

    @torch.no_grad()
    def predict(self, image: np.ndarray, sentence: str) -> np.ndarray:
        logits = self.model(_tensor(image, self.cfg.size)[None], [sentence]).float()
        return F.interpolate(logits, size=image.shape[:2], mode="bilinear", align_corners=False).argmax(1)[0].byte().numpy()


def predict_res(ckpt: dict, files: List[Path], sentence: str, out: Path, opacity: float = 0.5) -> None:
    predictor = ResPredictor(ckpt)
    for sub in ("index", "overlay"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for f, name in zip(files, output_names(files)):
        img = read_image(f)
        mask = predictor.predict(img, sentence)
        save_mask(out / "index" / name, mask)  # 1 = the referred object
        colour = np.array([255, 64, 0], np.float32)
        blend = np.where(mask[..., None] == 1, img * (1 - opacity) + colour * opacity, img).astype(np.uint8)
        Image.fromarray(blend).save(out / "overlay" / name)
