"""DINOv2 ViT encoders (UniMatch V2's), built from the ``dinov2`` package's own model code.

The package (``pip install --no-deps dinov2``: its model code needs torch only; its declared
dependencies pin CUDA builds) holds Meta's ``DinoVisionTransformer``. It is built as Meta's hub and
UniMatch V2 build it (patch 14, image size 518, LayerScale 1.0, MLP FFN, unchunked blocks), so the
released ``dinov2_vit{s,b,l}14_pretrain.pth`` files load strictly. The encoder returns the four
intermediate levels V2 uses, layer-normed, as (B, C, H/14, W/14) maps; position embeddings are
interpolated to the input size by the package.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from semiseg.errors import SemisegError
from semiseg.models.weights import mismatch


@dataclass(frozen=True)
class ViTSize:
    arch: str  # the package's builder
    layers: Sequence[int]  # the intermediate blocks V2's DPT head reads
    features: int  # DPT: fusion width
    out_channels: Sequence[int]  # DPT: per-level projection widths
    embed_dim: int = 0  # a custom shape (the test size); 0 = the builder's
    depth: int = 0
    heads: int = 0


SIZES = {  # UniMatch V2's model_configs
    "small": ViTSize("vit_small", (2, 5, 8, 11), 64, (48, 96, 192, 384)),
    "base": ViTSize("vit_base", (2, 5, 8, 11), 128, (96, 192, 384, 768)),
    "large": ViTSize("vit_large", (4, 11, 17, 23), 256, (256, 512, 1024, 1024)),
    # not a released model: random weights only, for tests and CPU smoke runs of the whole pipeline
    "tiny": ViTSize("", (0, 1, 2, 3), 32, (16, 32, 64, 64), embed_dim=64, depth=4, heads=2),
}
PATCH = 14


def build_vit(size: str) -> nn.Module:
    try:
        from dinov2.models import vision_transformer as vits
    except ImportError:
        raise SemisegError("model.backbone=dinov2_* needs the dinov2 package's model code: "
                           "pip install --no-deps dinov2 (its declared dependencies are not needed)") from None
    s = SIZES[size]
    common = dict(patch_size=PATCH, img_size=518, init_values=1.0, ffn_layer="mlp", block_chunks=0)
    if s.arch:
        return getattr(vits, s.arch)(**common)
    from dinov2.layers import MemEffAttention, NestedTensorBlock

    return vits.DinoVisionTransformer(embed_dim=s.embed_dim, depth=s.depth, num_heads=s.heads, mlp_ratio=4,
                                      block_fn=partial(NestedTensorBlock, attn_class=MemEffAttention), **common)


def to_patch_multiple(x: torch.Tensor) -> torch.Tensor:
    """Resize (bilinear) to the nearest multiple of the patch on each side, as V2 crops and evaluates."""
    h, w = x.shape[-2:]
    ph, pw = max(1, round(h / PATCH)) * PATCH, max(1, round(w / PATCH)) * PATCH
    if (ph, pw) == (h, w):
        return x
    return F.interpolate(x, size=(ph, pw), mode="bilinear", align_corners=True)


class DINOv2Encoder(nn.Module):
    """``encoder(x)`` -> the four levels as (B, C, H/14, W/14); ``x`` a multiple of 14 on both sides."""

    def __init__(self, size: str) -> None:
        super().__init__()
        if size not in SIZES:
            raise SemisegError(f"unknown DINOv2 size {size!r}; valid: {', '.join(SIZES)}")
        self.size, self.vit = size, build_vit(size)
        self.layers = list(SIZES[size].layers)
        self.embed_dim = self.vit.embed_dim

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        return list(self.vit.get_intermediate_layers(x, self.layers, reshape=True))

    def load_released(self, state: dict, path: str) -> None:
        """A released checkpoint, strictly: every key of the model and nothing else."""
        missing, unexpected, shapes = mismatch(self.vit, state)
        if missing or unexpected or shapes:
            raise SemisegError(f"weights file {path} is not a DINOv2 {self.size} checkpoint: {len(missing)} missing "
                               f"keys (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}), "
                               f"{len(shapes)} of another shape (e.g. {shapes[:3]})")
        self.vit.load_state_dict(state)
