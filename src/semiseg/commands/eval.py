"""``semiseg eval CKPT``: the student (and the teacher, if the checkpoint has one) on the validation split."""
from __future__ import annotations

import torch

from semiseg.config import load_config
from semiseg.data.loaders import build_val_loader
from semiseg.data.presets import resolve_layout
from semiseg.engine.checkpoint import load_checkpoint
from semiseg.engine.evaluator import evaluate
from semiseg.engine.logging import iou_table
from semiseg.models import build_model


def run(args) -> int:
    ckpt = load_checkpoint(args.ckpt)
    cfg = load_config(None, args.overrides, extra=ckpt["config"])
    if args.mode:
        cfg.eval.mode = args.mode
    layout = resolve_layout(cfg.data)
    names = layout.class_names
    cfg.model.pretrained = ""  # the checkpoint has the weights
    model = build_model(cfg.model, len(names))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    loader = build_val_loader(cfg, layout)
    nets = {"student": ckpt["model"]}
    if "teacher" in ckpt.get("method", {}):
        nets["teacher"] = ckpt["method"]["teacher"]
    for who, sd in nets.items():
        model.load_state_dict(sd)
        m = evaluate(model.to(device), loader, len(names), cfg.data.ignore_index, device, cfg.eval.mode,
                     cfg.eval.window or cfg.data.crop_size)
        print(f"{who} ({cfg.eval.mode}):")
        print(iou_table(names, m["iou"], {"mIoU": m["mIoU"], "aAcc": m["aAcc"], "mAcc": m["mAcc"]}))
    return 0
