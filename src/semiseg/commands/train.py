"""``semiseg train CONFIG``: one run on one device, or one process of a torchrun group; the HTML report at
the end is written here, not by the trainer (the engine does not build reports)."""
from __future__ import annotations

import os
from pathlib import Path

from semiseg.configure import load_config
from semiseg.engine.trainer import Trainer


def write_report(work_dir: Path) -> None:
    from semiseg.report.build import build_report

    try:  # a report is a convenience: it must never fail a finished run
        print(f"report: {build_report(work_dir)}", flush=True)
    except Exception as e:  # noqa: BLE001
        print(f"warning: could not write the report: {e}", flush=True)


def run(args) -> int:
    cfg = load_config(args.config, args.overrides)
    resume = args.resume
    work_dir = Path(args.work_dir or cfg.work_dir)
    # torchrun --max-restarts: a restarted worker group continues from the latest checkpoint by itself
    if not resume and os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") != "0" and (work_dir / "latest.pth").is_file():
        resume = "auto"
    trainer = Trainer(cfg, args.work_dir, resume, args.load_from, args.force)
    try:
        trainer.run()
    finally:
        trainer.close()
    if cfg.train.report and trainer.ctx.is_main and not trainer.stopped:
        write_report(trainer.work_dir)
    return 0
