"""Rank-0 run log: console lines with a progress bar and ETA, metrics.jsonl/.csv, TensorBoard if installed."""
from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional


def fmt_time(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def iou_table(names: List[str], iou: List[float], extra: Dict[str, float], share_pred: List[float],
              share_true: List[float]) -> str:
    """Per-class IoU table, the form users diff against published logs, with each class's percentage of
    the labeled pixels as predicted and as labeled."""
    width = max(12, max(len(n) for n in names) + 2)
    lines = [f"{'class':<{width}}{'IoU':>8}{'pred%':>8}{'true%':>8}"]
    lines += [f"{n:<{width}}{v:>8.2f}{p:>8.1f}{t:>8.1f}" for n, v, p, t in zip(names, iou, share_pred, share_true)]
    lines.append("-" * (width + 24))
    lines += [f"{k:<{width}}{v:>8.2f}" for k, v in extra.items()]
    return "\n".join(lines)


class RunLogger:
    def __init__(self, work_dir: str | Path, enabled: bool, total_steps: int, start_step: int = 0) -> None:
        self.enabled, self.total, self.start_step = enabled, total_steps, start_step
        self.t0 = time.time()
        self.work_dir = Path(work_dir)
        self.tb = None
        self._csv_keys: Optional[List[str]] = None
        if not enabled:
            return
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._cut_after(start_step)
        self.jsonl = open(self.work_dir / "metrics.jsonl", "a")
        try:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step hides the events of steps a killed run logged after its last checkpoint
            self.tb = SummaryWriter(str(self.work_dir / "tb"), purge_step=start_step + 1)
        except Exception:  # tensorboard is optional
            self.tb = None

    def _cut_after(self, step: int) -> None:
        """Drop the rows of steps after ``step``: a resumed run logs them again (and a fresh one, all of them),
        so each step appears once. Written to a temporary file and renamed, like checkpoints."""
        for path in [self.work_dir / "metrics.jsonl", *self.work_dir.glob("metrics_*.csv")]:
            if not path.is_file():
                continue
            lines = path.read_text().splitlines(keepends=True)
            if path.suffix == ".jsonl":
                kept = [line for line in lines if line.strip() and json.loads(line).get("step", 0) <= step]
            else:
                kept = lines[:1] + [line for line in lines[1:] if int(float(line.split(",", 2)[1])) <= step]
                kept = kept if len(kept) > 1 else []  # header alone: start the file anew
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text("".join(kept))
            tmp.replace(path)

    def info(self, msg: str) -> None:
        if self.enabled:
            print(msg, flush=True)

    def progress(self, step: int, scalars: Dict[str, float]) -> None:
        """One line per log interval: bar, step, ETA, then each scalar."""
        if not self.enabled:
            return
        done = step - self.start_step
        elapsed = time.time() - self.t0
        eta = elapsed / max(done, 1) * (self.total - step)
        frac = step / self.total
        bar = "#" * int(20 * frac) + "." * (20 - int(20 * frac))
        terms = " ".join(f"{k} {v:.4g}" for k, v in scalars.items() if "/" not in k)  # per-class: files only
        print(f"[{bar}] {step}/{self.total} {fmt_time(elapsed)}<{fmt_time(eta)} {terms}", flush=True)
        self.write("train", step, scalars)

    def write(self, kind: str, step: int, scalars: Dict[str, float]) -> None:
        if not self.enabled:
            return
        row = {"kind": kind, "step": step, "time": round(time.time() - self.t0, 2), **scalars}
        self.jsonl.write(json.dumps(row) + "\n")
        self.jsonl.flush()
        path = self.work_dir / f"metrics_{kind}.csv"
        new = not path.exists()
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row), extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(f"{kind}/{k}", v, step)

    def close(self) -> None:
        if self.enabled:
            self.jsonl.close()
            if self.tb is not None:
                self.tb.close()
        sys.stdout.flush()
