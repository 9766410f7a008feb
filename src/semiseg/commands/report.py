"""``semiseg report WORK_DIR``: the HTML page of a run, or of a benchmark suite's runs folder."""
from __future__ import annotations

from semiseg.report.build import build_report


def run(args) -> int:
    path = build_report(args.work_dir, args.out, args.max_images)
    print(f"report written to {path}")
    return 0
