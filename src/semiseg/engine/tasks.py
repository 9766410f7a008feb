"""The two tasks of the one trainer: what differs between semantic segmentation and referring expression
segmentation (RES) is where samples come from, the model, and how a prediction is scored. A task gives the
trainer its class names, model, training batches, validation loader and evaluation; the loop, optimizer,
autocast, DDP, checkpoints, logging and methods are shared.

    task: semantic   a data preset (data.dataset), a segmentation model, mIoU per class
    task: res        referring scenes or RefCOCO (+, G-Ref), a text-conditioned model, oIoU / mIoU / P@X
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from torch import nn
from torch.utils.data import DataLoader

from semiseg.data.dataset import collate_val
from semiseg.data.loaders import (TrainBatches, build_val_loader, leave_stopping_to_the_main_process, semantic_batches,
                                  verify_val)
from semiseg.data.presets import resolve_layout
from semiseg.engine.dist import all_reduce_sum
from semiseg.engine.evaluator import evaluate, summary
from semiseg.engine.logging import iou_table
from semiseg.errors import SemisegError
from semiseg.models import build_model
from semiseg.pseudo.store import ProposalStore
from semiseg.res.dataset import RefDataset
from semiseg.res.evaluator import evaluate_res
from semiseg.res.model import build_res_model
from semiseg.res.sources import res_splits


class SemanticTask:
    key = "mIoU"  # the score that picks best.pth

    def __init__(self, cfg, rank: int = 0, world: int = 1) -> None:
        self.cfg, self.rank, self.world = cfg, rank, world
        self.layout = resolve_layout(cfg.data)
        self.class_names: List[str] = list(self.layout.class_names)
        self.palette = self.layout.palette

    def build_model(self, meta: Optional[Dict[str, Any]] = None) -> nn.Module:
        return build_model(self.cfg.model, len(self.class_names))

    def meta(self) -> Dict[str, Any]:
        """What a checkpoint needs besides the config to be used on its own."""
        return {"class_names": self.class_names, "palette": self.palette}

    def train_batches(self, unlabeled_streams: int, device) -> TrainBatches:
        return semantic_batches(self.cfg, self.layout, self.rank, self.world, unlabeled_streams, device)

    def val_loader(self) -> DataLoader:
        loader = build_val_loader(self.cfg, self.layout, self.rank, self.world)
        verify_val(loader.dataset, self.layout.sources.get("val", "the validation split"), self.cfg.data.on_error)
        return loader

    def evaluate(self, net: nn.Module, loader, device, amp=None) -> Tuple[Dict[str, float], str]:
        """Scalars to log (unprefixed) and a table to print."""
        e, d = self.cfg.eval, self.cfg.data
        m = evaluate(net, loader, len(self.class_names), d.ignore_index, device, e.mode, e.window or d.crop_size, amp)
        table = iou_table(self.class_names, m["iou"], {"mIoU": m["mIoU"], "aAcc": m["aAcc"], "mAcc": m["mAcc"]},
                          m["share_pred"], m["share_true"])
        return summary("", m, self.class_names), table


class ReferringTask:
    """Samples from ``res.sources`` (data.dataset scenes or refcoco, data.split the ratio folder), each
    image resized to ``data.crop_size``; the built-in text encoder's words come from the training expressions."""

    key = "oIoU"  # the field's model-selection score

    def __init__(self, cfg, rank: int = 0, world: int = 1) -> None:
        self.cfg, self.rank, self.world = cfg, rank, world
        d = cfg.data
        self.labeled, self.unlabeled, self.val = res_splits(d.dataset, d.root, d.split, d.refs, d.instances, d.images,
                                                            d.val_split)
        self.vocabulary = sorted({s.sentence for s in self.labeled + self.unlabeled})
        self.class_names = ["background", "referent"]
        self.palette = [[0, 0, 0], [255, 64, 0]]

    def build_model(self, meta: Optional[Dict[str, Any]] = None) -> nn.Module:
        return build_res_model(self.cfg.model, (meta or {}).get("vocabulary", self.vocabulary))

    def meta(self) -> Dict[str, Any]:
        return {"class_names": self.class_names, "palette": self.palette, "vocabulary": self.vocabulary}

    def train_batches(self, unlabeled_streams: int, device) -> TrainBatches:
        d, seed = self.cfg.data, self.cfg.train.seed
        if unlabeled_streams > 1:
            raise SemisegError(f"method {self.cfg.method.name} asks for a CutMix partner stream, which task res has not")
        streams = {"x": (RefDataset(self.labeled, d.root, d, "train_l"), seed)}
        if unlabeled_streams:
            store = ProposalStore(d.proposal_store) if d.proposal_store else None
            unlabeled = RefDataset(self.unlabeled, d.root, d, "train_u", store)
            if store is not None:
                store.verify(sorted({unlabeled.store_key(s) for s in self.unlabeled}), "the unlabeled refs")
            streams["u"] = (unlabeled, seed + 7919)
        length = len(self.unlabeled) if unlabeled_streams else len(self.labeled)
        return TrainBatches(streams, length, d.batch_size, self.rank, self.world, d.num_workers, device)

    def val_loader(self) -> DataLoader:
        e, d = self.cfg.eval, self.cfg.data
        samples = self.val[: e.max_images] if e.max_images else self.val
        return DataLoader(RefDataset(samples[self.rank :: self.world], d.root, d, "val"), batch_size=e.batch_size,
                          num_workers=min(d.num_workers, 2), collate_fn=collate_val,
                          worker_init_fn=leave_stopping_to_the_main_process)

    def evaluate(self, net: nn.Module, loader, device, amp=None) -> Tuple[Dict[str, float], str]:
        m = evaluate_res(net, loader, device, amp)
        m.sums = all_reduce_sum(m.sums)
        scores = m.compute()
        return scores, "\n".join(f"{k:<8}{v:8.2f}" for k, v in scores.items())


TASKS = {"semantic": SemanticTask, "res": ReferringTask}


def build_task(cfg, rank: int = 0, world: int = 1):
    return TASKS[cfg.task](cfg, rank, world)
