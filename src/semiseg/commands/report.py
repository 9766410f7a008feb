"""``semiseg report WORK_DIR``: the HTML page of a run, or of a benchmark suite's runs folder."""
from __future__ import annotations

HELP = "a self-contained HTML page about a run or a benchmark suite"


def add_arguments(p, verb) -> None:
    p.add_argument("work_dir", help="a run's work_dir, or a suite's runs folder")
    p.add_argument("--out", help="output file (default WORK_DIR/report.html)")
    p.add_argument("--max-images", type=int, default=8, help="validation images shown with predictions")


def run(args) -> int:
    from semiseg.report.build import build_report

    path = build_report(args.work_dir, args.out, args.max_images)
    print(f"report written to {path}")
    return 0
