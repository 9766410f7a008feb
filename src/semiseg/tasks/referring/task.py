"""Referring expression segmentation (RES): a sentence picks one object. Samples from the referring scenes
or RefCOCO (+, G-Ref) (``sources``), each image resized to ``data.crop_size``; a text-conditioned model
(the built-in encoder's words come from the training expressions); oIoU, mIoU and P@X, of the teacher where
a run has one (as SemiRES reports)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

from torch import nn
from torch.utils.data import DataLoader

from semiseg.data.dataset import collate_val
from semiseg.data.loaders import TrainBatches, leave_stopping_to_the_main_process
from semiseg.errors import SemisegError
from semiseg.pseudo.store import ProposalStore
from semiseg.tasks.base import Task, no_reduce
from semiseg.tasks.referring.dataset import RefDataset, check_refs, store_key
from semiseg.tasks.referring.evaluator import evaluate_res
from semiseg.tasks.referring.model import build_res_model
from semiseg.tasks.referring.predict import ReferringPredictor, overlay
from semiseg.tasks.referring.sources import load_sample, res_splits
from semiseg.tasks.registry import TASKS

SUITE_SCORES = ("oIoU", "mIoU", "P@0.5", "P@0.7", "P@0.9")


@TASKS.register("res")
class ReferringTask(Task):
    key = "oIoU"  # the field's model-selection score
    Predictor = ReferringPredictor
    by_teacher = True

    def __init__(self, cfg, rank: int = 0, world: int = 1) -> None:
        super().__init__(cfg, rank, world)
        d = cfg.data
        self.labeled, self.unlabeled, self.val = res_splits(d.dataset, d.root, d.split, d.refs, d.instances, d.images,
                                                            d.val_split)
        self.vocabulary = sorted({s.sentence for s in self.labeled + self.unlabeled})
        self.class_names = ["background", "referent"]
        self.palette = [[0, 0, 0], [255, 64, 0]]

    @classmethod
    def checkpoint_meta(cls, state: dict, cfg, path: str) -> Dict[str, Any]:
        meta = super().checkpoint_meta(state, cfg, path)
        if "vocabulary" not in meta:
            raise SemisegError(f"checkpoint {path} has no vocabulary (written by an older semiseg?)")
        return meta

    def meta(self) -> Dict[str, Any]:
        return {**super().meta(), "vocabulary": self.vocabulary}

    @classmethod
    def model_from(cls, cfg, meta: Dict[str, Any]) -> nn.Module:
        return build_res_model(cfg.model, meta["vocabulary"])

    def lr_groups(self, model: nn.Module) -> List[Tuple[list, float]]:
        """The fusion and decoder at ``train.lr_multi``; the text encoder at ``train.text_lr`` (the base LR when
        unset)."""
        t = self.cfg.train
        text_scale = t.text_lr / t.lr if t.text_lr else 1.0
        return [(model.head_parameters(), t.lr_multi), (model.text_parameters(), text_scale)]

    def train_batches(self, unlabeled_streams: int, device) -> TrainBatches:
        d, seed = self.cfg.data, self.cfg.train.seed
        check_refs(self.cfg, self.labeled, self.unlabeled, unlabeled_streams)
        store = None
        if d.proposal_store and unlabeled_streams:
            keys = sorted({store_key(d.root, s) for s in self.unlabeled})
            store = ProposalStore(d.proposal_store)
            store.verify(keys, "the unlabeled refs")
        streams = {"x": (RefDataset(self.labeled, d.root, d, "train_l"), seed)}
        if unlabeled_streams:
            streams["u"] = (RefDataset(self.unlabeled, d.root, d, "train_u", store), seed + 7919)
        length = len(self.unlabeled) if unlabeled_streams else len(self.labeled)
        return TrainBatches(streams, length, d.batch_size, self.rank, self.world, d.num_workers, device)

    def class_pixels(self):
        """None: referring segmentation has one referent per expression, and SemiRES weights its two classes
        by hand (train.class_weights)."""
        return None

    def val_loader(self) -> DataLoader:
        e, d = self.cfg.eval, self.cfg.data
        samples = self.val[: e.max_images] if e.max_images else self.val
        return DataLoader(RefDataset(samples[self.rank :: self.world], d.root, d, "val"), batch_size=e.batch_size,
                          num_workers=min(d.num_workers, 2), collate_fn=collate_val,
                          worker_init_fn=leave_stopping_to_the_main_process)

    def evaluate(self, net: nn.Module, loader, device, amp=None, reduce=no_reduce) -> Tuple[Dict[str, float], str]:
        m = evaluate_res(net, loader, device, amp)
        m.sums = reduce(m.sums)
        scores = m.compute()
        return scores, "\n".join(f"{k:<8}{v:8.2f}" for k, v in scores.items())

    @classmethod
    def table_scores(cls, e: Dict[str, float]) -> Dict[str, float]:
        """SemiRES reports the teacher: each score is the teacher's where the run has one."""
        return {c: e.get(f"teacher_{c}", e[c]) for c in SUITE_SCORES}

    @classmethod
    def report_sections(cls, ckpt: Path, max_images: int, draw) -> List[str]:
        """The first validation expressions: image, the referent, the prediction (the teacher's where there is one)."""
        predictor = cls.predictor(draw.load(ckpt), str(ckpt))
        d = predictor.cfg.data
        val = res_splits(d.dataset, d.root, d.split, d.refs, d.instances, d.images, d.val_split)[2][:max_images]
        colour = predictor.palette[1]
        rows = []
        for s in val:
            img, mask = load_sample(s)
            rows.append([(img, "image"), (overlay(img, mask, colour), "referent"),
                         (overlay(img, predictor.predict(img, s.sentence), colour), "prediction"), s.sentence])
        return ['<h2 id="images">Validation expressions</h2><p>Columns: image, the referent, the prediction, '
                'the expression.</p>', draw.image_table(rows)]

