"""A referring segmenter: image features conditioned on the sentence, two-class output.

The segmentation backbone's features at strides 16 and 32 attend to the words (pixel-word attention:
each pixel is a query over the sentence's token features), and the result is gated back into the
visual features, as LAVT's PWAM does; a light decoder fuses them with the stride-4 features and
predicts background/referent logits at the input size.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from semiseg.models import build_backbone
from semiseg.models.deeplabv3plus import conv_bn_relu
from semiseg.tasks.referring.text import build_text_encoder


class PixelWordAttention(nn.Module):
    def __init__(self, vis_dim: int, txt_dim: int, dim: int = 128, heads: int = 4) -> None:
        super().__init__()
        self.q = nn.Conv2d(vis_dim, dim, 1)
        self.kv = nn.Linear(txt_dim, dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.out = nn.Conv2d(dim, vis_dim, 1)
        self.gate = nn.Sequential(nn.Conv2d(vis_dim, vis_dim, 1), nn.Tanh())

    def forward(self, vis: torch.Tensor, words: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, _, h, w = vis.shape
        q = self.q(vis).flatten(2).transpose(1, 2)  # (B, HW, dim)
        kv = self.kv(words)
        lang, _ = self.attn(q, kv, kv, key_padding_mask=~mask)
        lang = self.out(lang.transpose(1, 2).reshape(b, -1, h, w))
        fused = vis * lang  # element-wise multimodal features, as PWAM
        return vis + self.gate(fused) * fused


class ReferringSegmenter(nn.Module):
    def __init__(self, backbone: nn.Module, text: nn.Module, dim: int = 128) -> None:
        super().__init__()
        self.backbone, self.text = backbone, text
        c1, _, c3, c4 = backbone.channels
        self.fuse3 = PixelWordAttention(c3, text.dim, dim)
        self.fuse4 = PixelWordAttention(c4, text.dim, dim)
        self.reduce4 = conv_bn_relu(c4, dim)
        self.reduce3 = conv_bn_relu(c3, dim)
        self.reduce1 = conv_bn_relu(c1, dim // 2)
        self.decode = nn.Sequential(conv_bn_relu(dim + dim // 2, dim, 3), nn.Conv2d(dim, 2, 1))

    def head_parameters(self):
        """The fusion and decoder (the optimizer's head group); the text encoder has a group of its own."""
        own = {id(p) for m in (self.backbone, self.text) for p in m.parameters()}
        return [p for p in self.parameters() if id(p) not in own]

    def text_parameters(self):
        return list(self.text.parameters())

    def forward(self, x: torch.Tensor, sentences) -> torch.Tensor:
        return self.segment(x, *self.text(sentences))

    def segment(self, x: torch.Tensor, words: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Background/referent logits at the input's size from the image and the encoded expression."""
        h, w = x.shape[-2:]
        c1, _, c3, c4 = self.backbone(x)
        f4 = self.reduce4(self.fuse4(c4, words, mask))
        f3 = self.reduce3(self.fuse3(c3, words, mask))
        f = f3 + F.interpolate(f4, size=f3.shape[-2:], mode="bilinear", align_corners=False)
        f = F.interpolate(f, size=c1.shape[-2:], mode="bilinear", align_corners=False)
        out = self.decode(torch.cat([f, self.reduce1(c1)], 1))
        return F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)


def build_res_model(model_cfg, vocabulary) -> ReferringSegmenter:
    """The configured backbone with the configured text encoder; ``vocabulary``: the training expressions,
    from which the built-in encoder takes its words (a checkpoint keeps them)."""
    return ReferringSegmenter(build_backbone(model_cfg), build_text_encoder(model_cfg.text, vocabulary))
