"""``semiseg report WORK_DIR``: one self-contained HTML page about a run (or a benchmark suite).

Run: loss and mIoU curves, mask ratio per class over time, the per-class IoU table, a grid of
validation images with ground truth, prediction and pseudo-labels (the method's selector on the
teacher's or the model's scores; unselected pixels black), and the confusion matrix. Suite (a folder
written by ``semiseg bench quality``): its quality table (per class too), a bar chart, every run's
validation curve on one plot, and the same validation images through every run side by side. Plots are
inline SVG and images embedded PNGs, so the page opens with no network.
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
import yaml
from PIL import Image

from semiseg.engine.logging import read_jsonl
from semiseg.errors import SemisegError
from semiseg.report.svg import bar_chart, heatmap, line_chart

CSS = """body{font-family:sans-serif;margin:24px;max-width:1200px;color:#222}h1{font-size:22px}h2{font-size:17px;
border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}
.grid td{border:none;padding:2px}.grid th{border:none;font-size:11px;font-weight:normal;width:96px;
text-align:center;vertical-align:bottom}.grid img{image-rendering:pixelated;width:96px;height:96px}.charts svg{margin:6px}"""


def _png(arr: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def md_table(text: str) -> str:
    """Markdown pipe tables (as the bench commands write them) to HTML; other lines become paragraphs."""
    out, rows = [], []

    def flush():
        if rows:
            head, body = rows[0], [r for r in rows[2:]]
            out.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
                       + "</table>")
            rows.clear()

    for line in text.splitlines():
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
        else:
            flush()
            if line.strip():
                out.append(f"<p>{html.escape(line)}</p>")
    flush()
    return "\n".join(out)


def _series(rows: List[dict], keys: List[str]) -> Dict[str, list]:
    return {k: [(r["step"], r[k]) for r in rows if k in r] for k in keys if any(k in r for r in rows)}


SCORES = ("oIoU", "mIoU", "aAcc", "mAcc", "P@0.5", "P@0.7", "P@0.9")  # semantic: mIoU, aAcc, mAcc; referring: the rest


def run_sections(work: Path, rows: List[dict], max_images: int) -> List[str]:
    train = [r for r in rows if r["kind"] == "train"]
    evals = [r for r in rows if r["kind"] == "eval"]
    keys = sorted({k for r in train for k in r})
    key = "oIoU" if any("oIoU" in r for r in evals) else "mIoU"  # the score that selects the model
    parts = ['<h2 id="curves">Curves</h2><div class="charts">',
             line_chart(_series(train, [k for k in keys if k.startswith("loss")]), "training losses", ylabel="loss"),
             line_chart(_series(evals, [key, f"teacher_{key}"]), f"validation {key}", ylabel=key),
             line_chart(_series(train, [k for k in keys if k.startswith("mask_ratio")]),
                        "mask ratio (selected share of unlabeled pixels), per predicted class", ylabel="ratio"),
             "</div>"]
    if evals:
        last = evals[-1]
        names = [k[4:] for k in last if k.startswith("IoU_")]
        teacher = f"teacher_{key}" in last
        head = "<tr><th>class</th><th>student IoU</th>" + ("<th>teacher IoU</th>" if teacher else "")
        body = "".join(f"<tr><td>{html.escape(n)}</td><td>{last['IoU_' + n]:.2f}</td>"
                       + (f"<td>{last.get('teacher_IoU_' + n, float('nan')):.2f}</td>" if teacher else "")
                       + "</tr>" for n in names)
        summary = "".join(f"<tr><td>{k}</td><td>{last[k]:.2f}</td>"
                          + (f"<td>{last['teacher_' + k]:.2f}</td>" if "teacher_" + k in last else "") + "</tr>"
                          for k in SCORES if k in last)
        title = "Per-class IoU" if names else "Scores"
        parts.append(f'<h2 id="iou">{title} at step {last["step"]}</h2><table>{head}</tr>{body}{summary}</table>')
    ckpt = work / "latest.pth"
    if ckpt.is_file():
        from semiseg.engine.checkpoint import load_checkpoint

        task = load_checkpoint(ckpt).get("task", "semantic")
        parts += {"semantic": prediction_sections, "res": referring_sections}[task](ckpt, max_images)
    return parts


def referring_sections(ckpt: Path, max_images: int) -> List[str]:
    """The first validation expressions: image, the referent, the prediction (the teacher's where there is one)."""
    from semiseg.engine.checkpoint import load_checkpoint
    from semiseg.res.predict import ResPredictor, overlay
    from semiseg.res.sources import load_sample, res_splits

    state = load_checkpoint(ckpt)
    predictor = ResPredictor(state)
    d = predictor.cfg.data
    val = res_splits(d.dataset, d.root, d.split, d.refs, d.instances, d.images, d.val_split)[2][:max_images]
    colour = state["meta"]["palette"][1]
    rows = []
    for s in val:
        img, mask = load_sample(s)
        cells = (img, overlay(img, mask, colour), overlay(img, predictor.predict(img, s.sentence), colour))
        rows.append("<tr>" + "".join(f'<td><img src="{_png(a)}" alt="{n}"></td>'
                                     for a, n in zip(cells, ("image", "referent", "prediction")))
                    + f"<td>{html.escape(s.sentence)}</td></tr>")
    return ['<h2 id="images">Validation expressions</h2><p>Columns: image, the referent, the prediction, '
            'the expression.</p>', f'<table class="grid">{"".join(rows)}</table>']


class RunImages:
    """What one semantic checkpoint makes of the validation images: its prediction, and the pseudo-label its
    method would train on (the teacher's scores, or the model's, through the method's selector)."""

    def __init__(self, ckpt: Path) -> None:
        from semiseg.data.dataset import SegDataset
        from semiseg.data.presets import resolve_layout
        from semiseg.engine.checkpoint import load_checkpoint
        from semiseg.inference import Predictor
        from semiseg.methods.common import SemiMethod
        from semiseg.methods.registry import METHODS
        from semiseg.pseudo.selectors import build_selector

        self.student = Predictor.from_checkpoint(str(ckpt))
        cfg = self.student.cfg
        self.has_teacher = "teacher" in load_checkpoint(ckpt).get("method", {})
        self.labeler = Predictor.from_checkpoint(str(ckpt), teacher=True) if self.has_teacher else self.student
        self.trains_on_pseudo_labels = issubclass(METHODS.get(cfg.method["name"]), SemiMethod)
        self.selector = build_selector(cfg.method.get("selector") or {"name": "none"})
        self.layout = resolve_layout(cfg.data)
        self.ds = SegDataset(self.layout.val, self.layout, cfg.data, "val")

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
        from semiseg.data.io import read_image
        from semiseg.pseudo.selectors import selected

        item, colorize = self.ds[i], self.student.colorize
        gt = item["mask"].numpy()
        scores = self._scores(self.student.model, item)
        labels = scores if self.labeler is self.student else self._scores(self.labeler.model, item)
        pl, w = self.selector(labels.softmax(1), torch.zeros(1, *gt.shape, dtype=torch.bool))
        return {"image": read_image(self.layout.root / self.ds.samples[i].image),
                "ground truth": colorize(np.where(gt == 255, 0, gt).astype(np.uint8)),
                "prediction": colorize(scores.argmax(1)[0].byte().numpy()),
                "pseudo-label": (colorize(pl[0].byte().numpy()) * selected(w[0]).numpy()[..., None]).astype(np.uint8)}


def _image_table(rows: List[List[Tuple[np.ndarray, str]]], header: Sequence[str] = ()) -> str:
    head = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>" if header else ""
    cells = head + "".join("<tr>" + "".join(f'<td><img src="{_png(a)}" alt="{html.escape(n)}"></td>' for a, n in row)
                    + "</tr>" for row in rows)
    return f'<table class="grid">{cells}</table>'


def prediction_sections(ckpt: Path, max_images: int) -> List[str]:
    from semiseg.engine.evaluator import confusion

    run = RunImages(ckpt)
    names = run.student.class_names
    cm = torch.zeros(len(names), len(names), dtype=torch.long)
    for i in range(len(run)):
        cm += confusion(*run.prediction(i), len(names), 255)
    rows = [[(a, n) for n, a in run.views(i).items()] for i in range(min(max_images, len(run)))]
    who = "teacher" if run.has_teacher else "model"
    return [f'<h2 id="images">Validation images</h2><p>Columns: image, ground truth, prediction, pseudo-label '
            f'(the {who}\'s scores through the method\'s selector; unselected pixels black).</p>' + _image_table(rows),
            f'<h2 id="confusion">Confusion matrix ({len(run)} validation images, % of each true class)</h2>',
            heatmap(cm.tolist(), names, "rows: ground truth, columns: prediction")]


def comparison_images(suite: dict, work: Path, max_images: int) -> List[str]:
    """The same validation images through every run of a semantic suite (its first seed with a checkpoint):
    each run's prediction, and for runs that train on pseudo-labels the pseudo-label their method makes."""
    runs = []
    for r in suite["runs"]:
        ckpt = next((c for s in suite.get("seeds", [0]) if (c := work / r["name"] / f"seed{s}" / "latest.pth").is_file()),
                    None)
        if ckpt is not None:
            runs.append((r["name"], ckpt.parent.name, RunImages(ckpt)))
    if not runs:
        return []
    columns, rows = ["image", "ground truth"], []
    for name, seed, run in runs:
        columns += [f"{name} ({seed}) prediction"] + ([f"{name} ({seed}) pseudo-label"] if run.trains_on_pseudo_labels
                                                      else [])
    for i in range(min(max_images, len(runs[0][2]))):
        views = [run.views(i) for _, _, run in runs]
        row = [(views[0][n], n) for n in ("image", "ground truth")]
        for (name, _, run), v in zip(runs, views):
            row += [(v["prediction"], f"{name} prediction")]
            if run.trains_on_pseudo_labels:
                row += [(v["pseudo-label"], f"{name} pseudo-label")]
        rows.append(row)
    return ['<h2 id="images">Validation images, run by run</h2><p>Columns: ' + html.escape(", ".join(columns))
            + " (pseudo-labels: the teacher's scores, or the model's, through the method's selector; unselected "
            "pixels black).</p>" + _image_table(rows, columns)]


def suite_sections(work: Path, max_images: int = 8) -> List[str]:
    from semiseg.bench.quality import suite_results, table

    suite_file = work / "suite.yaml"
    if suite_file.is_file():
        suite = yaml.safe_load(suite_file.read_text())
    else:
        suite = {"name": work.name, "runs": [{"name": d.name} for d in sorted(work.iterdir()) if d.is_dir()]}
    results = suite_results(suite, work)
    metric = "oIoU" if any("oIoU" in e for evals in results.values() for e in evals) else "mIoU"
    # referring runs are scored on the teacher where there is one (as SemiRES and the suite table do)
    score = (lambda e: e.get("teacher_oIoU", e["oIoU"])) if metric == "oIoU" else (lambda e: e["mIoU"])  # noqa: E731
    means = {name: float(np.mean([score(e) for e in evals])) for name, evals in results.items() if evals}
    return [f'<h2 id="quality">Suite {html.escape(suite["name"])}</h2>', md_table(table(suite, work)),
            bar_chart(means, f"final {metric} (mean over seeds)"),
            '<h2 id="curves">Validation curves</h2>', line_chart(suite_curves(suite, work, metric),
                                                                 f"{metric} during training (mean over seeds)"),
            *(comparison_images(suite, work, max_images) if metric == "mIoU" else [])]


def suite_curves(suite: dict, work: Path, metric: str = "mIoU") -> Dict[str, list]:
    """Each run's evaluations by step, averaged over the seeds evaluated at that step (finished or not)."""
    from semiseg.bench.quality import read_rows

    curves = {}
    for r in suite["runs"]:
        by_step: Dict[int, list] = {}
        for s in suite.get("seeds", [0]):
            for row in read_rows(work / r["name"] / f"seed{s}"):
                if row["kind"] == "eval" and metric in row:
                    by_step.setdefault(row["step"], []).append(row[metric])
        if by_step:
            curves[r["name"]] = [(step, float(np.mean(v))) for step, v in sorted(by_step.items())]
    return curves


def check_report_folder(work: Path) -> None:
    """A run's work_dir (its metrics.jsonl) or a suite's runs folder (<run>/seed<N>/metrics.jsonl): anything
    else would give a page with nothing on it, written as if it were a report."""
    if not work.is_dir():
        raise SemisegError(f"report folder {work} does not exist")
    if not (work / "metrics.jsonl").is_file() and not any(work.glob("*/seed*/metrics.jsonl")):
        raise SemisegError(f"report folder {work} holds no run: neither a run's metrics.jsonl nor a suite's "
                           "<run>/seed<N>/metrics.jsonl")


def build_report(work_dir: str | Path, out: str | Path | None = None, max_images: int = 8) -> Path:
    work = Path(work_dir)
    check_report_folder(work)
    metrics = work / "metrics.jsonl"
    if metrics.is_file():
        rows = read_jsonl(metrics)
        cfg = yaml.safe_load((work / "config.yaml").read_text()) if (work / "config.yaml").is_file() else {}
        title = f"{cfg.get('method', {}).get('name', 'run')} - {work}"
        parts = run_sections(work, rows, max_images)
    else:
        title = f"benchmark suite - {work}"
        parts = suite_sections(work, max_images)
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>" + "\n".join(parts) + "</body></html>")
    path = Path(out) if out else work / "report.html"
    path.write_text(page)
    return path
