"""What a semantic checkpoint shows in a report: validation images with its prediction and the
pseudo-label its method would train on, the confusion matrix, and the same images through every run of a
suite. HTML comes from the report's renderers (``draw``), which live above the tasks."""
from __future__ import annotations

import functools
import html
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch

from semiseg.tasks.semantic.dataset import SegDataset, labeled_class_pixels
from semiseg.data.io import read_image
from semiseg.data.presets import resolve_layout
from semiseg.methods.common import SemiMethod
from semiseg.methods.registry import METHODS
from semiseg.pseudo.selectors import build_selector, selected, wanted_shares
from semiseg.tasks.semantic.evaluator import confusion


class RunImages:
    """What one semantic checkpoint makes of the validation images: its prediction, and the pseudo-label its
    method would train on (the teacher's scores, or the model's, through the method's selector)."""

    def __init__(self, task, ckpt: Path, state: dict) -> None:
        self.student = task.predictor(state, str(ckpt))
        cfg = self.student.cfg
        self.has_teacher = "teacher" in state.get("method", {})
        self.labeler = task.predictor(state, str(ckpt), teacher=True) if self.has_teacher else self.student
        self.trains_on_pseudo_labels = issubclass(METHODS.get(cfg.method["name"]), SemiMethod)
        self.selector = build_selector(cfg.method.get("selector") or {"name": "none"})
        self.layout = resolve_layout(cfg.data)
        self.selector = functools.partial(self.selector, **self._shares(state, wanted_shares(self.selector)))
        self.ds = SegDataset(self.layout.val, self.layout, cfg.data, "val")

    def _shares(self, state: dict, wanted) -> Dict[str, torch.Tensor]:
        """The class shares a selector takes (``class_share``) as the run's banks held them at this checkpoint;
        a checkpoint without them: the labeled masks' shares, and each image's own argmax shares for the model's."""
        banks, out = state.get("method", {}), {}
        if "prior" in wanted:
            labeled = banks.get("align_labeled")
            if labeled is None or not labeled.any():
                labeled = torch.as_tensor(labeled_class_pixels(self.layout, len(self.student.class_names),
                                                               self.student.cfg.data.ignore_index))
            out["prior"] = labeled.double()
        if "predicted" in wanted and banks.get("align_predicted") is not None and banks["align_predicted"].any():
            out["predicted"] = banks["align_predicted"]
        return out

    def __len__(self) -> int:
        return len(self.ds)

    def _scores(self, model, item) -> torch.Tensor:
        return torch.nn.functional.interpolate(model(item["image"][None]).float(), size=item["mask"].shape,
                                               mode="bilinear", align_corners=True)

    @torch.no_grad()
    def prediction(self, i: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """(prediction, ground truth) of image i as class maps at the mask's size."""
        item = self.ds[i]
        return self._scores(self.student.model, item).argmax(1)[0], item["mask"]

    @torch.no_grad()
    def views(self, i: int) -> Dict[str, np.ndarray]:
        """Image i, its ground truth, prediction and pseudo-label (unselected pixels black), as RGB arrays."""
        item, colorize = self.ds[i], self.student.colorize
        gt = item["mask"].numpy()
        scores = self._scores(self.student.model, item)
        labels = scores if self.labeler is self.student else self._scores(self.labeler.model, item)
        pl, w = self.selector(labels.softmax(1), torch.zeros(1, *gt.shape, dtype=torch.bool))
        return {"image": read_image(self.layout.root / self.ds.samples[i].image),
                "ground truth": colorize(np.where(gt == 255, 0, gt).astype(np.uint8)),
                "prediction": colorize(scores.argmax(1)[0].byte().numpy()),
                "pseudo-label": (colorize(pl[0].byte().numpy()) * selected(w[0]).numpy()[..., None]).astype(np.uint8)}


def run_sections(task, ckpt: Path, max_images: int, draw) -> List[str]:
    run = RunImages(task, ckpt, draw.load(ckpt))
    names = run.student.class_names
    cm = torch.zeros(len(names), len(names), dtype=torch.long)
    for i in range(len(run)):
        cm += confusion(*run.prediction(i), len(names), 255)
    rows = [[(a, n) for n, a in run.views(i).items()] for i in range(min(max_images, len(run)))]
    who = "teacher" if run.has_teacher else "model"
    return [f'<h2 id="images">Validation images</h2><p>Columns: image, ground truth, prediction, pseudo-label '
            f'(the {who}\'s scores through the method\'s selector; unselected pixels black).</p>'
            + draw.image_table(rows),
            f'<h2 id="confusion">Confusion matrix ({len(run)} validation images, % of each true class)</h2>',
            draw.heatmap(cm.tolist(), names, "rows: ground truth, columns: prediction")]


def comparison_sections(task, ckpts: List[Tuple[str, Path]], max_images: int, draw) -> List[str]:
    """The same validation images through every run of a suite (``ckpts``: a label and a checkpoint per
    run): each run's prediction, and for runs that train on pseudo-labels the pseudo-label their method makes."""
    runs = [(name, RunImages(task, ckpt, draw.load(ckpt))) for name, ckpt in ckpts]
    if not runs:
        return []
    columns, rows = ["image", "ground truth"], []
    for name, run in runs:
        columns += [f"{name} prediction"] + ([f"{name} pseudo-label"] if run.trains_on_pseudo_labels else [])
    for i in range(min(max_images, len(runs[0][1]))):
        views = [run.views(i) for _, run in runs]
        row = [(views[0][n], n) for n in ("image", "ground truth")]
        for (name, run), v in zip(runs, views):
            row += [(v["prediction"], f"{name} prediction")]
            if run.trains_on_pseudo_labels:
                row += [(v["pseudo-label"], f"{name} pseudo-label")]
        rows.append(row)
    return ['<h2 id="images">Validation images, run by run</h2><p>Columns: ' + html.escape(", ".join(columns))
            + " (pseudo-labels: the teacher's scores, or the model's, through the method's selector; unselected "
            "pixels black).</p>" + draw.image_table(rows, columns)]
