"""``semiseg predict CKPT --input GLOB --output DIR``: class-id, colour and overlay PNGs per image; with
``--text``, a referring segmenter's referent masks (the checkpoint's task says which)."""
from __future__ import annotations

from pathlib import Path

from semiseg.engine.checkpoint import load_checkpoint
from semiseg.errors import SemisegError
from semiseg.inference import Predictor, expand_inputs, predict_files


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
    files = expand_inputs(args.input)
    out = output_folder(args.output)
    ckpt = load_checkpoint(args.ckpt)
    res = ckpt.get("task") == "res"
    if res != bool(args.text):
        raise SemisegError(f"{args.ckpt} is a referring segmentation checkpoint: give the expression with --text" if res
                           else f"--text goes with referring segmentation checkpoints (task: res); {args.ckpt} is not one")
    if res:
        from semiseg.res.predict import predict_res

        predict_res(ckpt, files, args.text, out, args.opacity)
        print(f"{len(files)} image(s): referent masks in {args.output}/index, overlays in {args.output}/overlay")
        return 0
    predictor = Predictor.from_checkpoint(args.ckpt, device=args.device)
    predict_files(predictor, files, out, args.opacity, args.mode, args.label_ids)
    print(f"{len(files)} image(s): class ids in {args.output}/index, colours in {args.output}/color, "
          f"overlays in {args.output}/overlay")
    return 0
