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

An ablation suite that shares another suite's runs names that suite's runs folder instead of training
them again (``reference: runs/bench/scenes-1_16``): its baseline and full runs, and those listed in
``reference_runs: [dssn, csl]`` (the methods being ablated), are read from there and never run; the table
lists them first, marked "(reference)".

Each run trains in its own process into ``OUT/<name>/seed<k>`` (``--resume`` when a checkpoint exists);
finished runs are skipped, so a killed suite continues where it stopped; ``--jobs N`` runs N at a time,
``--seeds`` and ``--only`` pick what runs now. The table (mean and spread of the final score over seeds,
teacher too where there is one, the gain and gap closed against the baseline's runs with the same seeds and
the gain's 95% confidence interval paired by seed, a sentence per run on which differences that interval
supports, per-class IoU, step time) is printed and, with ``--doc``, written between ``<!-- semiseg:NAME -->``
markers of a Markdown file. ``--step N`` tabulates the finished runs' evaluations at step N instead of
their last (section ``NAME-stepN``): how far each method is partway through the schedule. The runs' task
gives the score columns and the headline score (referring segmentation: oIoU, mIoU and precision at IoU
thresholds, of the teacher where a run has one).
"""
from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional

import yaml
from scipy.stats import t as scipy_t

from semiseg.engine.logging import fmt_time, read_jsonl
from semiseg.errors import SemisegError


def read_suite(path: str | Path) -> dict:
    from semiseg.config import YamlLoader

    path = Path(path)
    if not path.is_file():
        raise SemisegError(f"suite file {path} does not exist")
    suite = yaml.load(path.read_text(), Loader=YamlLoader) or {}
    for key in ("name", "runs"):
        if key not in suite:
            raise SemisegError(f"suite file {path} has no '{key}'")
    names = [r.get("name") for r in suite["runs"]]
    if len(set(names)) != len(names) or None in names:
        raise SemisegError(f"suite file {path}: every run needs a unique name, got {names}")
    return suite


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
    iters = yaml.safe_load(cfg.read_text())["train"]["iters"]
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


def _mean_sd(values: List[float]) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {sd:.2f}" if len(values) > 1 else f"{values[0]:.2f}"


def suite_results(suite: dict, out: Path, step: Optional[int] = None) -> Dict[str, List[dict]]:
    """Each run's finished evaluations (at ``step`` if given), one per seed that has finished (with its
    ``seed``); the baseline, full and ``reference_runs`` runs the suite does not hold come from its
    ``reference`` runs folder."""
    seeds = suite.get("seeds", [0])

    def finished(root: Path, name: str) -> List[dict]:
        return [{**e, "seed": s} for s in seeds if (e := final_eval(root / name / f"seed{s}", step))]

    res = {r["name"]: finished(out, r["name"]) for r in suite["runs"]}
    if "reference" in suite:
        wanted = [suite.get("baseline"), suite.get("full"), *(r.get("baseline") for r in suite["runs"]),
                  *suite.get("reference_runs", [])]
        ref = {n: finished(Path(suite["reference"]), n) for n in dict.fromkeys(wanted) if n and n not in res}
        return {**ref, **res}
    return res


def paired_mean(reference: List[dict], evals: List[dict], key: str) -> Optional[float]:
    """Mean of ``key`` over the reference runs with the seeds ``evals`` has (a method that has finished
    seed 0 only is compared with the baseline's seed 0), or over all of them if any of those is missing."""
    seeds = {e["seed"] for e in evals}
    same = [e for e in reference if e["seed"] in seeds]
    use = same if len(same) == len(seeds) else reference
    return statistics.mean(e[key] for e in use) if use else None


def paired(reference: List[dict], evals: List[dict]) -> List[tuple]:
    """(reference, method) evaluations of each seed both finished, in the method's seed order."""
    by_seed = {e["seed"]: e for e in reference}
    return [(by_seed[e["seed"]], e) for e in evals if e["seed"] in by_seed]


def paired_ci(reference: List[dict], evals: List[dict], key: str, level: float = 0.95):
    """(mean, low, high) of the per-seed differences (method - reference on the same seed), or None below two
    paired seeds: the seed moves both runs (split order, crops, initialisation of the head), so pairing
    removes what they share. Student t with n - 1 degrees of freedom."""
    diffs = [e[key] - b[key] for b, e in paired(reference, evals)]
    if len(diffs) < 2:
        return None
    half = scipy_t.ppf(0.5 + level / 2, len(diffs) - 1) * statistics.stdev(diffs) / len(diffs) ** 0.5
    mean = statistics.mean(diffs)
    return mean, mean - half, mean + half


def paired_interval(reference: List[dict], evals: List[dict], key: str, level: float = 0.95) -> str:
    """The gain's confidence interval as a table cell; "-" below two paired seeds."""
    ci = paired_ci(reference, evals, key, level)
    return f"[{ci[1]:+.2f}, {ci[2]:+.2f}]" if ci else "-"


def verdicts(suite: dict, res: Dict[str, List[dict]]) -> List[str]:
    """One sentence per run: its difference on each seed and which of its differences (against the baseline,
    and against the suite's ``versus`` run) the paired 95% interval supports; then the classes below the
    baseline on the seed mean, the bar a recipe is held to."""
    lines = []
    for r in suite["runs"]:
        name, parts = r["name"], []
        base = r.get("baseline", suite.get("baseline"))
        for ref in dict.fromkeys([base, suite.get("versus")]):
            if not ref or name in (ref, suite.get("baseline"), suite.get("full")) or not res.get(ref):
                continue
            ci = paired_ci(res[ref], res[name], "headline")
            if ci is None:
                continue
            mean, low, high = ci
            said = ("a gain the interval supports" if low > 0 else "a loss the interval supports" if high < 0
                    else "no difference shown (the interval holds 0)")
            by_seed = " / ".join(f"{e['headline'] - b['headline']:+.2f}" for b, e in paired(res[ref], res[name]))
            parts.append(f"{mean:+.2f} against {ref} (by seed {by_seed}), [{low:+.2f}, {high:+.2f}]: {said}")
        if parts:
            below = classes_below(res.get(base or "", []), res[name], base)
            lines.append(f"- {name}: " + "; ".join(parts) + "." + below)
    return lines


def classes_below(reference: List[dict], evals: List[dict], ref: str) -> str:
    """The classes whose IoU, averaged over the seeds both runs finished, ends below the reference's; ""
    where the task reports no per-class IoU."""
    pairs = paired(reference, evals)
    classes = [k for k in (pairs[0][1] if pairs else {}) if k.startswith("IoU_") and k in pairs[0][0]]
    if not classes:
        return ""
    means = {k[4:]: (statistics.mean(e[k] for _, e in pairs), statistics.mean(b[k] for b, _ in pairs))
             for k in classes}
    below = [f"{c} ({m:.1f} against {b:.1f})" for c, (m, b) in means.items() if m < b]
    if not below:
        return f" No class below {ref} on the seed mean."
    return f" Below {ref} on the seed mean: {', '.join(below)}."


def run_time(suite: dict, res: Dict[str, List[dict]]) -> str:
    """How long the suite's own finished runs trained (s/step x steps, summed), in all and per seed: what a
    user plans a rerun by. Runs that shared the CPU count at their shared speed."""
    evals = [e for r in suite["runs"] for e in res[r["name"]] if e["s_per_step"] == e["s_per_step"]]  # not NaN
    per_seed = {s: sum(e["s_per_step"] * e["iters"] for e in evals if e["seed"] == s) for s in suite.get("seeds", [0])}
    parts = ", ".join(f"seed {s} {fmt_time(v)}" for s, v in per_seed.items())
    return f"Run time of the finished runs (s/step x steps, summed): {fmt_time(sum(per_seed.values()))} ({parts})."


def trained_on(res: Dict[str, List[dict]]) -> str:
    """Where the tabulated runs trained, and in what precision, by their own setup records (a run resumed on
    another machine counts under each): a table written on one machine may hold runs from others."""
    count = Counter(m for evals in res.values() for e in evals for m in e.get("machines") or ["not recorded"])
    order = sorted(count, key=lambda m: (m == "not recorded", m))
    parts = "; ".join(f"{m} ({count[m]} run{'s' * (count[m] > 1)})" for m in order)
    return f"Trained on (the runs' own records, a resumed run under each): {parts}."


def suite_task(suite: dict, out: Path):
    """The task of a suite's runs: the first run folder's config.yaml (written when a run starts), else the
    task its first config names."""
    from semiseg.tasks import task_named

    for r in suite["runs"]:
        for s in suite.get("seeds", [0]):
            cfg_file = out / r["name"] / f"seed{s}" / "config.yaml"
            if cfg_file.is_file():
                return task_named((yaml.safe_load(cfg_file.read_text()) or {}).get("task"))
    first = suite["runs"][0].get("config")
    named = (yaml.safe_load(Path(first).read_text()) or {}).get("task") if first and Path(first).is_file() else None
    return task_named(named)


def table(suite: dict, out: Path, step: Optional[int] = None) -> str:
    """Each run's scores (the task's columns, mean ± sd over seeds), its gain in the task's headline score over
    its baseline with the paired 95% interval, the share of the baseline-to-all-labels gap it closes, and
    its speed; then per-class IoU where the task reports it."""
    res = suite_results(suite, out, step)
    task = suite_task(suite, out)
    res = {name: [{**e, "headline": task.headline(e)} for e in evals] for name, evals in res.items()}
    columns = list(task.table_scores(next((e for evals in res.values() for e in evals), {task.key: 0.0})))
    lines = ["| run | seeds | " + " | ".join(columns) + " | gain | gain 95% CI (paired) | gap closed | s/step |",
             "| --- | --- | " + "--- | " * len(columns) + "--- | --- | --- | --- |"]
    own = {r["name"] for r in suite["runs"]}
    label = lambda n: n if n in own else f"{n} (reference)"  # noqa: E731 (runs read from the suite's reference)
    for r in [{"name": n} for n in res if n not in own] + suite["runs"]:  # against the run's baseline, on its seeds
        name, evals = r["name"], res[r["name"]]
        base_name = r.get("baseline", suite.get("baseline"))
        base = paired_mean(res.get(base_name or "", []), evals, "headline")
        full = paired_mean(res.get(suite.get("full", ""), []), evals, "headline")
        gain = gap = interval = "-"
        if base is not None and evals and name not in (base_name, suite.get("full")):
            m = statistics.mean(e["headline"] for e in evals)
            gain = f"{m - base:+.2f}"
            interval = paired_interval(res.get(base_name or "", []), evals, "headline")
            if full is not None and full != base:
                gap = f"{100 * (m - base) / (full - base):+.0f}%"
        scores = [task.table_scores(e) for e in evals]
        cells = [_mean_sd([v for sc in scores if (v := sc[c]) == v]) for c in columns]  # NaN: a run without it
        speed = _mean_sd([e["s_per_step"] for e in evals]) if evals else "-"
        lines.append(f"| {label(name)} | {len(evals)} | " + " | ".join(cells) + f" | {gain} | {interval} | {gap} "
                     f"| {speed} |")
    lines += ["", run_time(suite, res), "", trained_on(res)]
    said = verdicts(suite, res)
    if said:
        lines += ["", f"What the paired 95% intervals support ({task.key}, method minus reference, by seed):", "",
                  *said]
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
                lines.append(f"| {label(name)} | " + " | ".join(cells) + " |")
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
