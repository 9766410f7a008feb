"""Semantic segmentation: a data preset (``data.dataset``) of images and index masks, a segmentation
model, mIoU per class; its report draws validation images with the pseudo-labels the method would train on
and the confusion matrix."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

from torch import nn
from torch.utils.data import DataLoader

from semiseg.config_check import check_choice
from semiseg.data.dataset import collate_val
from semiseg.data.loaders import TrainBatches, leave_stopping_to_the_main_process
from semiseg.data.presets import PRESETS, resolve_layout
from semiseg.errors import SemisegError
from semiseg.models import build_model
from semiseg.pseudo.store import ProposalStore
from semiseg.tasks.base import Task, no_reduce
from semiseg.tasks.registry import TASKS
from semiseg.tasks.semantic import report
from semiseg.tasks.semantic.dataset import SegDataset, check_lists, labeled_class_pixels, verify_val
from semiseg.tasks.semantic.evaluator import evaluate, iou_table, summary
from semiseg.tasks.semantic.predict import SemanticPredictor


@TASKS.register("semantic")
class SemanticTask(Task):
    key = "mIoU"
    Predictor = SemanticPredictor

    def __init__(self, cfg, rank: int = 0, world: int = 1) -> None:
        super().__init__(cfg, rank, world)
        self.layout = resolve_layout(cfg.data)
        self.notes = list(self.layout.notes)
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

    def lr_groups(self, model: nn.Module) -> List[Tuple[list, float]]:
        """The head at ``train.lr_multi`` (the field's x10 for a pretrained encoder)."""
        return [(model.head_parameters(), self.cfg.train.lr_multi)]

    def train_batches(self, unlabeled_streams: int, device) -> TrainBatches:
        """Labeled ``x``, then ``u`` and the CutMix partner ``mix`` as the method asks; the split's files, masks
        and proposals checked before any step."""
        d, seed, layout = self.cfg.data, self.cfg.train.seed, self.layout
        check_lists(self.cfg, layout, unlabeled_streams)
        store = None
        if d.proposal_store and unlabeled_streams:
            store = ProposalStore(d.proposal_store)
            store.verify([s.image for s in layout.unlabeled], layout.sources.get("unlabeled", "the unlabeled split"))
        streams = {"x": (SegDataset(layout.labeled, layout, d, "train_l", seed=seed), seed)}
        for k, name in enumerate(["u", "mix"][:unlabeled_streams]):
            s = seed + 7919 * (k + 1)
            streams[name] = (SegDataset(layout.unlabeled, layout, d, "train_u", seed=s,
                                        with_hidden=d.hidden_labels and name == "u", proposals=store), s)
        kind = "unlabeled" if unlabeled_streams else "labeled"
        return TrainBatches(streams, len(getattr(layout, kind)), d.batch_size, self.rank, self.world, d.num_workers,
                            device, source=layout.sources.get(kind, f"the {kind} list"))

    def class_pixels(self):
        """Read once from every labeled mask, mapped as training maps it (what the loss sees, at full size)."""
        return labeled_class_pixels(self.layout, len(self.class_names), self.cfg.data.ignore_index)

    def val_loader(self) -> DataLoader:
        e, d, layout = self.cfg.eval, self.cfg.data, self.layout
        if layout.val is None:
            raise SemisegError(layout.why.get("val") or
                               f"no validation split found under {layout.root} (set data.val or add splits/val.txt)")
        samples = layout.val[: e.max_images] if e.max_images else layout.val
        ds = SegDataset(samples[self.rank :: self.world], layout, d, "val")
        verify_val(ds, layout.sources.get("val", "the validation split"), d.on_error)
        return DataLoader(ds, batch_size=e.batch_size, shuffle=False, num_workers=min(d.num_workers, 2),
                          collate_fn=collate_val, worker_init_fn=leave_stopping_to_the_main_process)

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
