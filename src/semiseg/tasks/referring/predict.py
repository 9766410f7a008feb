"""The referring task's predictor: one image and one expression -> the referent's mask (1) at the image's
size; the teacher where the checkpoint has one is what a teacher-student run is scored on."""
from __future__ import annotations

import json
from typing import Dict, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from semiseg.data.io import as_rgb
from semiseg.errors import SemisegError
from semiseg.tasks.base import Predictor
from semiseg.tasks.referring.dataset import resized_image
from semiseg.tasks.referring.text import MAX_TOKENS, BuiltinTextEncoder


class ReferringPredictor(Predictor):
    inputs = {"text": "the expression"}

    @torch.no_grad()
    def predict(self, image, text: str) -> np.ndarray:
        img = as_rgb(image)
        d = self.cfg.data
        x = resized_image(img, d.crop_size, d.mean, d.std)[None].to(self.device)
        logits = self.model(x, [text]).float()
        return F.interpolate(logits, size=img.shape[:2], mode="bilinear",
                             align_corners=False).argmax(1)[0].byte().cpu().numpy()

    def export_module(self) -> nn.Module:
        if not isinstance(self.model.text, BuiltinTextEncoder):
            raise SemisegError(f"export of a referring model needs model.text=builtin; this one has "
                               f"model.text={self.cfg.model.text} (its tokenizer is a Python object)")
        return TokensIn(self.model)

    def export_inputs(self, size: Tuple[int, int], seed: int = 0) -> Dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        n = len(self.model.text.vocab)
        tokens = torch.zeros(1, MAX_TOKENS, dtype=torch.long)
        tokens[0, : 3 + seed % 5] = torch.randint(2, max(n, 3), (3 + seed % 5,), generator=g)
        return {"image": torch.randn(1, 3, *size, generator=g), "tokens": tokens}

    def export_metadata(self) -> Dict[str, str]:
        return {"input": f"image: (1, 3, H, W) float32, RGB, resized to {self.cfg.data.crop_size}x"
                         f"{self.cfg.data.crop_size}; tokens: (1, {MAX_TOKENS}) int64 word ids",
                "tokens": "lower-case words ([a-z0-9]+ joined by hyphens), each its index in vocabulary (1: unknown), "
                          f"the first {MAX_TOKENS}, padded with 0",
                "vocabulary": json.dumps(self.model.text.vocab)}

    def overlay(self, image: np.ndarray, pred: np.ndarray, opacity: float = 0.5) -> np.ndarray:
        """The referent tinted with its palette colour; the rest of the image untouched."""
        return overlay(image, pred, self.palette[1], opacity)


class TokensIn(nn.Module):
    """The segmenter reading the expression as word ids (``BuiltinTextEncoder.tokenize``), so that an exported
    file needs no Python tokenizer: its metadata holds the vocabulary and the word rule."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.segment(image, *self.model.text.encode(tokens))


def overlay(img: np.ndarray, mask: np.ndarray, colour, opacity: float = 0.5) -> np.ndarray:
    """The referent (mask > 0) tinted with ``colour`` over the image."""
    tint = img * (1 - opacity) + np.asarray(colour, np.float32) * opacity
    return np.where(mask[..., None] > 0, tint, img).astype(np.uint8)
