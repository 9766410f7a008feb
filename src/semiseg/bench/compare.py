"""``semiseg compare``: does semi-supervised learning help on this data, and with which recipe?

Supervised-only and each named recipe train on the user's own data config (same split, schedule and seeds:
a suite built here and run by the quality suite's runner), then each recipe gets a verdict in plain words
from the paired per-seed differences, and one recipe is recommended, or none."""
from __future__ import annotations

import statistics
from typing import Dict, List, Optional, Sequence

from semiseg.bench.tables import paired, paired_ci

BASELINE = "supervised"


def compare_suite(config: str, recipes: Sequence[str], seeds: Sequence[int], overrides: Sequence[str],
                  name: str) -> dict:
    """The suite of a comparison: the baseline and each recipe on one data config, the user's overrides
    after the recipe's (a recipe sits between a file and its command line)."""
    runs = [{"name": r, "config": str(config), "overrides": [f"recipe={r}"]} for r in (BASELINE, *recipes)]
    return {"name": name, "seeds": list(seeds), "overrides": list(overrides), "baseline": BASELINE, "runs": runs}


def estimate_seconds(suite: dict, todo: Sequence[tuple], jobs: int = 1, steps: int = 3) -> float:
    """The training time of the runs to go, from ``steps`` timed steps of each run's config on this machine
    (one seed stands for all: seeds change the draws, not the cost); evaluations and start-up come on top."""
    from semiseg.bench.speed import step_seconds
    from semiseg.configure import load_config

    per_step = {}
    for r, _ in todo:
        if r["name"] not in per_step:
            cfg = load_config(r["config"], [*suite.get("overrides", []), *r.get("overrides", [])])
            iters = cfg.train.iters  # read first: the timing trainer stretches the schedule
            per_step[r["name"]] = (step_seconds(cfg, steps), iters)
    return sum(per_step[r["name"]][0] * per_step[r["name"]][1] for r, _ in todo) / max(1, jobs)


def verdict(base: List[dict], evals: List[dict], key: str) -> Dict[str, object]:
    """One recipe against the baseline on the seeds both finished: ``gain`` when the paired 95% interval is
    above 0, ``harm`` when the recipe is below on every seed, else ``no difference shown``; the classes
    below the baseline on every seed (per-class IoU) are named."""
    pairs = paired(base, evals)
    diffs = [e[key] - b[key] for b, e in pairs]
    if not diffs:
        return {"kind": "unmeasured", "mean": float("nan"), "seeds": 0, "classes": [], "starved": []}
    ci = paired_ci([b for b, _ in pairs], [e for _, e in pairs], key)
    def below_everywhere(prefix: str) -> List[str]:  # classes under the baseline on every seed
        return [k[len(prefix):] for k in pairs[0][1] if k.startswith(prefix)
                and all(e.get(k, float("nan")) < b.get(k, float("nan")) for b, e in pairs)]

    classes, starved = below_everywhere("IoU_"), below_everywhere("pred%_")
    if ci is not None and ci[1] > 0:
        kind = "gain"
    elif all(d < 0 for d in diffs):
        kind = "harm"
    else:
        kind = "no difference shown"
    return {"kind": kind, "mean": statistics.mean(diffs), "ci": ci, "seeds": len(diffs), "classes": classes,
            "starved": starved}


def verdict_lines(res: Dict[str, List[dict]], recipes: Sequence[str], key: str) -> List[str]:
    lines = []
    for r in recipes:
        v = verdict(res.get(BASELINE, []), res.get(r, []), key)
        if v["kind"] == "unmeasured":
            lines.append(f"- {r}: not measured yet (no seed finished beside the baseline).")
            continue
        ci = f", 95% interval [{v['ci'][1]:+.2f}, {v['ci'][2]:+.2f}]" if v.get("ci") else " (one seed: no interval)"
        said = {"gain": "helps: a gain the interval supports",
                "harm": f"harms: below supervised-only on every seed ({v['seeds']})",
                "no difference shown": "no difference shown (the interval holds 0, or too few seeds)"}[v["kind"]]
        below = f"; below supervised-only on every seed: {', '.join(v['classes'])}" if v["classes"] else ""
        if v["kind"] == "harm" and v["starved"]:  # where the harm comes from: classes predicted less
            below += f"; predicted on fewer pixels (pred%) on every seed: {', '.join(v['starved'])}"
        lines.append(f"- {r}: {said}, {v['mean']:+.2f} {key}{ci}{below}.")
    return lines


def recommendation(res: Dict[str, List[dict]], recipes: Sequence[str], key: str) -> str:
    gains = {r: v for r in recipes if (v := verdict(res.get(BASELINE, []), res.get(r, []), key))["kind"] == "gain"}
    if not gains:
        return ("Recommendation: supervised-only. No recipe's gain is supported by the paired 95% interval here; "
                "more seeds, or more unlabeled images, may change that.")
    best = max(gains, key=lambda r: gains[r]["mean"])
    return (f"Recommendation: {best} (semiseg train CONFIG recipe={best}): the largest gain the interval supports, "
            f"{gains[best]['mean']:+.2f} {key} over {gains[best]['seeds']} seeds.")


def default_recipes(num_classes: int) -> List[str]:
    """The recommended recipes, and on two-class data the one measured best on binary data."""
    return ["unimatch", "dssn-horizon-iom-paste-align"] + (["dssn-horizon-clean"] if num_classes == 2 else [])


def recipes_given(text: Optional[str]) -> Optional[List[str]]:
    return [r.strip() for r in text.split(",") if r.strip()] if text else None


def shares_table(res: Dict[str, List[dict]], names: Sequence[str]) -> str:
    """Each class's share of the validation pixels as each run predicts it (pred%, mean over seeds), and as
    labeled (true%): a recipe that starves a class shows it predicted on fewer pixels than supervised-only."""
    first = next((e for evals in res.values() for e in evals), {})
    classes = [k[len("pred%_"):] for k in first if k.startswith("pred%_")]
    if not classes:
        return ""
    lines = ["| pred% | " + " | ".join(classes) + " |", "| --- |" + " --- |" * len(classes)]
    for name in names:
        if res.get(name):
            cells = [f"{statistics.mean(e[f'pred%_{c}'] for e in res[name]):.1f}" for c in classes]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| true% (labeled) | " + " | ".join(f"{first[f'true%_{c}']:.1f}" for c in classes) + " |")
    return "\n".join(lines)
