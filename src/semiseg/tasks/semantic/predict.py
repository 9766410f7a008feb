"""The semantic task's predictor: one image -> class ids at its own (upright) size, whole or by sliding
window; index/ may hold Cityscapes' labelIds instead of train ids."""
from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image

from semiseg.data.io import as_rgb
from semiseg.data.presets import CITYSCAPES_ID_TO_TRAINID
from semiseg.data.transforms import normalize, resize_long_side
from semiseg.errors import SemisegError
from semiseg.tasks.base import Predictor
from semiseg.tasks.semantic.evaluator import predict_logits

TRAIN_TO_LABEL_ID = np.zeros(256, np.uint8)
for _label_id, _train_id in CITYSCAPES_ID_TO_TRAINID.items():
    TRAIN_TO_LABEL_ID[_train_id] = _label_id


class SemanticPredictor(Predictor):
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

    def check_options(self, options: dict) -> None:
        if options.get("label_ids") and self.cfg.data.dataset != "cityscapes":
            raise SemisegError(f"--label-ids maps Cityscapes train ids to its labelIds; this checkpoint was trained "
                               f"on data.dataset={self.cfg.data.dataset}")

    def predict_options(self, options: dict) -> dict:
        return {"mode": options.get("mode") or "whole"}

    def index_png(self, pred: np.ndarray, label_ids: bool = False, **options) -> np.ndarray:
        return TRAIN_TO_LABEL_ID[pred] if label_ids else pred
