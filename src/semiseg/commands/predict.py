"""``semiseg predict CKPT --input GLOB --output DIR``: class-id, colour and overlay PNGs per image; with
``--text``, a referring segmenter's referent masks (the checkpoint's task says what its model reads)."""
from __future__ import annotations

import argparse
from pathlib import Path

from semiseg.errors import SemisegError

HELP = "segment images with a checkpoint"


def share(text: str) -> float:
    """A number in [0, 1] (argparse names the option and prints the reason on one line)."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not in [0, 1]")
    return value


def add_arguments(p, verb) -> None:
    p.add_argument("ckpt", help="a checkpoint written by semiseg train")
    p.add_argument("--input", required=True, help="an image file, a folder or a glob")
    p.add_argument("--output", required=True, help="folder for index/, color/ and overlay/ PNGs")
    p.add_argument("--opacity", type=share, default=0.5, help="colour weight in the overlay, 0-1")
    p.add_argument("--mode", choices=["whole", "slide"], default="whole", help="whole image or sliding window")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--text", help="the referring expression, for referring segmentation checkpoints (task: res)")
    p.add_argument("--label-ids", action="store_true",
                   help="Cityscapes: write labelIds (what its benchmark server takes) instead of train ids")


def output_folder(path: str) -> Path:
    """--output is a folder, created (parents too) when missing, as export creates its file's folder; a file
    there, or in place of a folder above it, is refused before any work."""
    out = Path(path)
    existing = next(p for p in (out, *out.parents) if p.exists())  # '.' or '/' at the latest
    if existing == out and not out.is_dir():
        raise SemisegError(f"--output {path} is a file; it must be a folder (predict writes index/, color/ and "
                           "overlay/ into it)")
    if not existing.is_dir():
        raise SemisegError(f"--output {path}: {existing} is a file, not a folder")
    return out


def run(args) -> int:
    from semiseg.data.io import expand_inputs
    from semiseg.inference import load

    files = expand_inputs(args.input)
    out = output_folder(args.output)
    predictor = load(args.ckpt, device=args.device)
    given = {"text": args.text} if args.text else {}
    for name, what in predictor.inputs.items():  # the checkpoint's task says what its model reads
        if name not in given:
            raise SemisegError(f"{args.ckpt}'s model reads {what} besides the image: give {what} with --{name}")
    for name in set(given) - set(predictor.inputs):
        raise SemisegError(f"--{name} is not read by {args.ckpt}'s model (task: {predictor.cfg.task}); leave it out")
    predictor.predict_files(files, out, args.opacity, {"mode": args.mode, "label_ids": args.label_ids}, **given)
    print(f"{len(files)} image(s): class ids in {args.output}/index, colours in {args.output}/color, "
          f"overlays in {args.output}/overlay")
    return 0
