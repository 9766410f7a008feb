"""Semantic segmentation: a data preset (``data.dataset``) of images and index masks, a segmentation
model, mIoU per class; its report draws validation images with the pseudo-labels the method would train on
and the confusion matrix."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

from torch import nn
from torch.utils.data import DataLoader

from semiseg.config_check import check_choice
from semiseg.data.loaders import TrainBatches, build_val_loader, semantic_batches, verify_val
from semiseg.data.presets import PRESETS, resolve_layout
from semiseg.models import build_model
from semiseg.tasks.base import Task, no_reduce
from semiseg.tasks.registry import TASKS
from semiseg.tasks.semantic import report
from semiseg.tasks.semantic.evaluator import evaluate, iou_table, summary
from semiseg.tasks.semantic.predict import SemanticPredictor


@TASKS.register("semantic")
class SemanticTask(Task):
    key = "mIoU"
    Predictor = SemanticPredictor

    def __init__(self, cfg, rank: int = 0, world: int = 1) -> None:
        super().__init__(cfg, rank, world)
        self.layout = resolve_layout(cfg.data)
        self.class_names = list(self.layout.class_names)
        self.palette = self.layout.palette

    @classmethod
    def check_config(cls, cfg, origin: Dict[str, str]) -> None:
        check_choice(origin, "data.dataset", cfg.data.dataset, list(PRESETS))

    @classmethod
    def checkpoint_meta(cls, state: dict, cfg, path: str) -> Dict[str, Any]:
        meta = dict(state.get("meta") or {})  # checkpoints of older versions: the config's names
        meta["class_names"] = meta.get("class_names") or list(cfg.data.class_names)
        meta["palette"] = meta.get("palette") or [list(p) for p in cfg.data.palette]
        return super().checkpoint_meta({"meta": meta}, cfg, path)

    @classmethod
    def model_from(cls, cfg, meta: Dict[str, Any]) -> nn.Module:
        return build_model(cfg.model, len(meta["class_names"]))

    def train_batches(self, unlabeled_streams: int, device) -> TrainBatches:
        return semantic_batches(self.cfg, self.layout, self.rank, self.world, unlabeled_streams, device)

    def val_loader(self) -> DataLoader:
        loader = build_val_loader(self.cfg, self.layout, self.rank, self.world)
        verify_val(loader.dataset, self.layout.sources.get("val", "the validation split"), self.cfg.data.on_error)
        return loader

    def evaluate(self, net: nn.Module, loader, device, amp=None, reduce=no_reduce) -> Tuple[Dict[str, float], str]:
        e, d = self.cfg.eval, self.cfg.data
        m = evaluate(net, loader, len(self.class_names), d.ignore_index, device, e.mode, e.window or d.crop_size, amp,
                     reduce)
        table = iou_table(self.class_names, m["iou"], {"mIoU": m["mIoU"], "aAcc": m["aAcc"], "mAcc": m["mAcc"]},
                          m["share_pred"], m["share_true"])
        return summary("", m, self.class_names), table

    @classmethod
    def report_sections(cls, ckpt: Path, max_images: int, draw) -> List[str]:
        return report.run_sections(cls, ckpt, max_images, draw)

    @classmethod
    def comparison_sections(cls, ckpts: List[Tuple[str, Path]], max_images: int, draw) -> List[str]:
        return report.comparison_sections(cls, ckpts, max_images, draw)
