"""``semiseg bench quality|speed|pseudo|selector``: each benchmark's arguments, and the glue that runs it,
prints its table and writes it between its markers of a Markdown file (``--doc``). The measuring is in
``bench/``."""
from __future__ import annotations

import os
import platform
from datetime import date
from pathlib import Path

from semiseg.errors import SemisegError

HELP = "benchmarks"


def add_arguments(bench, verb) -> None:
    bverbs = bench.add_subparsers(dest="bench_verb", required=True)
    p = verb(bverbs, "speed", "step time, throughput, memory and data-loader headroom")
    p.add_argument("config", nargs="+", help="one or more config files, then a.b=c overrides for all")
    p.add_argument("--overhead", help="also time what this config's method step costs besides its network")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="also list the N operators (with their input shapes) that take most of a step of each config")
    p.add_argument("--options", action="store_true",
                   help="one config under each speed option, each in its own process: step time and peak memory")
    p.add_argument("--vs-reference", action="store_true",
                   help="time UniMatch V2's step as its authors run it beside semiseg's (one unimatch_v2 config)")
    p.add_argument("--doc", help="Markdown file to write the table into")
    p.add_argument("--section", default="speed", help="section name in --doc")
    p.add_argument("--steps", type=int, default=20, help="timed steps (the median is reported)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    p.set_defaults(overrides=[])
    p = verb(bverbs, "quality", "run a suite of configs x seeds (resumable) and write its table")
    p.add_argument("suite", help="suite YAML (see src/semiseg/bench/quality.py)")
    p.add_argument("--out", help="runs folder (default runs/bench/<suite name>)")
    p.add_argument("--doc", help="Markdown file whose <!-- semiseg:<suite name> --> section gets the table")
    p.add_argument("--table-only", action="store_true", help="only collect finished runs into the table")
    p.add_argument("--only", help="comma-separated run names to run (the table still lists all)")
    p.add_argument("--seeds", help="comma-separated seeds to run now (default: the suite's; the table lists all)")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs at a time, each with cpu_count/jobs threads "
                        "(pays off where one run cannot use every core)")
    p.add_argument("--nproc-per-node", type=int, default=1, metavar="N",
                   help="train each run as a torchrun group of N processes (one per GPU)")
    p.add_argument("--step", type=int, help="tabulate the finished runs' evaluations at this step, not their last")
    p.add_argument("--echo", action="store_true",
                   help="show each run's output here as well as in its train.log (with --jobs 1: what a demo shows)")
    p = verb(bverbs, "pseudo", "pseudo-label quality of a checkpoint on the unlabeled split (hidden labels)")
    p.add_argument("ckpt", help="a checkpoint of a run on data with hidden unlabeled labels (the scenes)")
    p.add_argument("--teacher", action="store_true", help="use the checkpoint's teacher")
    p.add_argument("--proposals", help="a proposal store: also score the IOM and CPI refinements")
    p.add_argument("--max-images", type=int, default=0, help="score only the first N images (0: all)")
    p.add_argument("--scales", default="1", help="input scales the model labels at, its probabilities averaged, "
                   "as method.teacher_scales does (e.g. 1,1.5)")
    p.add_argument("--data-root", help="the data the checkpoint trained on, where its saved data.root (relative to "
                   "the folder it trained in) is not found from here")
    p.add_argument("--doc", help="Markdown file to write the table into")
    p.add_argument("--section", default="pseudo", help="section name in --doc")
    p = verb(bverbs, "selector", "time the batched CSL selector against the per-image SVD loop")
    p.add_argument("--doc", help="Markdown file to write the table into")
    p.add_argument("--section", default="selector-speed", help="section name in --doc")


def run(args) -> int:
    return {"quality": _quality, "speed": _speed, "pseudo": _pseudo, "selector": _selector}[args.bench_verb](args)


def _publish(doc: str | None, section: str, header: str, body: str) -> int:
    """``header`` and ``body`` as section ``section`` of ``doc`` (when given), then ``body`` printed: the file
    first, so that a reader that has gone (``| head``) loses nothing."""
    if doc:
        from semiseg.bench.tables import write_section

        write_section(Path(doc), section, f"{header}\n\n{body}")
    print(body)
    return 0


def _quality(args) -> int:
    import yaml

    from semiseg.bench.quality import read_suite, run_suite
    from semiseg.bench.tables import suite_results, table

    if args.jobs < 1 or args.nproc_per_node < 1:
        raise SemisegError(f"--jobs {args.jobs} --nproc-per-node {args.nproc_per_node}: each at least 1")
    suite = read_suite(args.suite)
    if args.out is not None and not args.out.strip():
        raise SemisegError("--out: an empty folder name (leave it out for runs/bench/NAME)")
    out = Path(args.out or f"runs/bench/{suite['name']}")
    res = suite_results(suite, out, args.step) if args.table_only else None  # read once (each read warns)
    if res is not None and not any(res[r["name"]] for r in suite["runs"]):
        # a forgotten --out (or a step never evaluated) would write empty rows over the page's measured table
        none = f"{out}: no finished run of suite {suite['name']!r} here"
        if args.step is not None:
            raise SemisegError(f"{none} has an evaluation at step {args.step}")
        raise SemisegError(f"{none} (--out names the runs' folder)")
    if not args.table_only:  # which only reads the runs: their folder's record stays the suite that trained them
        out.mkdir(parents=True, exist_ok=True)
        (out / "suite.yaml").write_text(yaml.safe_dump(suite))  # lets `semiseg report OUT` rebuild the table
        seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else None
        run_suite(suite, out, args.only.split(",") if args.only else None, args.jobs, seeds, args.echo,
                  args.nproc_per_node)
    cmd = f"semiseg bench quality {args.suite}" + (f" --out {args.out}" if args.out else "")
    at = f" --table-only --step {args.step}" if args.step is not None else ""
    header = (f"Suite `{suite['name']}` ({Path(args.suite).as_posix()}), produced by `{cmd}{at} --doc {args.doc}` "
              f"on {date.today().isoformat()}, {platform.machine()} with {os.cpu_count()} CPU(s); "
              f"overrides {suite.get('overrides', [])}, seeds {suite.get('seeds', [0])}"
              + (f"; evaluations at step {args.step}" if args.step is not None else "") + ".")
    name = suite["name"] + (f"-step{args.step}" if args.step is not None else "")
    return _publish(args.doc, name, header, table(suite, out, args.step, res))


def _speed(args) -> int:
    import json

    import torch

    from semiseg.bench.speed import measure, measure_overhead, profile_step, speed_table
    from semiseg.configure import load_config

    configs, overrides = args.config, args.overrides  # cli.parse took the a.b=c words for overrides
    if args.steps < 1 or args.warmup < 0:
        raise SemisegError(f"--steps {args.steps} --warmup {args.warmup}: at least 1 timed step, no negative warm-up")
    if args.vs_reference and args.options:
        raise SemisegError("--options and --vs-reference are two studies: run one at a time")
    if args.vs_reference or args.options:
        return _one_config_study(args, configs, overrides, "--vs-reference" if args.vs_reference else "--options")
    results = []
    for path in configs:  # one process per config would isolate peak memory; in-process is what fits here
        results.append({**measure(load_config(path, overrides), args.steps, args.warmup), "config": Path(path).stem})
        print(json.dumps(results[-1]), flush=True)
    body = speed_table(results)
    if args.overhead:
        cfg = load_config(args.overhead, overrides)
        parts = measure_overhead(cfg, args.steps)
        step = measure(load_config(args.overhead, overrides), args.steps, args.warmup)["step_s"]
        total = sum(parts.values())
        body += (f"\n\nOne {cfg.method.name} step ({args.overhead}) besides its network, medians: "
                 + ", ".join(f"{k} {1000 * v:.1f} ms" for k, v in parts.items())
                 + f"; together {1000 * total:.1f} ms = {100 * total / step:.1f}% of the {1000 * step:.0f} ms step.")
    for path in configs if args.profile else []:
        body += "\n\n" + profile_step(load_config(path, overrides), args.profile)
    cmd = "semiseg bench speed " + " ".join(configs + overrides) \
        + (f" --overhead {args.overhead}" if args.overhead else "") \
        + (f" --profile {args.profile}" if args.profile else "")
    return _publish(args.doc, args.section, f"Produced by `{cmd} --doc {args.doc}` on {date.today()}, "
                    f"{os.cpu_count()} CPU(s), torch {torch.__version__}, {torch.get_num_threads()} threads; "
                    f"medians of {args.steps} steps after {args.warmup} warm-up.", body)


def _machine() -> str:
    """The GPU's name, else the CPU's (timings differ between machines: a table names its own)."""
    import torch

    from semiseg.engine.precision import device_name

    where = device_name(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    return f"{where}, {os.cpu_count()} CPU(s), torch {torch.__version__}"


def _one_config_study(args, configs, overrides, flag: str) -> int:
    """``--options`` or ``--vs-reference``: a study of one config, printed and written under ``--section``."""
    if len(configs) != 1:
        raise SemisegError(f"{flag} studies one config; got {len(configs)}: {' '.join(configs)}")
    if flag == "--options":
        from semiseg.bench.options import measure_options, options_table

        body = options_table(measure_options(configs[0], overrides, args.steps, args.warmup))
    else:
        from semiseg.bench.vs_reference import compare_to_reference, reference_table

        body = reference_table(compare_to_reference(configs[0], overrides, args.steps, args.warmup))
    cmd = "semiseg bench speed " + " ".join(configs + overrides) + f" {flag}"
    return _publish(args.doc, args.section, f"Produced by `{cmd} --steps {args.steps} --warmup {args.warmup} "
                    f"--section {args.section} --doc {args.doc}` on {date.today()}, {_machine()}; medians of "
                    f"{args.steps} steps after {args.warmup} warm-up, each in a fresh process.", body)


def _pseudo(args) -> int:
    from semiseg.bench.pseudo import evaluate_pseudo, format_pseudo
    from semiseg.data.presets import resolve_layout
    from semiseg.inference import load

    try:
        scales = [float(v) for v in args.scales.split(",")]
    except ValueError:
        scales = []
    if not scales or not all(0.25 <= v <= 4 for v in scales):
        raise SemisegError(f"--scales {args.scales}: numbers between 0.25 and 4, separated by commas (e.g. 1,1.5)")
    if args.max_images < 0:
        raise SemisegError(f"--max-images {args.max_images}: 0 (all) or more")
    predictor = load(args.ckpt, teacher=args.teacher)
    if predictor.cfg.data.dataset == "folder" and not predictor.cfg.data.unlabeled:
        raise SemisegError("bench pseudo scores pseudo-labels against the unlabeled images' hidden masks, and a "
                           "folder data set's unlabeled images have no masks (a run trained with data.unlabeled, "
                           "a list of image and mask lines, has them)")
    if args.data_root:
        predictor.cfg.data.root = args.data_root
    elif not Path(predictor.cfg.data.root).is_dir():
        raise SemisegError(f"{args.ckpt}: its data.root {predictor.cfg.data.root!r} is not found from here (a relative "
                           "root is relative to the folder it trained in); give the data with --data-root DIR")
    layout = resolve_layout(predictor.cfg.data)
    if len(layout.class_names) != len(predictor.class_names):
        raise SemisegError(f"{args.ckpt} predicts {len(predictor.class_names)} classes and the data at {layout.root} "
                           f"has {len(layout.class_names)}: give the data it trained on")
    if layout.unlabeled is None or any(s.mask is None for s in layout.unlabeled):
        raise SemisegError("bench pseudo needs an unlabeled split whose lines keep their (hidden) masks")
    store = None
    if args.proposals:
        from semiseg.pseudo.store import ProposalStore

        store = ProposalStore(args.proposals)
        store.verify([s.image for s in layout.unlabeled[: args.max_images or None]], "the unlabeled split")
    body = (f"The checkpoint's {'teacher' if args.teacher else 'student'}, labelling at scale"
            f"{'s' if len(scales) > 1 else ''} {', '.join(f'{v:g}' for v in scales)}; "
            + format_pseudo(evaluate_pseudo(predictor, layout.unlabeled, layout, store, args.max_images, scales)))
    cmd = f"semiseg bench pseudo {args.ckpt}" + (" --teacher" if args.teacher else "") + \
        (f" --proposals {args.proposals}" if args.proposals else "") + \
        (f" --max-images {args.max_images}" if args.max_images else "") + \
        (f" --scales {args.scales}" if scales != [1.0] else "") + \
        (f" --data-root {args.data_root}" if args.data_root else "") + \
        (f" --section {args.section}" if args.section != "pseudo" else "")
    return _publish(args.doc, args.section, f"Produced by `{cmd} --doc {args.doc}` on {date.today()}.", body)


def _selector(args) -> int:
    import torch

    from semiseg.bench.selector import selector_table

    return _publish(args.doc, args.section, f"Produced by `semiseg bench selector --doc {args.doc}` on "
                    f"{date.today()}, {torch.get_num_threads()} threads, medians.", selector_table())
