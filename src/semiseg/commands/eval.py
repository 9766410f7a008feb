"""``semiseg eval CKPT``: the student (and the teacher, if the checkpoint has one) on the validation split."""
from __future__ import annotations

HELP = "evaluate a checkpoint on its validation split"


def add_arguments(p, verb) -> None:
    p.add_argument("ckpt", help="a checkpoint written by semiseg train (it carries its config)")
    p.add_argument("overrides", nargs="*", help="a.b=c overrides of the checkpoint's config (e.g. data.root=...)")
    p.add_argument("--mode", choices=["whole", "slide"], help="whole image or sliding window (default: eval.mode)")


def run(args) -> int:
    import torch

    from semiseg.configure import load_config
    from semiseg.engine.checkpoint import load_checkpoint
    from semiseg.tasks import build_task

    ckpt = load_checkpoint(args.ckpt, settings=True)
    cfg = load_config(None, args.overrides, extra=ckpt["config"])
    if args.mode:
        cfg.eval.mode = args.mode
    cfg.model.pretrained = ""  # the checkpoint has the weights
    task = build_task(cfg)
    model = task.build_model(ckpt.get("meta"))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    loader = task.val_loader()
    nets = {"student": ckpt["model"]}
    if "teacher" in ckpt.get("method", {}):
        nets["teacher"] = ckpt["method"]["teacher"]
    for who, sd in nets.items():
        model.load_state_dict(sd)
        _, table = task.evaluate(model.to(device), loader, device)
        print(f"{who} ({cfg.eval.mode}):")
        print(table)
    return 0
