"""ResNet backbones with the deep 3-conv stem of the field's checkpoints, dilation and a width multiplier.

Key names follow UniMatch/ST++'s resnet.py (``conv1.{0,1,3,4,6}``, ``bn1`` on 128 channels), so the
distributed ``resnet{50,101}.pth`` load as they are; ``stem="standard"`` gives torchvision's 7x7 stem
and key names for torchvision-format state dicts.
"""
from __future__ import annotations

from typing import List

import torch
from torch import nn


def conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: int = 1, downsample=None) -> None:
        super().__init__()
        self.conv1 = conv3x3(cin, planes, stride, dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, 1, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + idt)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: int = 1, downsample=None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + idt)


DEPTHS = {18: (BasicBlock, [2, 2, 2, 2]), 34: (BasicBlock, [3, 4, 6, 3]),
          50: (Bottleneck, [3, 4, 6, 3]), 101: (Bottleneck, [3, 4, 23, 3])}


class ResNet(nn.Module):
    """Returns features at strides 4, 8, 16, 32 (layer3/4 dilated instead for output stride 16 or 8)."""

    def __init__(self, depth: int = 50, width: float = 1.0, stem: str = "deep", output_stride: int = 16) -> None:
        super().__init__()
        block, layers = DEPTHS[depth]
        w = lambda c: max(8, int(round(c * width)))  # noqa: E731
        if stem == "deep":
            self.conv1 = nn.Sequential(
                conv3x3(3, w(64), 2), nn.BatchNorm2d(w(64)), nn.ReLU(inplace=True),
                conv3x3(w(64), w(64)), nn.BatchNorm2d(w(64)), nn.ReLU(inplace=True),
                conv3x3(w(64), w(128)))
            self.inplanes = w(128)
        elif stem == "standard":
            self.conv1 = nn.Conv2d(3, w(64), 7, 2, 3, bias=False)
            self.inplanes = w(64)
        else:
            raise ValueError(f"unknown stem {stem!r}")
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        dilate = {32: [False, False, False], 16: [False, False, True], 8: [False, True, True]}[output_stride]
        self.dilation = 1
        self.layer1 = self._make_layer(block, w(64), layers[0])
        self.layer2 = self._make_layer(block, w(128), layers[1], 2, dilate[0])
        self.layer3 = self._make_layer(block, w(256), layers[2], 2, dilate[1])
        self.layer4 = self._make_layer(block, w(512), layers[3], 2, dilate[2])
        self.channels = [w(64) * block.expansion, w(128) * block.expansion, w(256) * block.expansion,
                         w(512) * block.expansion]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1, dilate: bool = False) -> nn.Sequential:
        downsample, previous = None, self.dilation
        if dilate:  # trade the stride for dilation, as torchvision's replace_stride_with_dilation
            self.dilation *= stride
            stride = 1
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, previous, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, dilation=self.dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c1 = self.layer1(x)
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        return [c1, c2, c3, c4]
