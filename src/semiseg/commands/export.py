"""``semiseg export CKPT --format onnx|torchscript``: the network ``predict`` uses (the task's
rule: the student, or a referring run's teacher) as a file that runs at any input size."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from semiseg.errors import SemisegError

HELP = "export a checkpoint's model and check it against eager"


def side(text: str) -> int:
    """An image side for export: at least 16 pixels (it is also checked at about half that size)."""
    value = int(text)
    if value < 16:
        raise argparse.ArgumentTypeError(f"{text} is under 16 pixels")
    return value


def add_arguments(p, verb) -> None:
    p.add_argument("ckpt", help="a checkpoint written by semiseg train")
    p.add_argument("--format", choices=["onnx", "torchscript"], default="onnx", help="the exported file's format")
    p.add_argument("--output", help="output file (default: next to the checkpoint)")
    p.add_argument("--input-size", type=side, nargs=2, metavar=("H", "W"),
                   help="the size traced (default: data.resize or data.crop_size); any size runs afterwards")


def output_file(args) -> Path:
    """--output: a file, its folder created when missing (as predict creates its --output folder), or a
    folder (existing, or written with a trailing slash), which gets the default name; without it, next to
    the checkpoint."""
    default = Path(args.ckpt).with_suffix(".onnx" if args.format == "onnx" else ".pt")
    if not args.output:
        return default
    out = Path(args.output)
    if out.is_dir() or args.output.endswith(("/", os.sep)):  # a folder, existing or meant (a trailing slash)
        out = out / default.name
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file where a folder of the path should be
        raise SemisegError(f"--output {args.output}: cannot create the folder {out.parent} ({e.strerror})") from None
    return out


def run(args) -> int:
    from semiseg.export import export_model
    from semiseg.inference import load

    predictor = load(args.ckpt)
    d = predictor.cfg.data
    size = tuple(args.input_size) if args.input_size else (d.resize or d.crop_size,) * 2
    out = output_file(args)
    diffs = export_model(predictor, args.format, out, size)
    checked = ", ".join(f"{h}x{w} {v:.1e}" for (h, w), v in diffs.items())
    print(f"exported {args.format} to {out}, any input size; largest difference from eager at {checked}")
    return 0
