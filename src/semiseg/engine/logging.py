"""Rank-0 run log: console lines with a progress bar and ETA, metrics.jsonl/.csv, TensorBoard if installed."""
from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from semiseg.files import atomic_file
from semiseg.errors import SemisegError


def fmt_time(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class RunLogger:
    def __init__(self, work_dir: str | Path, enabled: bool, total_steps: int, start_step: int = 0) -> None:
        self.enabled, self.total, self.start_step = enabled, total_steps, start_step
        self.t0 = time.time()
        self.work_dir = Path(work_dir)
        self.tb = None
        self._csv_headers: Dict[str, List[str]] = {}  # file name -> its header
        if not enabled:
            return
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._cut_after(start_step if start_step else -1)  # a fresh start keeps no row, step 0's setup included
        self.jsonl = open(self.work_dir / "metrics.jsonl", "a")
        try:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step hides the events of steps a killed run logged after its last checkpoint
            self.tb = SummaryWriter(str(self.work_dir / "tb"), purge_step=start_step + 1)
        except Exception:  # tensorboard is optional
            self.tb = None

    def _cut_after(self, step: int) -> None:
        """Drop the rows of steps after ``step``: a resumed run logs them again (and a fresh one, all of them),
        so each step appears once. A torn last line (a crash or a full disk mid-write) is dropped with a
        warning. Written to a temporary file and renamed, like checkpoints."""
        for path in [self.work_dir / "metrics.jsonl", *self.work_dir.glob("metrics_*.csv")]:
            if not path.is_file():
                continue
            if path.suffix == ".jsonl":
                text = "".join(json.dumps(r) + "\n" for r in read_jsonl(path) if r.get("step", 0) <= step)
            else:
                header, rows = read_csv(path)
                kept = [r for r in rows if _int(r.get("step")) is not None and _int(r["step"]) <= step]
                text = _csv_text(header, kept) if kept else ""  # header alone: start the file anew
            with atomic_file(path, "w") as f:
                f.write(text)

    def info(self, msg: str) -> None:
        if self.enabled:
            self._say(msg)

    @staticmethod
    def _say(msg: str) -> None:
        """A console line. A console that went away (the pipe to a terminal or a parent killed by the same
        signal that stops this run) must not stop the run before it writes its checkpoint: the files keep
        the log, the console lines are dropped."""
        try:
            print(msg, flush=True)
        except BrokenPipeError:
            sys.stdout = open(os.devnull, "w")  # also spares the interpreter's flush at exit

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
        self._say(f"[{bar}] {step}/{self.total} {fmt_time(elapsed)}<{fmt_time(eta)} {terms}")
        self.write("train", step, scalars)

    def write(self, kind: str, step: int, scalars: Dict[str, float]) -> None:
        if not self.enabled:
            return
        row = self.record(kind, step, scalars)
        self._append_csv(self.work_dir / f"metrics_{kind}.csv", row)
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(f"{kind}/{k}", v, step)

    def record(self, kind: str, step: int, fields: Dict[str, Any]) -> Dict[str, Any]:
        """One row of metrics.jsonl alone: what ``write`` logs everywhere, and the run's text records (its
        ``setup``: device and precision), which are no curve for the CSV files or TensorBoard."""
        row = {"kind": kind, "step": step, "time": round(time.time() - self.t0, 2), **fields}
        if self.enabled:
            self.jsonl.write(json.dumps(row) + "\n")
            self.jsonl.flush()
        return row

    def _append_csv(self, path: Path, row: Dict[str, float]) -> None:
        """One row under the file's header: a term missing at this step is an empty cell, not a shift of every
        later value; a term the header lacks (first logged now) rewrites the file with a wider header."""
        if path.name not in self._csv_headers:  # read once: the file may come from the run being resumed
            self._csv_headers[path.name] = read_csv(path)[0] if path.is_file() else []
        header = self._csv_headers[path.name]
        if not header or any(k not in header for k in row):
            header = header + [k for k in row if k not in header]
            rows = read_csv(path)[1] if path.is_file() else []
            with atomic_file(path, "w") as f:
                f.write(_csv_text(header, rows + [row]))
            self._csv_headers[path.name] = header
            return
        with open(path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=header, restval="").writerow(row)

    def close(self) -> None:
        if self.enabled:
            self.jsonl.close()
            if self.tb is not None:
                self.tb.close()
        sys.stdout.flush()


def read_jsonl(path: Path) -> List[dict]:
    """The rows of a metrics log; a torn last line (a crash or a full disk mid-write) is skipped with a
    warning instead of making the run unreadable. A bad line elsewhere is damage, named with its number."""
    lines = Path(path).read_text().splitlines()
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            if n < len(lines):
                raise SemisegError(f"{path}, line {n}: not a JSON row ({line[:60]!r})") from None
            print(f"warning: {path}: the last line is torn (a crash mid-write?); skipped", file=sys.stderr, flush=True)
            continue
        if not isinstance(row, dict) or "kind" not in row:  # every row the logger writes has its kind
            raise SemisegError(f"{path}, line {n}: not a metrics record ({line[:60]!r})")
        rows.append(row)
    return rows


def read_csv(path: Path) -> Tuple[List[str], List[dict]]:
    """A metrics CSV's header and its rows; a last row shorter than the header (torn) is skipped."""
    with open(path, newline="") as f:
        lines = list(csv.reader(f))
    if not lines:
        return [], []
    header, rows = lines[0], lines[1:]
    if rows and len(rows[-1]) < len(header):
        rows = rows[:-1]
    return header, [dict(zip(header, r)) for r in rows]


def _csv_text(header: List[str], rows: List[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=header, restval="", extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _int(value) -> Optional[int]:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None
