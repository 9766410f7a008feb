"""``semiseg export CKPT --format onnx|torchscript``: export the student and check it against eager."""
from __future__ import annotations

from pathlib import Path
from typing import Tuple

import numpy as np
import torch

from semiseg.errors import SemisegError
from semiseg.inference import Predictor


def export_model(predictor: Predictor, fmt: str, out: Path, size: Tuple[int, int]) -> float:
    """Export, re-run the exported model on a random input, return the largest |exported - eager|."""
    model = predictor.model.float().eval()
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        ref = model(x).numpy()
    if fmt == "torchscript":
        with torch.no_grad():
            traced = torch.jit.trace(model, x)
        traced.save(str(out))
        got = torch.jit.load(str(out))(x).detach().numpy()
    elif fmt == "onnx":
        try:
            import onnxruntime as ort
        except ImportError:
            raise SemisegError("ONNX export needs the export extra: pip install 'semiseg[export]'") from None
        torch.onnx.export(model, (x,), str(out), input_names=["image"], output_names=["logits"], opset_version=17,
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
        sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        got = sess.run(None, {"image": x.numpy()})[0]
    else:
        raise SemisegError(f"unknown export format {fmt!r}; valid: onnx, torchscript")
    return float(np.abs(got - ref).max())


def export_from_cli(args) -> int:
    predictor = Predictor.from_checkpoint(args.ckpt)
    d = predictor.cfg.data
    size = tuple(args.input_size) if args.input_size else (d.resize or d.crop_size,) * 2
    out = Path(args.output) if args.output else Path(args.ckpt).with_suffix(".onnx" if args.format == "onnx" else ".pt")
    diff = export_model(predictor, args.format, out, size)
    print(f"exported {args.format} to {out}; largest difference from eager on a {size[0]}x{size[1]} input: {diff:.2e}")
    return 0
