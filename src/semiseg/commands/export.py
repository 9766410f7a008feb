"""``semiseg export CKPT --format onnx|torchscript``: the student as a file that runs at any input size."""
from __future__ import annotations

from pathlib import Path

from semiseg.export import export_model
from semiseg.inference import Predictor


def run(args) -> int:
    predictor = Predictor.from_checkpoint(args.ckpt)
    d = predictor.cfg.data
    size = tuple(args.input_size) if args.input_size else (d.resize or d.crop_size,) * 2
    out = Path(args.output) if args.output else Path(args.ckpt).with_suffix(".onnx" if args.format == "onnx" else ".pt")
    diffs = export_model(predictor, args.format, out, size)
    checked = ", ".join(f"{h}x{w} {v:.1e}" for (h, w), v in diffs.items())
    print(f"exported {args.format} to {out}, any input size; largest difference from eager at {checked}")
    return 0
