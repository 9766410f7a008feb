"""``semiseg bench pseudo CKPT``: how good are a model's pseudo-labels on the unlabeled split, and what do
selectors and refiners do to them? Scored against the split's hidden labels (the scenes benchmark has them).

Selectors: share of pixels selected (full weight), precision (selected pixels whose label is right),
recall (right pixels that were selected), and AUROC of each per-pixel score as a detector of right
labels (max confidence; CSL's weight), which is the separation CSL claims to improve.
Refiners (selector ``none``, proposals from a store): pseudo-label mIoU and boundary F-score (1 px).
Each label map, per true class: precision, recall, and the other class its pixels are given most often (where
a class's pseudo-labels go: a rare class lost to a look-alike).
"""
from __future__ import annotations

import functools
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata

from semiseg.methods.teacher import multiscale_probs
from semiseg.tasks.semantic.dataset import SegDataset, labeled_class_pixels
from semiseg.tasks.semantic.evaluator import confusion, metrics_from_confusion
from semiseg.tasks.base import Predictor
from semiseg.pseudo.align import align
from semiseg.pseudo.refiners import build_refiner
from semiseg.pseudo.selectors import build_selector, selected, wanted_shares

SELECTORS = {"threshold 0.95": {"name": "threshold", "tau": 0.95}, "CPLG (class_aware)": {"name": "class_aware"},
             "csl": {"name": "csl"}, "class_share (DARS)": {"name": "class_share"}, "none": {"name": "none"}}
REFINERS = ["iom", "cpi"]


def boundary(label: torch.Tensor) -> torch.Tensor:
    """(H, W) -> bool map of pixels with a 4-neighbour of another label."""
    b = torch.zeros_like(label, dtype=torch.bool)
    b[:-1] |= label[:-1] != label[1:]
    b[1:] |= label[:-1] != label[1:]
    b[:, :-1] |= label[:, :-1] != label[:, 1:]
    b[:, 1:] |= label[:, :-1] != label[:, 1:]
    return b


def boundary_counts(pred: torch.Tensor, gt: torch.Tensor, tol: int = 1):
    """(matched predicted, predicted, matched true, true) boundary pixels within ``tol`` pixels."""
    bp, bg = boundary(pred), boundary(gt)
    k = 2 * tol + 1
    near_g = F.max_pool2d(bg[None, None].float(), k, 1, tol)[0, 0] > 0
    near_p = F.max_pool2d(bp[None, None].float(), k, 1, tol)[0, 0] > 0
    return (bp & near_g).sum().item(), bp.sum().item(), (bg & near_p).sum().item(), bg.sum().item()


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Mann-Whitney AUROC with average ranks for ties."""
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def confused_with(cm: torch.Tensor) -> List[Tuple[int, float]]:
    """Per true class (a row of the confusion matrix ``cm[true, predicted]``): the other class its pixels are
    given most often, and the share of the class's pixels it takes; (-1, 0.0) where no pixel went elsewhere."""
    off = cm.double().clone()
    off.fill_diagonal_(0)
    rows = cm.double().sum(1).clamp(min=1)
    share, other = (off / rows[:, None]).max(1)
    return [(int(o), float(v)) if v > 0 else (-1, 0.0) for o, v in zip(other, share)]


def _probs(predictor: Predictor, item, scales: Sequence[float] = (1.0,)) -> torch.Tensor:
    """The model's probabilities at the mask's size, averaged over input ``scales`` as a teacher with
    ``method.teacher_scales`` labels."""
    x = item["image"][None].to(predictor.device)
    return multiscale_probs(predictor.model, x, scales, tuple(item["mask"].shape)).cpu()


def mean_prediction(predictor: Predictor, ds, scales: Sequence[float] = (1.0,)) -> Tuple[torch.Tensor, torch.Tensor]:
    """Over every pixel of ``ds`` outside its ignore: the model's class probabilities averaged (what alignment
    divides by), and the share of the pixels each class is the argmax of (what ``class_share`` divides by)."""
    n_cls = len(predictor.class_names)
    total, argmax, count = torch.zeros(n_cls, dtype=torch.float64), torch.zeros(n_cls, dtype=torch.float64), 0
    with torch.no_grad():
        for i in range(len(ds)):
            item = ds[i]
            valid = (item["mask"] != 255)[None]
            probs = _probs(predictor, item, scales)
            total += probs.permute(1, 0, 2, 3)[:, valid].sum(1).double()
            argmax += torch.bincount(probs.argmax(1)[valid], minlength=n_cls).double()
            count += int(valid.sum())
    return (total / max(count, 1)).float(), (argmax / max(count, 1)).float()


def evaluate_pseudo(predictor: Predictor, samples, layout, store=None, max_images: int = 0,
                    scales: Sequence[float] = (1.0,)) -> Dict[str, object]:
    cfg, n_cls = predictor.cfg, len(predictor.class_names)
    ds = SegDataset(samples[: max_images or None], layout, cfg.data, "val")
    pixels = torch.as_tensor(labeled_class_pixels(layout, n_cls, cfg.data.ignore_index)[:n_cls], dtype=torch.float32)
    prior, (mean, predicted) = pixels / pixels.sum(), mean_prediction(predictor, ds, scales)
    shares = {"prior": prior, "predicted": predicted}  # the labeled masks' and the model's over these images
    selectors = {k: build_selector(v) for k, v in SELECTORS.items()}
    selectors = {k: functools.partial(v, **{s: shares[s] for s in wanted_shares(v)}) for k, v in selectors.items()}
    refiners = {k: build_refiner({"name": k}) for k in REFINERS} if store is not None else {}
    per_class = {k: np.zeros((3, n_cls)) for k in selectors}  # by predicted class: valid, selected, selected & right
    n_right = 0  # correct pseudo-labels, the same for every selector (recall's denominator)
    kept_right = {k: np.zeros(n_cls) for k in selectors}  # by true class: selected and right
    true_count = np.zeros(n_cls)  # by true class: labeled pixels (per-class recall's denominator)
    cms = {k: torch.zeros(n_cls, n_cls, dtype=torch.long) for k in ["teacher", "aligned", *refiners]}
    bnd = {k: np.zeros(4) for k in cms}
    miss = {k: [] for k in refiners}
    scores: Dict[str, List[np.ndarray]] = {"max confidence": [], "csl weight": []}
    right_all: List[np.ndarray] = []
    with torch.no_grad():
        for i in range(len(ds)):
            item = ds[i]
            gt = item["mask"]
            probs = _probs(predictor, item, scales)
            ignore = (gt == 255)[None]
            pl = probs.argmax(1)
            right = (pl == gt[None]) & ~ignore
            for name, select in selectors.items():
                _, w = select(probs, ignore)
                chosen = selected(w) & ~ignore
                for row, m in enumerate((~ignore, chosen, chosen & right)):
                    per_class[name][row] += torch.bincount(pl[m], minlength=n_cls).numpy()
                kept_right[name] += torch.bincount(gt[None][chosen & right], minlength=n_cls).numpy()
                if name == "csl":
                    scores["csl weight"].append(w[~ignore].numpy())
            n_right += int(right.sum())
            true_count += torch.bincount(gt[gt != 255], minlength=n_cls).numpy()
            scores["max confidence"].append(probs.max(1).values[~ignore].numpy())
            right_all.append(right[~ignore].numpy())
            maps = {"teacher": pl[0], "aligned": align(probs, prior, mean).argmax(1)[0]}
            if refiners:
                props = torch.from_numpy(store.get(ds.samples[i].image))
                for name, refine in refiners.items():
                    maps[name] = refine(probs, [props], ignore)[0][0]
                    miss[name].append(refine.miss_rate)
            for name, m in maps.items():
                cms[name] += confusion(m, gt, n_cls, 255)
                bnd[name] += boundary_counts(m, gt)
    right_cat = np.concatenate(right_all)
    out: Dict[str, object] = {"images": len(ds), "selectors": {}, "auroc": {}, "labels": {},
                              "class_names": list(predictor.class_names), "prior": prior.numpy(),
                              "mean": mean.numpy()}
    for name, (valid_c, sel_c, right_c) in per_class.items():
        n_valid, n_sel, n_sel_right = valid_c.sum(), sel_c.sum(), right_c.sum()
        with np.errstate(invalid="ignore", divide="ignore"):  # a class never predicted: NaN
            out["selectors"][name] = {"mask_ratio": n_sel / n_valid, "precision": n_sel_right / max(n_sel, 1),
                                      "recall": n_sel_right / max(n_right, 1),
                                      "class_mask_ratio": sel_c / valid_c, "class_precision": right_c / sel_c,
                                      "class_recall": kept_right[name] / true_count}
    for name, parts in scores.items():
        out["auroc"][name] = auroc(np.concatenate(parts), right_cat)
    for name, cm in cms.items():
        mp, np_, mg, ng = bnd[name]
        prec, rec = mp / max(np_, 1), mg / max(ng, 1)
        cmf = cm.double()
        with np.errstate(invalid="ignore", divide="ignore"):
            class_pr = ((cmf.diag() / cmf.sum(0)).numpy(), (cmf.diag() / cmf.sum(1)).numpy())  # by predicted, true
        out["labels"][name] = {"mIoU": metrics_from_confusion(cm)["mIoU"], "class_precision": class_pr[0],
                               "class_recall": class_pr[1],
                               "confused_with": confused_with(cm),
                               "boundary_F": 100 * 2 * prec * rec / max(prec + rec, 1e-9),
                               "miss_rate": float(np.mean(miss[name])) if name in miss else float("nan")}
    return out


MAP_NAMES = {"teacher": "prediction", "aligned": "prediction aligned to the labeled shares"}


def format_pseudo(res: Dict[str, object]) -> str:
    lines = [f"{res['images']} unlabeled images, scored against their hidden labels.", "",
             "| selector | selected (w = 1) | precision | recall |", "| --- | --- | --- | --- |"]
    for name, r in res["selectors"].items():
        lines.append(f"| {name} | {100 * r['mask_ratio']:.1f}% | {100 * r['precision']:.2f}% "
                     f"| {100 * r['recall']:.2f}% |")
    names = res["class_names"]
    lines += ["", "Per predicted class: share selected / precision of the selected pixels (%).", "",
              "| selector | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for name, r in res["selectors"].items():
        cells = ["-" if np.isnan(p) else f"{100 * m:.1f} / {100 * p:.1f}"
                 for m, p in zip(r["class_mask_ratio"], r["class_precision"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Per true class: recall, the share of its pixels given the right pseudo-label and selected (%).", "",
              "| selector | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for name, r in res["selectors"].items():
        lines.append(f"| {name} | " + " | ".join("-" if np.isnan(v) else f"{100 * v:.1f}" for v in r["class_recall"])
                     + " |")
    lines += ["", "Class shares (%): of the labeled pixels, and of the model's mean prediction on these images "
              "(what the alignment divides by).", "", "| share | " + " | ".join(names) + " |",
              "| --- |" + " --- |" * len(names),
              "| labeled | " + " | ".join(f"{100 * v:.1f}" for v in res["prior"]) + " |",
              "| predicted (mean probability) | " + " | ".join(f"{100 * v:.1f}" for v in res["mean"]) + " |"]
    lines += ["", "Per class, the label maps before selection: precision / recall (%).", "",
              "| pseudo-labels | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for name, r in res["labels"].items():
        cells = [f"{'-' if np.isnan(p) else f'{100 * p:.1f}'} / {'-' if np.isnan(c) else f'{100 * c:.1f}'}"
                 for p, c in zip(r["class_precision"], r["class_recall"])]
        lines.append(f"| {MAP_NAMES.get(name, 'refined by ' + name)} | " + " | ".join(cells) + " |")
    lines += ["", "Per true class: the other class the label maps give its pixels most often, and the share of the "
              "class's pixels it takes (%).", "",
              "| pseudo-labels | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for name, r in res["labels"].items():
        cells = ["-" if o < 0 else f"{names[o]} {100 * v:.1f}" for o, v in r["confused_with"]]
        lines.append(f"| {MAP_NAMES.get(name, 'refined by ' + name)} | " + " | ".join(cells) + " |")
    lines += ["", "| per-pixel score | AUROC for 'pseudo-label is right' |", "| --- | --- |"]
    lines += [f"| {name} | {v:.4f} |" for name, v in res["auroc"].items()]
    lines += ["", "| pseudo-labels | mIoU | boundary F (1 px) | PWA fallback share |", "| --- | --- | --- | --- |"]
    for name, r in res["labels"].items():
        miss = "-" if np.isnan(r["miss_rate"]) else f"{100 * r['miss_rate']:.1f}%"
        lines.append(f"| {MAP_NAMES.get(name, 'refined by ' + name)} | {r['mIoU']:.2f} | "
                     f"{r['boundary_F']:.2f} | {miss} |")
    return "\n".join(lines)
