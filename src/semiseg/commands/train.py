"""``semiseg train CONFIG``: one run on one device, or one process of a torchrun group; the HTML report at
the end is written here, not by the trainer (the engine does not build reports)."""
from __future__ import annotations

import os
from pathlib import Path



def write_report(work_dir: Path) -> None:
    from semiseg.report.build import build_report

    try:  # a report is a convenience: it must never fail a finished run
        print(f"report: {build_report(work_dir)}", flush=True)
    except Exception as e:  # noqa: BLE001
        print(f"warning: could not write the report: {e}", flush=True)


HELP = "train a method from a config"


def add_arguments(p, verb) -> None:
    p.add_argument("config", nargs="?", help="experiment YAML (only what differs from the defaults); without one, "
                                            "the defaults and the overrides")
    p.add_argument("overrides", nargs="*", help="a.b=c overrides, applied after the file")
    p.add_argument("--work-dir", help="where logs and checkpoints go (default: config work_dir)")
    p.add_argument("--resume", nargs="?", const="auto",
                   help="resume everything from CKPT (default: work_dir/latest.pth)")
    p.add_argument("--load-from", help="initialise the weights from CKPT, starting at step 0")
    p.add_argument("--force", action="store_true",
                   help="start over in a work_dir that holds another run's checkpoints (they are replaced)")


def run(args) -> int:
    from semiseg.configure import load_config
    from semiseg.engine.trainer import Trainer

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
