"""``semiseg export CKPT --format onnx|torchscript``: export the student and check it against eager."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch

from semiseg.errors import SemisegError
from semiseg.inference import Predictor


TOLERANCE = 1e-4


def check_sizes(size: Tuple[int, int]) -> List[Tuple[int, int]]:
    """The export size and three others, larger, smaller and odd, non-square: a model exported with one
    input's shapes baked in fails or drifts at some of them."""
    h, w = size
    return [(h, w), (h + h // 3, w + w // 3), (h // 2 + 3, (2 * w) // 3), (h + 7, w // 2 + 1)]


def export_model(predictor: Predictor, fmt: str, out: Path, size: Tuple[int, int]) -> Dict[Tuple[int, int], float]:
    """Export with dynamic height and width, re-run the exported model at several sizes and return the
    largest |exported - eager| at each; refuse (and remove the file) where one exceeds the tolerance."""
    model = predictor.model.float().eval()
    x = torch.randn(1, 3, *size)
    if fmt == "torchscript":
        with torch.no_grad():
            torch.jit.trace(model, x).save(str(out))
        exported = torch.jit.load(str(out))
        run = lambda inp: exported(inp).detach().numpy()  # noqa: E731
    elif fmt == "onnx":
        try:
            import onnxruntime as ort
        except ImportError:
            raise SemisegError("ONNX export needs the export extra: pip install 'semiseg[export]'") from None
        axes = {0: "batch", 2: "height", 3: "width"}
        torch.onnx.export(model, (x,), str(out), input_names=["image"], output_names=["logits"], opset_version=17,
                          dynamic_axes={"image": axes, "logits": axes}, dynamo=False)
        sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        run = lambda inp: sess.run(None, {"image": inp.numpy()})[0]  # noqa: E731
    else:
        raise SemisegError(f"unknown export format {fmt!r}; valid: onnx, torchscript")
    diffs = {}
    for hw in check_sizes(size):
        inp = torch.randn(1, 3, *hw)
        with torch.no_grad():
            ref = model(inp).numpy()
        try:
            got = run(inp)
        except Exception as e:  # noqa: BLE001 (the runtime's own error types)
            out.unlink(missing_ok=True)
            raise SemisegError(f"the {fmt} export fails on a {hw[0]}x{hw[1]} input: {str(e).splitlines()[0]}") from None
        diffs[hw] = float(np.abs(got - ref).max()) if got.shape == ref.shape else float("inf")
        if diffs[hw] > TOLERANCE:
            out.unlink(missing_ok=True)
            raise SemisegError(f"the {fmt} export differs from the model by {diffs[hw]:.2e} on a {hw[0]}x{hw[1]} "
                               f"input (tolerance {TOLERANCE:g}); no file written")
    return diffs
