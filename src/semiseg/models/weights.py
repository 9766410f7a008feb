"""Backbone weights from files: the field's deep-stem checkpoints, torchvision-format ResNets, EfficientNet.

Always ``weights_only=True`` (a weights file must not run code), and a mismatch names the file and
the missing or unexpected keys instead of loading half a network.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable

import torch
from torch import nn

from semiseg.errors import SemisegError

PREFIXES = ("module.", "_orig_mod.", "backbone.", "model.")


def read_state_dict(path: str | Path) -> Dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise SemisegError(f"weights file {path} does not exist (model.pretrained, relative to the working directory "
                           f"{Path.cwd()}): for resnet<depth>, the field's deep-stem ImageNet ResNet (resnet101.pth, "
                           "linked from UniMatch's README); model.stem=standard takes a torchvision ResNet file; for "
                           "dinov2_*, Meta's dinov2_vit{s,b,l}14_pretrain.pth; model.pretrained= trains from scratch")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle with code, truncated zip, not a torch file...
        first = str(e).splitlines()[0]
        raise SemisegError(f"weights file {path} cannot be loaded safely (weights_only): {first}") from None
    for key in ("state_dict", "model"):  # common wrappers
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise SemisegError(f"weights file {path} holds a {type(sd).__name__}, not a state dict")
    for prefix in PREFIXES:
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def _short(keys: Iterable[str], n: int = 6) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def mismatch(module: nn.Module, sd: Dict[str, torch.Tensor]):
    """(missing, unexpected, of another shape): the keys, sorted, that keep ``sd`` from loading strictly."""
    own = module.state_dict()
    shapes = sorted(k for k in set(own) & set(sd) if own[k].shape != sd[k].shape)
    return sorted(set(own) - set(sd)), sorted(set(sd) - set(own)), shapes


def load_into(module: nn.Module, sd: Dict[str, torch.Tensor], path: str | Path, drop: tuple = ()) -> None:
    """Strict load after dropping classifier keys (``drop`` prefixes); errors list what does not match."""
    sd = {k: v for k, v in sd.items() if not k.startswith(drop)}
    own = module.state_dict()
    missing, unexpected, shape = mismatch(module, sd)
    if missing or unexpected or shape:
        parts = []
        if missing:
            parts.append(f"missing keys: {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_short(unexpected)}")
        if shape:
            parts.append("shape mismatch: "
                         + _short(f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in shape))
        raise SemisegError(f"weights file {path} does not fit the {module.__class__.__name__} backbone; "
                           + "; ".join(parts) + " (check model.backbone, model.stem and model.width)")
    module.load_state_dict(sd, strict=True)


def load_weights(module: nn.Module, state: Dict[str, torch.Tensor], path: str | Path,
                 what: str = "model") -> None:
    """``module.load_state_dict`` with one line naming the file when the weights belong to another model."""
    state = strip_prefixes(state)
    missing, unexpected, shapes = mismatch(module, state)
    if missing or unexpected or shapes:
        if shapes:
            k = shapes[0]
            example = f"{k} is {tuple(state[k].shape)} there, {tuple(module.state_dict()[k].shape)} here"
        else:
            example = f"{missing[0]} missing" if missing else f"{unexpected[0]} unexpected"
        raise SemisegError(f"checkpoint {path}: its {what} weights do not fit this model ({len(missing)} missing, "
                           f"{len(unexpected)} unexpected, {len(shapes)} of another shape; e.g. {example}): "
                           "it was trained with another model.backbone, width, head or number of classes")
    module.load_state_dict(state)


def strip_prefixes(sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    for prefix in ("module.", "_orig_mod."):
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd
