"""UniMatch V2's network: a DINOv2 encoder and a DPT head, behind semiseg's model contract.

``model(x)`` gives logits at the input size; ``comp_drop=True`` applies V2's complementary dropout to the
four levels (one mask for all of them, exactly half of the pairs undropped); ``fp_branches=k`` decodes k
more copies of the levels, each with its own Dropout2d(p) mask on every level (the feature perturbation of
UniMatch V1 and DSSN, carried over from DeepLabV3+'s c1/c4 to the four ViT levels: our choice, V2's code
has none). Inputs whose sides are not multiples of 14 are resized to the nearest ones first (V2 crops
and evaluates at multiples of 14), and the logits are resized back.

The module names follow V2's (``head.projects``, ``head.scratch.refinenet1``...), so its checkpoints map
onto this model key for key.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from semiseg.models.deeplabv3plus import complementary_dropout
from semiseg.models.dinov2 import SIZES, DINOv2Encoder, to_patch_multiple


class ResidualConvUnit(nn.Module):
    """x + conv(relu(conv(relu(x)))), 3x3 convolutions with bias, no normalisation (V2: use_bn False)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """RefineNet-style fusion: add the refined skip, refine, upsample (to ``size`` or x2), project 1x1."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)
        self.out_conv = nn.Conv2d(features, features, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None, size=None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        up = dict(size=size) if size is not None else dict(scale_factor=2)
        return self.out_conv(F.interpolate(x, **up, mode="bilinear", align_corners=True))


class DPTHead(nn.Module):
    """Four token maps at stride 14 -> strides 3.5, 7, 14, 28 -> fused top-down -> class logits."""

    def __init__(self, num_classes: int, in_channels: int, features: int, out_channels: Sequence[int]) -> None:
        super().__init__()
        c = list(out_channels)
        self.projects = nn.ModuleList([nn.Conv2d(in_channels, oc, 1) for oc in c])
        self.resize_layers = nn.ModuleList([nn.ConvTranspose2d(c[0], c[0], 4, stride=4),
                                            nn.ConvTranspose2d(c[1], c[1], 2, stride=2),
                                            nn.Identity(), nn.Conv2d(c[3], c[3], 3, stride=2, padding=1)])
        self.scratch = nn.Module()
        for i, oc in enumerate(c, 1):
            setattr(self.scratch, f"layer{i}_rn", nn.Conv2d(oc, features, 3, padding=1, bias=False))
            setattr(self.scratch, f"refinenet{i}", FusionBlock(features))
        self.scratch.output_conv = nn.Sequential(nn.Conv2d(features, features, 3, padding=1), nn.ReLU(True),
                                                 nn.Conv2d(features, num_classes, 1))

    def forward(self, feats: List[torch.Tensor]) -> torch.Tensor:
        s = self.scratch
        l1, l2, l3, l4 = [getattr(s, f"layer{i}_rn")(resize(proj(f)))
                          for i, (f, proj, resize) in enumerate(zip(feats, self.projects, self.resize_layers), 1)]
        path = s.refinenet4(l4, size=l3.shape[-2:])
        path = s.refinenet3(path, l3, size=l2.shape[-2:])
        path = s.refinenet2(path, l2, size=l1.shape[-2:])
        path = s.refinenet1(path, l1)
        return s.output_conv(path)


class DPTSegmenter(nn.Module):
    def __init__(self, size: str, num_classes: int, fp_dropout: float = 0.5, attention: str = "auto",
                 grad_checkpoint: bool = False) -> None:
        super().__init__()
        s = SIZES[size]
        self.backbone = DINOv2Encoder(size, attention, grad_checkpoint)
        self.head = DPTHead(num_classes, self.backbone.embed_dim, s.features, s.out_channels)
        self.fp_dropout = fp_dropout

    def head_parameters(self) -> List[nn.Parameter]:
        """Everything but the encoder: trained at lr * lr_multi (V2: x40)."""
        return list(self.head.parameters())

    def forward(self, x: torch.Tensor, fp_branches: int = 0,
                comp_drop: bool = False) -> Union[torch.Tensor, Tuple[torch.Tensor, List[torch.Tensor]]]:
        h, w = x.shape[-2:]
        feats = self.backbone(to_patch_multiple(x))
        if comp_drop:
            feats = complementary_dropout(*feats)
        if fp_branches:
            feats = [torch.cat([f] + [F.dropout2d(f, self.fp_dropout, training=True) for _ in range(fp_branches)])
                     for f in feats]
        out = F.interpolate(self.head(feats), size=(h, w), mode="bilinear", align_corners=True)
        if fp_branches:
            clean, *fp = out.chunk(fp_branches + 1)
            return clean, fp
        return out
