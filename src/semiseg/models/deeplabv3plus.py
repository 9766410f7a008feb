"""DeepLabV3+ (ASPP on the stride-32/16/8 features, low-level decoder) with feature-perturbation branches.

``model(x)`` returns logits at input resolution. ``model(x, fp_branches=k)`` also decodes k copies of
the features, each with its own Dropout2d(p) mask on c1 and c4, in one batched decoder call (UniMatch's
``need_fp``; DSSN uses k = 2), and returns ``(logits, [fp_1, ..., fp_k])``.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(cin: int, cout: int, k: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=(k // 2) * dilation, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ASPPPooling(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = conv_bn_relu(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(F.adaptive_avg_pool2d(x, 1))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=True)


class ASPP(nn.Module):
    """The authors' ASPP (UniMatch, DSSN, CSL): no dropout after the projection, so a train-mode weak
    forward (whose prediction becomes the pseudo-label) is not thinned at random. ``dropout > 0`` adds
    torchvision's ``Dropout(0.5)`` there, a regulariser that also perturbs those pseudo-labels."""

    def __init__(self, cin: int, cout: int, dilations: Sequence[int], dropout: float = 0.0) -> None:
        super().__init__()
        self.branches = nn.ModuleList([conv_bn_relu(cin, cout)] + [conv_bn_relu(cin, cout, 3, d) for d in dilations]
                                      + [ASPPPooling(cin, cout)])
        drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()  # a slot either way: same state_dict keys
        self.project = nn.Sequential(conv_bn_relu(cout * (len(dilations) + 2), cout), drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([b(x) for b in self.branches], 1))


def complementary_dropout(*feats: torch.Tensor) -> List[torch.Tensor]:
    """UniMatch V2's Complementary Dropout on features of a batch [view1; view2]: a per-(sample, channel)
    Bernoulli(0.5) mask x2 on the first half and its complement on the second, so the two views see
    disjoint channels; exactly half of the pairs (a random half, floor) are left unperturbed. One mask for
    all levels, as the authors' code; levels narrower than the widest take its first channels."""
    half = feats[0].shape[0] // 2
    dim = max(f.shape[1] for f in feats)
    ref = feats[0]
    keep = torch.bernoulli(torch.full((half, dim), 0.5, device=ref.device)) * 2
    keep[torch.randperm(half, device=ref.device)[: half // 2]] = 1.0
    mask = torch.cat([keep, 2 - keep])  # (2 * half, dim)
    return [f * mask[:, : f.shape[1], None, None].to(f.dtype) for f in feats]


class DeepLabV3Plus(nn.Module):
    def __init__(self, backbone: nn.Module, num_classes: int, dilations: Sequence[int] = (6, 12, 18),
                 head_channels: int = 256, low_level_channels: int = 48, fp_dropout: float = 0.5,
                 aspp_dropout: float = 0.0) -> None:
        super().__init__()
        self.backbone = backbone
        c1, c4 = backbone.channels[0], backbone.channels[-1]
        self.aspp = ASPP(c4, head_channels, dilations, aspp_dropout)
        self.reduce = conv_bn_relu(c1, low_level_channels)
        self.fuse = nn.Sequential(conv_bn_relu(head_channels + low_level_channels, head_channels, 3),
                                  conv_bn_relu(head_channels, head_channels, 3))
        self.classifier = nn.Conv2d(head_channels, num_classes, 1)
        self.fp_dropout = fp_dropout

    def head_parameters(self) -> List[nn.Parameter]:
        """Everything but the backbone: trained at lr * lr_multi."""
        return [p for n, p in self.named_parameters() if not n.startswith("backbone.")]

    def decode(self, c1: torch.Tensor, c4: torch.Tensor) -> torch.Tensor:
        c4 = self.aspp(c4)
        c4 = F.interpolate(c4, size=c1.shape[-2:], mode="bilinear", align_corners=True)
        return self.classifier(self.fuse(torch.cat([self.reduce(c1), c4], 1)))

    def forward(self, x: torch.Tensor, fp_branches: int = 0,
                comp_drop: bool = False) -> Union[torch.Tensor, Tuple[torch.Tensor, List[torch.Tensor]]]:
        h, w = x.shape[-2:]
        feats = self.backbone(x)
        c1, c4 = feats[0], feats[-1]
        if comp_drop:
            c1, c4 = complementary_dropout(c1, c4)
        if fp_branches:
            # independent channel-dropout masks per branch, always on (it is a perturbation, not regularisation)
            c1 = torch.cat([c1] + [F.dropout2d(c1, self.fp_dropout, training=True) for _ in range(fp_branches)])
            c4 = torch.cat([c4] + [F.dropout2d(c4, self.fp_dropout, training=True) for _ in range(fp_branches)])
        out = self.decode(c1, c4)
        out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=True)
        if fp_branches:
            clean, *fp = out.chunk(fp_branches + 1)
            return clean, fp
        return out
