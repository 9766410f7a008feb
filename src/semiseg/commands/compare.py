"""``semiseg compare CONFIG``: supervised-only against named recipes on the user's own data config; the
table, a verdict per recipe, a recommendation and the suite's HTML page."""
from __future__ import annotations

from datetime import date
from pathlib import Path

from semiseg.errors import SemisegError

HELP = "does semi-supervised learning help on this data? supervised-only against recipes, seed by seed"


def add_arguments(p, verb) -> None:
    p.add_argument("config", help="your data config (a method in it is replaced by each recipe's)")
    p.add_argument("overrides", nargs="*", help="a.b=c overrides for every run, applied after each recipe")
    p.add_argument("--recipes", help="comma-separated recipe names (default: the recommended ones; semiseg recipes)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (the verdicts pair runs by seed)")
    p.add_argument("--iters", type=int, help="steps of every run (default: the config's train.iters)")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time")
    p.add_argument("--nproc-per-node", type=int, default=1, metavar="N",
                   help="train each run as a torchrun group of N processes (one per GPU)")
    p.add_argument("--doc", help="Markdown file whose <!-- semiseg:<comparison name> --> section gets the verdict")
    p.add_argument("--out", help="runs folder (default runs/compare/<config name>)")
    p.add_argument("--echo", action="store_true", help="show each run's output here too")


def run(args) -> int:
    import yaml

    from semiseg.bench.compare import (
        compare_suite,
        default_recipes,
        estimate_seconds,
        recipes_given,
        recommendation,
        shares_table,
        verdict_lines,
    )
    from semiseg.bench.quality import run_suite, todo_runs
    from semiseg.bench.tables import suite_results, suite_task, table, write_section
    from semiseg.commands.proposals import make_store
    from semiseg.configure import load_config
    from semiseg.engine.logging import fmt_time
    from semiseg.recipes import RECIPES
    from semiseg.report.build import build_report
    from semiseg.tasks import build_task

    for flag, value in (("--jobs", args.jobs), ("--nproc-per-node", args.nproc_per_node), ("--iters", args.iters)):
        if value is not None and value < 1:
            raise SemisegError(f"{flag} {value}: a number of at least 1")
    if args.recipes is not None and not recipes_given(args.recipes):
        raise SemisegError("--recipes is empty: name one or more (semiseg recipes lists them)")
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise SemisegError(f"--out {args.out} is a file: name a folder for the runs")
    if args.doc and not Path(args.doc).parent.is_dir():
        raise SemisegError(f"--doc {args.doc}: its folder {Path(args.doc).parent} does not exist")
    overrides = list(args.overrides) + ([f"train.iters={args.iters}"] if args.iters else [])
    cfg = load_config(args.config, overrides)
    recipes = recipes_given(args.recipes) or default_recipes(len(build_task(cfg).class_names))
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown:
        raise SemisegError(f"--recipes: unknown recipe {unknown[0]!r}; valid: {', '.join(RECIPES.names())}")
    others = [r for r in recipes if r != "supervised"]  # supervised-only is every comparison's baseline
    if not others:
        raise SemisegError("--recipes supervised: supervised-only is the baseline every comparison trains; name a "
                           "recipe to compare with it (semiseg recipes lists them)")
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise SemisegError(f"--seeds {args.seeds}: comma-separated integers, e.g. 0,1,2") from None
    # a seed or recipe named twice would count its runs twice in the paired intervals
    for flag, names in (("--seeds", seeds), ("--recipes", recipes)):
        twice = sorted({str(n) for n in names if names.count(n) > 1})
        if twice:
            raise SemisegError(f"{flag}: {', '.join(twice)} given twice")
    out = Path(args.out or f"runs/compare/{Path(args.config).stem}")
    suite = compare_suite(args.config, others, seeds, overrides, f"compare-{out.name}")
    store = out / "proposals"
    refining = [r for r in suite["runs"] if _needs_store(args.config, [*overrides, *r["overrides"]])]
    for r in refining:  # their runs read the store compare makes, unless the config names one
        r["overrides"].append(f"data.proposal_store={store}")
    todo = todo_runs(suite, out, None, seeds)  # first: it refuses a folder of another comparison
    out.mkdir(parents=True, exist_ok=True)
    (out / "suite.yaml").write_text(yaml.safe_dump(suite))  # `semiseg report OUT` rebuilds the page
    n = len(suite["runs"]) * len(seeds)
    print(f"comparing supervised-only with {', '.join(others)} on {args.config}: {n} runs of {cfg.train.iters} "
          f"steps ({len(seeds)} seed{'s' if len(seeds) > 1 else ''}); a stopped comparison continues where it "
          "stopped", flush=True)
    if any(r in refining for r, _ in todo):
        names = [r["name"] for r in refining]
        print(f"{', '.join(names)} refine{'s its' if len(names) == 1 else ' their'} pseudo-labels against mask "
              f"proposals: making them in {store} (the config's proposals section)", flush=True)
        make_store(cfg, store)
    if todo:
        seconds = estimate_seconds(suite, todo, args.jobs)
        print(f"timing 3 steps of each recipe... estimated {fmt_time(seconds) if seconds >= 60 else 'under a minute'} "
              f"of training for the {len(todo)} runs to go on this machine (evaluations come on top; the time "
              f"left is printed after each run)", flush=True)
    run_suite(suite, out, None, args.jobs, seeds, args.echo, args.nproc_per_node)
    task = suite_task(suite, out)
    key = task.key  # each run's headline score (a referring run's teacher where it has one) under its name
    res = {name: [{**e, key: task.headline(e)} for e in evals] for name, evals in suite_results(suite, out).items()}
    names = [r["name"] for r in suite["runs"][1:]]
    shares = shares_table(res, [r["name"] for r in suite["runs"]])
    text = "\n".join([table(suite, out), *(["", "Per class, the share of the validation pixels each run predicts "
                                               "(mean over seeds):", "", shares] if shares else []),
                      "", "Verdicts (paired by seed against supervised-only):", "",
                      *verdict_lines(res, names, key), "", recommendation(res, names, key)])
    (out / "verdict.md").write_text(text + "\n")
    if args.doc:
        given = [f"--{k} {getattr(args, k)}" for k in ("recipes", "iters") if getattr(args, k)]
        extra = " ".join([*args.overrides, *given, f"--seeds {args.seeds}",
                          *([f"--out {args.out}"] if args.out else [])])
        write_section(Path(args.doc), suite["name"], f"Produced by `semiseg compare {args.config} {extra} --doc "
                      f"{args.doc}` on {date.today().isoformat()}.\n\n{text}")
    page = build_report(out)
    print(text)  # after the files: a reader that has gone (`| head`) must not lose them
    print(f"page: {page}")
    return 0


def _needs_store(config: str, overrides) -> bool:
    """A run of these overrides refines against mask proposals and its config names no store."""
    from semiseg.configure import load_config
    from semiseg.methods import METHODS

    cfg = load_config(config, overrides)
    return METHODS.get(cfg.method.name).proposals_needed(cfg.method) and not cfg.data.proposal_store
