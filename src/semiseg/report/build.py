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
from types import SimpleNamespace
from typing import Dict, List, Sequence

import numpy as np
import yaml
from PIL import Image

from semiseg.files import atomic_file
from semiseg.engine.logging import read_jsonl
from semiseg.errors import SemisegError
from semiseg.report.svg import bar_chart, heatmap, line_chart

CSS = """body{font-family:sans-serif;margin:24px;max-width:1200px;color:#222}h1{font-size:22px}h2{font-size:17px;
border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}
.grid td{border:none;padding:2px}.grid th{border:none;font-size:11px;font-weight:normal;width:96px;
text-align:center;vertical-align:bottom}.grid img{image-rendering:pixelated;width:96px;height:96px}
.charts svg{margin:6px}"""


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


def run_task(folder: Path):
    """The task class of a run folder (its config.yaml's ``task``; semantic for runs that predate tasks)."""
    from semiseg.tasks import task_named

    cfg = yaml.safe_load((folder / "config.yaml").read_text()) if (folder / "config.yaml").is_file() else {}
    return task_named((cfg or {}).get("task"))


def image_table(rows: List[List], header: Sequence[str] = ()) -> str:
    """Rows of cells: (RGB array, alt text) as an embedded PNG, or a string as text."""
    head = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>" if header else ""

    def cell(c) -> str:
        return f"<td>{html.escape(c)}</td>" if isinstance(c, str) else \
            f'<td><img src="{_png(c[0])}" alt="{html.escape(c[1])}"></td>'

    cells = head + "".join("<tr>" + "".join(cell(c) for c in row) + "</tr>" for row in rows)
    return f'<table class="grid">{cells}</table>'


def _load(path: Path) -> dict:
    from semiseg.engine.checkpoint import load_checkpoint

    return load_checkpoint(path)


# what a task's report sections draw with (the renderers live here, above the tasks)
DRAW = SimpleNamespace(image_table=image_table, heatmap=heatmap, load=_load, escape=html.escape)


def run_sections(work: Path, rows: List[dict], max_images: int) -> List[str]:
    train = [r for r in rows if r["kind"] == "train"]
    evals = [r for r in rows if r["kind"] == "eval"]
    keys = sorted({k for r in train for k in r})
    task = run_task(work)
    key = task.key  # the score that selects the model
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
        per_class = ("IoU_", "pred%_", "true%_", "teacher_")  # shown in the class rows, or the teacher's column
        scores = [k for k in last if k not in ("kind", "step", "time") and not k.startswith(per_class)]
        summary = "".join(f"<tr><td>{html.escape(k)}</td><td>{last[k]:.2f}</td>"
                          + (f"<td>{last['teacher_' + k]:.2f}</td>" if "teacher_" + k in last else "") + "</tr>"
                          for k in scores)
        title = "Per-class IoU" if names else "Scores"
        parts.append(f'<h2 id="iou">{title} at step {last["step"]}</h2><table>{head}</tr>{body}{summary}</table>')
    ckpt = work / "latest.pth"
    if ckpt.is_file():
        parts += task.report_sections(ckpt, max_images, DRAW)
    return parts


def comparison_images(suite: dict, work: Path, max_images: int, task) -> List[str]:
    """The same validation images through every run of a suite (its first seed with a checkpoint), as the
    suite's task draws them."""
    ckpts = []
    for r in suite["runs"]:
        seeds = (work / r["name"] / f"seed{s}" / "latest.pth" for s in suite.get("seeds", [0]))
        ckpt = next((c for c in seeds if c.is_file()), None)
        if ckpt is not None:
            ckpts.append((f"{r['name']} ({ckpt.parent.name})", ckpt))
    return task.comparison_sections(ckpts, max_images, DRAW) if ckpts else []


def suite_sections(work: Path, max_images: int = 8) -> List[str]:
    from semiseg.bench.quality import read_suite
    from semiseg.bench.tables import suite_results, suite_task, table

    suite_file = work / "suite.yaml"
    if suite_file.is_file():
        suite = read_suite(suite_file)
    else:
        suite = {"name": work.name, "runs": [{"name": d.name} for d in sorted(work.iterdir()) if d.is_dir()]}
    results = suite_results(suite, work)
    task = suite_task(suite, work)
    metric = task.key
    means = {name: float(np.mean([task.headline(e) for e in evals])) for name, evals in results.items() if evals}
    # a comparison's page shows what its command printed: the table, pred%/true%, verdicts, recommendation
    verdict = work / "verdict.md"
    summary = verdict.read_text() if verdict.is_file() else table(suite, work)
    return [f'<h2 id="quality">Suite {html.escape(suite["name"])}</h2>', md_table(summary),
            bar_chart(means, f"final {metric} (mean over seeds)"),
            '<h2 id="curves">Validation curves</h2>', line_chart(suite_curves(suite, work, metric),
                                                                 f"{metric} during training (mean over seeds)"),
            *comparison_images(suite, work, max_images, task)]


def suite_curves(suite: dict, work: Path, metric: str) -> Dict[str, list]:
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
    with atomic_file(path, "w") as f:  # a missing folder or a full disk is one line; a former page is kept
        f.write(page)
    return path
