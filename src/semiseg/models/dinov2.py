"""DINOv2 ViT encoders (UniMatch V2's), built from the ``dinov2`` package's own model code.

The package (``pip install --no-deps dinov2``: its model code needs torch only; its declared
dependencies pin CUDA builds) holds Meta's ``DinoVisionTransformer``. It is built as Meta's hub and
UniMatch V2 build it (patch 14, image size 518, LayerScale 1.0, MLP FFN, unchunked blocks), so the
released ``dinov2_vit{s,b,l}14_pretrain.pth`` files load strictly. The encoder returns the four
intermediate levels V2 uses, layer-normed, as (B, C, H/14, W/14) maps; position embeddings are
interpolated to the input size by the package (in a traced export by the same resize in tensor ops,
which follows the input's size where the package's Python arithmetic would freeze the traced one).
"""
from __future__ import annotations

import math
import types
from dataclasses import dataclass
from functools import partial
from typing import List, Sequence

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
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


def patch_count(n: int | torch.Tensor) -> int | torch.Tensor:
    """round(n / PATCH), at least 1, ties to even as Python's round. Under tracing (TorchScript, ONNX) a size
    is a tensor, which round() cannot take and int() would freeze at the traced value: tensor ops keep it
    following the input (torch.round also ties to even, and n / 14 is exact at the ties, so both agree)."""
    if isinstance(n, torch.Tensor):
        return torch.clamp(torch.round(n / PATCH), min=1).long()
    return max(1, round(n / PATCH))


def to_patch_multiple(x: torch.Tensor) -> torch.Tensor:
    """Resize (bilinear) to the nearest multiple of the patch on each side, as V2 crops and evaluates."""
    h, w = x.shape[-2:]
    ph, pw = patch_count(h) * PATCH, patch_count(w) * PATCH
    if torch.jit.is_tracing():  # no shape test: a traced branch would hold for the traced size only
        return F.interpolate(x, size=(ph, pw), mode="bilinear", align_corners=True)
    if (ph, pw) == (h, w):
        return x
    return F.interpolate(x, size=(ph, pw), mode="bilinear", align_corners=True)


def bicubic_weights(n: torch.Tensor, side: int, scale: torch.Tensor) -> torch.Tensor:
    """(n, side) matrix of PyTorch's bicubic resize (A = -0.75, half-pixel centres, clamped borders) from
    ``side`` to ``n`` samples at ``scale``: its output pixel i reads source (i + 0.5) / scale - 0.5."""
    a = -0.75
    src = (torch.arange(n, dtype=torch.float32) + 0.5) / scale - 0.5
    left = torch.floor(src)
    t = src - left
    weights = [((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
               ((a + 2) * t - (a + 3)) * t * t + 1,
               ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1,
               ((a * (2 - t) - 5 * a) * (2 - t) + 8 * a) * (2 - t) - 4 * a]
    columns = torch.arange(side, dtype=torch.float32)
    taps = [(torch.clamp(left + k, 0, side - 1)[:, None] == columns[None]).float() * wk[:, None]
            for k, wk in zip((-1, 0, 1, 2), weights)]
    return taps[0] + taps[1] + taps[2] + taps[3]


def traceable_pos_encoding(pos_embed: torch.Tensor, x: torch.Tensor, h, w) -> torch.Tensor:
    """The package's ``interpolate_pos_encoding`` (bicubic, scale (grid + 0.1) / side; unchanged on its own
    square grid) with the scale a tensor op, so a traced model resizes them at every input size."""
    side, dim = int(math.sqrt(pos_embed.shape[1] - 1)), pos_embed.shape[-1]
    gh, gw = h // PATCH, w // PATCH
    own = ((gh == side) & (gw == side)).float()  # the identity there, as the package returns them as they are
    rows = bicubic_weights(gh, side, own + (1 - own) * (gh + 0.1) / side)
    cols = bicubic_weights(gw, side, own + (1 - own) * (gw + 0.1) / side)
    grid = pos_embed[0, 1:].float().reshape(side, side, dim).permute(2, 0, 1)
    patches = (rows @ grid @ cols.transpose(0, 1)).permute(1, 2, 0).reshape(1, -1, dim)
    return torch.cat((pos_embed[:, :1].float(), patches), dim=1).to(x.dtype)


def sdpa_attention(self, x: torch.Tensor, attn_bias=None) -> torch.Tensor:
    """The package's attention through ``F.scaled_dot_product_attention``: the same softmax(q k^T / sqrt(d)) v
    in one fused call (flash or memory-efficient kernels on GPU), where the package without xFormers
    materialises the (N, N) attention matrix. Same weights, same outputs up to rounding."""
    if attn_bias is not None:
        raise SemisegError("nested-tensor attention (attn_bias) is not supported with model.attention=sdpa")
    b, n, c = x.shape
    q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
    x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p if self.training else 0.0)
    return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, c)))


# On a CPU the fused call pays off only for long sequences: measured per DINOv2-S forward+backward under
# bf16 autocast (2-core Zen 4), explicit/fused 0.47/0.52 s at 49 tokens, 1.12/1.45 at 256, 1.78/2.05 at
# 576, 2.68/2.45 at 900 and 3.91/2.98 at 1369 (a 518 crop)
CPU_FUSED_FROM_TOKENS = 768


def auto_attention(self, x: torch.Tensor, attn_bias=None) -> torch.Tensor:
    """The fused call on CUDA, and on a CPU for sequences of at least ``CPU_FUSED_FROM_TOKENS`` tokens; the
    package's explicit softmax for shorter ones on a CPU, where it is faster."""
    if x.device.type == "cpu" and x.shape[1] < CPU_FUSED_FROM_TOKENS:
        return type(self).forward(self, x, attn_bias)
    return sdpa_attention(self, x, attn_bias)


def checkpointed_block(self, x: torch.Tensor) -> torch.Tensor:
    """The block's own forward, its activations recomputed in the backward pass instead of kept: the
    encoder's activation memory falls to one block's, for one more forward of compute."""
    if self.training and torch.is_grad_enabled():
        return torch.utils.checkpoint.checkpoint(type(self).forward, self, x, use_reentrant=False)
    return type(self).forward(self, x)


class DINOv2Encoder(nn.Module):
    """``encoder(x)`` -> the four levels as (B, C, H/14, W/14); ``x`` a multiple of 14 on both sides.
    ``attention``: ``auto`` (fused where it is faster), ``sdpa`` (fused) or ``explicit`` (the package's own,
    as UniMatch V2 runs without xFormers); ``grad_checkpoint``: recompute each block's activations in the
    backward pass. Both swap a module's ``forward`` only, so weights and checkpoints are the same either way."""

    def __init__(self, size: str, attention: str = "auto", grad_checkpoint: bool = False) -> None:
        super().__init__()
        if size not in SIZES:
            raise SemisegError(f"unknown DINOv2 size {size!r}; valid: {', '.join(SIZES)}")
        self.size, self.vit = size, build_vit(size)
        self.layers = list(SIZES[size].layers)
        self.embed_dim = self.vit.embed_dim
        for block in self.vit.blocks:
            if attention != "explicit":
                fused = sdpa_attention if attention == "sdpa" else auto_attention
                block.attn.forward = types.MethodType(fused, block.attn)
            if grad_checkpoint:
                block.forward = types.MethodType(checkpointed_block, block)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        if not torch.jit.is_tracing():
            return list(self.vit.get_intermediate_layers(x, self.layers, reshape=True))
        # the package resizes its position embeddings by a Python-float scale, which a trace cannot take:
        # for the trace only, the same resize in tensor ops (an instance attribute shadows the method)
        self.vit.interpolate_pos_encoding = partial(traceable_pos_encoding, self.vit.pos_embed)
        try:
            return list(self.vit.get_intermediate_layers(x, self.layers, reshape=True))
        finally:
            del self.vit.interpolate_pos_encoding

    def load_released(self, state: dict, path: str) -> None:
        """A released checkpoint, strictly: every key of the model and nothing else."""
        missing, unexpected, shapes = mismatch(self.vit, state)
        if missing or unexpected or shapes:
            raise SemisegError(f"weights file {path} is not a DINOv2 {self.size} checkpoint: {len(missing)} missing "
                               f"keys (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}), "
                               f"{len(shapes)} of another shape (e.g. {shapes[:3]})")
        self.vit.load_state_dict(state)
