"""``semiseg bench quality SUITE``: run a suite of method configs x seeds, resumably, and write its table.

A suite YAML::

    name: scenes-1_16
    seeds: [0, 1]
    overrides: [train.iters=2000]          # applied to every run
    baseline: supervised                   # the "gap closed" is (method - baseline) / (full - baseline)
    full: full
    versus: unimatch                       # optional: every method's interval against this run as well
    runs:
      - {name: supervised, config: configs/scenes/supervised.yaml}
      - {name: full, config: configs/scenes/supervised.yaml, overrides: [data.split=all]}
      - {name: unimatch, config: configs/scenes/unimatch.yaml}
      - {name: unimatch-1_8, config: ..., overrides: [data.split=1_8], baseline: supervised-1_8}  # own baseline

Suite and run names are letters, digits, '.', '_' and '-' (each names a folder, the suite also the page's
markers); ``seeds`` lists distinct integers; ``baseline``, ``full``, ``versus`` and a run's own ``baseline``
name a run of the suite or of its reference folder.

An ablation suite that shares another suite's runs names that suite's runs folder instead of training
them again (``reference: runs/bench/scenes-1_16``): its baseline and full runs, and those listed in
``reference_runs: [dssn, csl]`` (the methods being ablated), are read from there and never run; the table
lists them first, marked "(reference)".

Each run trains in its own process into ``OUT/<name>/seed<k>`` (``--resume`` when a checkpoint exists);
finished runs are skipped, so a killed suite continues where it stopped; ``--jobs N`` runs N at a time,
``--seeds`` and ``--only`` pick what runs now. The table (``semiseg.bench.tables``: mean and spread of the
final score over seeds, teacher too where there is one, the gain and gap closed against the baseline's runs
with the same seeds and the gain's 95% confidence interval paired by seed, a sentence per run on which
differences that interval supports, per-class IoU, step time) is printed and, with ``--doc``, written between
``<!-- semiseg:NAME -->`` markers of a Markdown file. ``--step N`` tabulates the finished runs' evaluations at
step N instead of their last (section ``NAME-stepN``): how far each method is partway through the schedule.
The runs' task gives the score columns and the headline score (referring segmentation: oIoU, mIoU and
precision at IoU thresholds, of the teacher where a run has one).
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import List, Optional

import yaml

from semiseg.engine.logging import fmt_time, read_jsonl
from semiseg.errors import SemisegError


def read_suite(path: str | Path) -> dict:
    from semiseg.config import yaml_mapping

    path = Path(path)
    suite = yaml_mapping(path, "suite file")
    for key in ("name", "runs"):
        if key not in suite:
            raise SemisegError(f"suite file {path} has no '{key}'")
    if not _folder_name(suite["name"]):  # a folder and the page's markers are named after it
        raise SemisegError(f"suite file {path}: 'name' must be letters, digits, '.', '_' or '-'; got {suite['name']!r}")
    runs = suite["runs"]
    if not isinstance(runs, list) or not runs or not all(isinstance(r, dict) for r in runs):
        raise SemisegError(f"suite file {path}: 'runs' must list one run or more, each a mapping with a name and a "
                           f"config; got {runs!r}")
    names = [r.get("name") for r in runs]
    if len(set(map(str, names))) != len(names) or not all(map(_folder_name, names)):
        raise SemisegError(f"suite file {path}: 'runs' need unique names of letters, digits, '.', '_' or '-' (each "
                           f"a folder), got {names}")
    seeds = suite.get("seeds", [0])  # a repeated seed would count twice in every mean and interval
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in seeds) or len(set(seeds)) != len(seeds)):
        raise SemisegError(f"suite file {path}: 'seeds' must list distinct integer seeds, got {seeds!r}")
    _check_references(path, suite, names)
    return suite


def _folder_name(name) -> bool:
    return isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) is not None


def _check_references(path: Path, suite: dict, names: List[str]) -> None:
    """baseline, full, versus and a run's own baseline name a run of the suite, or of its reference folder (the
    baseline, full and reference_runs it reads from there): a name of no run empties the table's gains."""
    known = set(names)
    if "reference" in suite:
        known |= {suite.get("baseline"), suite.get("full"), *(r.get("baseline") for r in suite["runs"]),
                  *suite.get("reference_runs", [])}
    keys = [(k, suite[k]) for k in ("baseline", "full", "versus") if k in suite]
    keys += [(f"runs.{i}.baseline", r["baseline"]) for i, r in enumerate(suite["runs"]) if "baseline" in r]
    for key, name in keys:
        if not isinstance(name, str) or name not in known:
            raise SemisegError(f"suite file {path}: '{key}' names no run of the suite, got {name!r} "
                               f"(runs: {', '.join(sorted(map(str, known - {None})))})")


def read_rows(work_dir: Path) -> List[dict]:
    """A run's metrics.jsonl rows ([] if it has none yet)."""
    metrics = work_dir / "metrics.jsonl"
    return read_jsonl(metrics) if metrics.is_file() else []


def final_eval(work_dir: Path, step: Optional[int] = None) -> Optional[dict]:
    """The last eval row of a finished run (step == its configured iters), else None; with ``step``, the
    finished run's eval row at that step (None if it has none); with its ``s_per_step`` and ``iters``."""
    metrics, cfg = work_dir / "metrics.jsonl", work_dir / "config.yaml"
    if not metrics.is_file() or not cfg.is_file():
        return None
    try:
        iters = (yaml.safe_load(cfg.read_text()) or {})["train"]["iters"]
    except (yaml.YAMLError, KeyError, TypeError):
        raise SemisegError(f"{cfg}: no train.iters (its run's schedule): a damaged run folder?") from None
    rows = read_rows(work_dir)
    evals = [r for r in rows if r["kind"] == "eval" and r["step"] == iters]
    if step is not None and evals:
        evals = [r for r in rows if r["kind"] == "eval" and r["step"] == step]
    if not evals:
        return None
    train = [r for r in rows if r["kind"] == "train" and "s_per_step" in r]
    s_per_step = train[-1].get("s_per_step", float("nan")) if train else float("nan")
    machines = sorted({f"{r['device']}, {r['precision']}" for r in rows if r["kind"] == "setup"})
    return {**evals[-1], "s_per_step": s_per_step, "iters": iters, "machines": machines}


def run_command(config: str, overrides: List[str], seed: int, work_dir: Path, threads: int,
                nproc: int = 1) -> List[str]:
    """One run's command line; with ``nproc`` > 1 it trains as a torchrun group of that many processes (one per
    GPU), on a rendezvous of its own so that runs going at once do not meet."""
    extra = [f"train.seed={seed}"] + ([f"train.threads={threads}"] if threads else [])
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"] if nproc > 1 else []
    cmd = [sys.executable, *launcher, "-m", "semiseg", "train", config, *overrides, *extra,
           "--work-dir", str(work_dir)]
    # a run killed before its first checkpoint restarts: --force replaces what it left
    return cmd + (["--resume"] if (work_dir / "latest.pth").is_file() else ["--force"])


def run_one(cmd: List[str], work_dir: Path, threads: int, echo: bool = False, live: Optional[set] = None,
            stopping: Optional[threading.Event] = None) -> None:
    """Train one run in its own process; its output goes to ``train.log`` (and, with ``echo``, to stdout too).
    ``live``: the set the process is kept in while it runs, for a signal to the suite to reach it;
    ``stopping``: set by that signal, which may have come while this process was being made."""
    work_dir.mkdir(parents=True, exist_ok=True)
    env = os.environ.copy()
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    live = set() if live is None else live
    with open(work_dir / "train.log", "a") as f:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE if echo else f, stderr=subprocess.STDOUT, env=env,
                                text=True)
        live.add(proc)
        if stopping is not None and stopping.is_set():  # after the signal went to the processes then live
            proc.send_signal(signal.SIGTERM)
        try:
            for line in proc.stdout if echo else ():
                f.write(line)
                sys.stdout.write(line)
                sys.stdout.flush()
            code = proc.wait()
        finally:
            live.discard(proc)
    if code != 0:
        raise SemisegError(f"run failed (exit {code}): {' '.join(cmd)}; see {work_dir / 'train.log'}")


FILLED_AT_START = {"train.iters", "train.eval_interval", "train.ckpt_interval"}  # 0: the trainer sets them


def config_changes(work_dir: Path, config: str, overrides: List[str], seed: int) -> List[str]:
    """How the run in ``work_dir`` (its saved config) differs from what the suite would run there now; keys
    one side lacks (an option added since) are not compared."""
    saved = work_dir / "config.yaml"
    if not saved.is_file():
        return []
    from semiseg.config import as_dict, changed_settings, describe_changes
    from semiseg.configure import load_config

    changes = changed_settings(yaml.safe_load(saved.read_text()) or {},
                               as_dict(load_config(config, [*overrides, f"train.seed={seed}"])))
    return describe_changes({k: v for k, v in changes.items() if not (k in FILLED_AT_START and not v[1])})


def todo_runs(suite: dict, out: Path, only: Optional[List[str]] = None,
              seeds: Optional[List[int]] = None) -> List[tuple]:
    """The (run, seed) pairs with no final evaluation yet, in the order they train. A folder that holds a run
    of another config (another length, another override) is refused: taken as finished it would enter the
    table, resumed it would mix two schedules."""
    runs = [r for r in suite["runs"] if not only or r["name"] in only]
    pairs = [(r, seed) for seed in (seeds if seeds is not None else suite.get("seeds", [0])) for r in runs]
    for r, s in pairs:
        wd = out / r["name"] / f"seed{s}"
        changes = config_changes(wd, r["config"], [*suite.get("overrides", []), *r.get("overrides", [])], s)
        if changes:
            raise SemisegError(f"suite {suite['name']}, run {r['name']} seed {s}: {wd} holds a run of another config "
                               f"({'; '.join(changes[:3])}); give another --out, or move that folder")
    return [(r, s) for r, s in pairs if final_eval(out / r["name"] / f"seed{s}") is None]


def run_suite(suite: dict, out: Path, only: Optional[List[str]] = None, jobs: int = 1,
              seeds: Optional[List[int]] = None, echo: bool = False, nproc: int = 1) -> None:
    """Run what is not finished yet. With ``jobs`` > 1 the runs go in parallel, each with cpu_count / jobs
    threads: worth it where one run does not scale to every core (small models, many cores). Measured on
    2 cores: supervised runs 1.4x more throughput, the semi-supervised ones about the same. With ``nproc``
    > 1 each run is a torchrun group of that many processes (its GPUs, or CPU processes)."""
    runs = [r for r in suite["runs"] if not only or r["name"] in only]
    pairs = [(r, seed) for seed in (seeds if seeds is not None else suite.get("seeds", [0])) for r in runs]
    todo = todo_runs(suite, out, only, seeds)
    from semiseg.configure import load_config

    for r in runs:  # every run's config checked before the first one trains, not hours into the suite
        try:
            load_config(r["config"], [*suite.get("overrides", []), *r.get("overrides", [])])
        except SemisegError as e:
            raise SemisegError(f"suite {suite['name']}, run {r['name']}: {e}") from None
    print(f"suite {suite['name']}: {len(pairs)} runs, {len(pairs) - len(todo)} finished, {len(todo)} to go"
          + (f", {jobs} at a time" if jobs > 1 else ""), flush=True)
    procs = max(1, jobs) * max(1, nproc)
    threads = max(1, (os.cpu_count() or 1) // procs) if procs > 1 else 0
    t0, done = time.time(), 0
    lock = threading.Lock()
    live: set = set()  # the runs' processes now training
    stopping = threading.Event()

    def on_sigterm(signum, frame) -> None:  # forwarded: each run finishes its step, checkpoints and exits
        stopping.set()
        for proc in list(live):
            proc.send_signal(signum)

    def one(item) -> None:
        nonlocal done
        r, seed = item
        if stopping.is_set():
            return
        wd = out / r["name"] / f"seed{seed}"
        overrides = list(suite.get("overrides", [])) + list(r.get("overrides", []))
        with lock:
            print(f"start {r['name']} seed {seed} -> {wd}", flush=True)
        try:
            run_one(run_command(r["config"], overrides, seed, wd, threads, nproc), wd, threads, echo, live, stopping)
        except SemisegError:
            if not stopping.is_set():  # a run the signal stopped may exit non-zero (a torchrun group does)
                raise
        if stopping.is_set():
            return
        with lock:
            done += 1
            left = (time.time() - t0) / done * (len(todo) - done)
            print(f"[{done}/{len(todo)}] finished {r['name']} seed {seed}, about {fmt_time(left)} left", flush=True)

    main = threading.current_thread() is threading.main_thread()  # where Python lets a handler be set
    previous = signal.signal(signal.SIGTERM, on_sigterm) if main else None
    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for future in [pool.submit(one, item) for item in todo]:
                future.result()  # the first failure stops the suite (runs already started finish)
    finally:
        if main:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
    if stopping.is_set():
        print(f"suite {suite['name']}: stopped by SIGTERM, its runs checkpointed; the same command continues the suite",
              flush=True)
        raise SystemExit(128 + signal.SIGTERM)
