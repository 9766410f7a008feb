"""``semiseg bench quality SUITE``: run a suite of method configs x seeds, resumably, and write its table.

A suite YAML::

    name: scenes-1_16
    seeds: [0, 1]
    overrides: [train.iters=2000]          # applied to every run
    baseline: supervised                   # the "gap closed" is (method - baseline) / (full - baseline)
    full: full
    runs:
      - {name: supervised, config: configs/scenes/supervised.yaml}
      - {name: full, config: configs/scenes/supervised.yaml, overrides: [data.split=all]}
      - {name: unimatch, config: configs/scenes/unimatch.yaml}

Each run trains in its own process into ``OUT/<name>/seed<k>`` (``--resume`` when a checkpoint exists);
finished runs are skipped, so a killed suite continues where it stopped. The table (mean and spread of
the final mIoU over seeds, teacher too where there is one, the gap closed, per-class IoU, step time) is
printed and, with ``--doc``, written between ``<!-- semiseg:NAME -->`` markers of a Markdown file.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Dict, List, Optional

import yaml

from semiseg.engine.logging import fmt_time
from semiseg.errors import SemisegError


def read_suite(path: str | Path) -> dict:
    from semiseg.config import _Loader

    path = Path(path)
    if not path.is_file():
        raise SemisegError(f"suite file {path} does not exist")
    suite = yaml.load(path.read_text(), Loader=_Loader) or {}
    for key in ("name", "runs"):
        if key not in suite:
            raise SemisegError(f"suite file {path} has no '{key}'")
    names = [r.get("name") for r in suite["runs"]]
    if len(set(names)) != len(names) or None in names:
        raise SemisegError(f"suite file {path}: every run needs a unique name, got {names}")
    return suite


def final_eval(work_dir: Path) -> Optional[dict]:
    """The last eval row of a finished run (step == its configured iters), else None."""
    metrics, cfg = work_dir / "metrics.jsonl", work_dir / "config.yaml"
    if not metrics.is_file() or not cfg.is_file():
        return None
    iters = yaml.safe_load(cfg.read_text())["train"]["iters"]
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    evals = [r for r in rows if r["kind"] == "eval" and r["step"] == iters]
    if not evals:
        return None
    train = [r for r in rows if r["kind"] == "train" and "s_per_step" in r]
    return {**evals[-1], "s_per_step": train[-1]["s_per_step"] if train else float("nan")}


def run_one(config: str, overrides: List[str], work_dir: Path, log: Path) -> None:
    cmd = [sys.executable, "-m", "semiseg", "train", config, *overrides, "--work-dir", str(work_dir)]
    if (work_dir / "latest.pth").is_file():
        cmd.append("--resume")
    work_dir.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        code = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env=os.environ.copy())
    if code != 0:
        raise SemisegError(f"run failed (exit {code}): {' '.join(cmd)}; see {log}")


def run_suite(suite: dict, out: Path, only: Optional[List[str]] = None) -> None:
    runs = [r for r in suite["runs"] if not only or r["name"] in only]
    jobs = [(r, seed) for seed in suite.get("seeds", [0]) for r in runs]
    todo = [(r, s) for r, s in jobs if final_eval(out / r["name"] / f"seed{s}") is None]
    print(f"suite {suite['name']}: {len(jobs)} runs, {len(jobs) - len(todo)} finished, {len(todo)} to go")
    t0 = time.time()
    for i, (r, seed) in enumerate(todo):
        wd = out / r["name"] / f"seed{seed}"
        overrides = list(suite.get("overrides", [])) + list(r.get("overrides", [])) + [f"train.seed={seed}"]
        eta = "" if i == 0 else f", about {fmt_time((time.time() - t0) / i * (len(todo) - i))} left"
        print(f"[{i + 1}/{len(todo)}] {r['name']} seed {seed} -> {wd}{eta}", flush=True)
        run_one(r["config"], overrides, wd, wd / "train.log")


def _mean_sd(values: List[float]) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {sd:.2f}" if len(values) > 1 else f"{values[0]:.2f}"


def table(suite: dict, out: Path) -> str:
    seeds = suite.get("seeds", [0])
    res: Dict[str, List[dict]] = {}
    for r in suite["runs"]:
        res[r["name"]] = [e for s in seeds if (e := final_eval(out / r["name"] / f"seed{s}")) is not None]
    mean = {k: statistics.mean(e["mIoU"] for e in v) if v else None for k, v in res.items()}
    base, full = mean.get(suite.get("baseline", "")), mean.get(suite.get("full", ""))
    lines = ["| run | seeds | mIoU (student) | mIoU (teacher) | gap closed | s/step |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, evals in res.items():
        teacher = [e["teacher_mIoU"] for e in evals if "teacher_mIoU" in e]
        gap = "-"
        if base is not None and full is not None and mean[name] is not None and full != base and name not in (
                suite.get("baseline"), suite.get("full")):
            gap = f"{100 * (mean[name] - base) / (full - base):+.0f}%"
        step = _mean_sd([e["s_per_step"] for e in evals]) if evals else "-"
        lines.append(f"| {name} | {len(evals)} | {_mean_sd([e['mIoU'] for e in evals])} | {_mean_sd(teacher)} | {gap} "
                     f"| {step} |")
    classes: List[str] = []  # union over runs, first-seen order (runs may use different class sets)
    for evals in res.values():
        for e in evals[:1]:
            classes += [k[4:] for k in e if k.startswith("IoU_") and k[4:] not in classes]
    if classes:
        lines += ["", "Per-class IoU (student, mean over seeds):", "",
                  "| run | " + " | ".join(classes) + " |", "| --- |" + " --- |" * len(classes)]
        for name, evals in res.items():
            if evals:
                cells = [f"{statistics.mean(e['IoU_' + c] for e in evals):.1f}" if "IoU_" + c in evals[0] else ""
                         for c in classes]
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_section(doc: Path, name: str, body: str) -> None:
    """Replace the text between ``<!-- semiseg:name -->`` and ``<!-- /semiseg:name -->`` (append if absent)."""
    start, end = f"<!-- semiseg:{name} -->", f"<!-- /semiseg:{name} -->"
    text = doc.read_text() if doc.is_file() else ""
    block = f"{start}\n{body}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + ("\n\n" if text else "") + block + "\n"
    doc.write_text(text)


def quality_from_cli(args) -> int:
    suite = read_suite(args.suite)
    out = Path(args.out or f"runs/bench/{suite['name']}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "suite.yaml").write_text(yaml.safe_dump(suite))  # lets `semiseg report OUT` rebuild the table
    if not args.table_only:
        run_suite(suite, out, args.only.split(",") if args.only else None)
    body = table(suite, out)
    print(body)
    if args.doc:
        cmd = f"semiseg bench quality {args.suite}" + (f" --out {args.out}" if args.out else "")
        header = (f"Suite `{suite['name']}` ({Path(args.suite).as_posix()}), produced by `{cmd} --doc {args.doc}` on "
                  f"{date.today().isoformat()}, {platform.machine()} with {os.cpu_count()} CPU(s); "
                  f"overrides {suite.get('overrides', [])}, seeds {suite.get('seeds', [0])}.\n")
        write_section(Path(args.doc), suite["name"], header + "\n" + body)
    return 0
