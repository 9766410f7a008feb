"""The table of a quality suite: each run's scores over seeds, its gain over its baseline with the 95% interval
paired by seed, the share of the gap to all labels it closes, a sentence per run on what that interval
supports and the classes below the baseline, per-class IoU, run time and where the runs trained; and the
``<!-- semiseg:NAME -->`` section of a Markdown file it is written into. The suite's format and how its runs
train: ``semiseg.bench.quality``.
"""
from __future__ import annotations

import os
import statistics
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional

import yaml
from scipy.stats import t as scipy_t

from semiseg.bench.quality import final_eval
from semiseg.files import atomic_file
from semiseg.engine.logging import fmt_time
from semiseg.errors import SemisegError


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


def paired_gain(reference: List[dict], evals: List[dict], key: str) -> Optional[float]:
    """Mean of the per-seed differences (method - reference) over the seeds both finished: the centre of the
    paired interval (a method that has finished seed 0 only is compared with the baseline's seed 0); the
    difference of the means where they share no seed; None without a reference."""
    if not reference or not evals:
        return None
    pairs = paired(reference, evals)
    if pairs:
        return statistics.mean(e[key] - b[key] for b, e in pairs)
    return statistics.mean(e[key] for e in evals) - statistics.mean(b[key] for b in reference)


def gap_closed(reference: List[dict], full: List[dict], evals: List[dict], key: str) -> Optional[float]:
    """The share of the reference-to-full gap the method closes, on the seeds all three finished (else on their
    means); None where the gap is unknown or zero."""
    by_seed = {e["seed"]: e for e in full}
    trios = [(b, e, by_seed[e["seed"]]) for b, e in paired(reference, evals) if e["seed"] in by_seed]
    if trios:
        gain = statistics.mean(e[key] - b[key] for b, e, _ in trios)
        gap = statistics.mean(f[key] - b[key] for b, _, f in trios)
    elif reference and full and evals:
        mean = lambda runs: statistics.mean(r[key] for r in runs)  # noqa: E731
        gain, gap = mean(evals) - mean(reference), mean(full) - mean(reference)
    else:
        return None
    return gain / gap if gap else None


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
    """The classes whose IoU, averaged over the seeds both runs finished, ends below the reference's, each with
    its IoU on every seed (one seed or all of them may put it there); "" where the task reports no per-class IoU."""
    pairs = paired(reference, evals)
    classes = [k for k in (pairs[0][1] if pairs else {}) if k.startswith("IoU_") and k in pairs[0][0]]
    if not classes:
        return ""

    def by_seed(values: List[float]) -> str:
        return " / ".join(f"{v:.1f}" for v in values)

    below = []
    for k in classes:
        mine, theirs = [e[k] for _, e in pairs], [b[k] for b, _ in pairs]
        m, b = statistics.mean(mine), statistics.mean(theirs)
        if m < b:
            seeds = f"; by seed {by_seed(mine)} against {by_seed(theirs)}" if len(pairs) > 1 else ""
            below.append(f"{k[4:]} ({m:.1f} against {b:.1f}{seeds})")
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


def table(suite: dict, out: Path, step: Optional[int] = None, res: Optional[Dict[str, List[dict]]] = None) -> str:
    """Each run's scores (the task's columns, mean ± sd over seeds), its gain in the task's headline score over
    its baseline with the paired 95% interval, the share of the baseline-to-all-labels gap it closes, and
    its speed; then per-class IoU where the task reports it. ``res``: the suite's results if already read."""
    res = suite_results(suite, out, step) if res is None else res
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
        base_runs, full_runs = res.get(base_name or "", []), res.get(suite.get("full", ""), [])
        gain = gap = interval = "-"
        if base_runs and evals and name not in (base_name, suite.get("full")):  # on the seeds they share
            gain = f"{paired_gain(base_runs, evals, 'headline'):+.2f}"
            interval = paired_interval(base_runs, evals, "headline")
            share = gap_closed(base_runs, full_runs, evals, "headline")
            gap = "-" if share is None else f"{100 * share:+.0f}%"
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
    """Replace the text between ``<!-- semiseg:name -->`` and ``<!-- /semiseg:name -->`` (append if absent).
    The page holds every other table too: it is replaced whole or kept (a full disk, a kill) - never torn."""
    start, end = f"<!-- semiseg:{name} -->", f"<!-- /semiseg:{name} -->"
    text = doc.read_text() if doc.is_file() else ""
    block = f"{start}\n{body}\n{end}"
    starts, ends = text.count(start), text.count(end)
    if starts or ends:  # one pair in order, or nothing is written: a lone marker would take other tables with it
        if starts != 1 or ends != 1 or text.index(end) < text.index(start):
            raise SemisegError(f"{doc}: section {name!r} has {starts} start and {ends} end marker(s)"
                               + (", the end first" if starts == ends == 1 else "")
                               + "; mend them by hand (the page is kept)")
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + ("\n\n" if text else "") + block + "\n"
    target = doc.resolve()  # a linked page is written where it lies, and keeps its mode
    mode = target.stat().st_mode if target.exists() else None
    if mode is not None and not mode & 0o222:  # a rename would replace it all the same
        raise SemisegError(f"cannot write {doc}: it is read-only; the page is kept")
    with atomic_file(target, "w") as f:
        f.write(text)
    if mode is not None:
        os.chmod(target, mode)
