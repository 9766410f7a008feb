"""``semiseg export CKPT --format onnx|torchscript``: export the student and check it against eager.

An ONNX file also carries what ``predict`` does around the network, as metadata (``metadata_props``):
the resize rule, mean, std, class names, palette and the semiseg version. :func:`onnx_input` and
:func:`onnx_mask` apply it with numpy and Pillow alone (no torch, no semiseg needed where the file runs),
so an exported model's masks are ``predict``'s.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch
from PIL import Image

from semiseg.errors import SemisegError
from semiseg.files import temporary_beside
from semiseg.tasks.base import Predictor
from semiseg.version import __version__


TOLERANCE = 1e-4


def check_sizes(size: Tuple[int, int]) -> List[Tuple[int, int]]:
    """The export size and three others, larger, smaller and odd, non-square: a model exported with one
    input's shapes baked in fails or drifts at some of them."""
    h, w = size
    return [(h, w), (h + h // 3, w + w // 3), (h // 2 + 3, (2 * w) // 3), (h + 7, w // 2 + 1)]


def export_model(predictor: Predictor, fmt: str, out: Path, size: Tuple[int, int]) -> Dict[Tuple[int, int], float]:
    """Export with dynamic height and width, re-run the exported model at several sizes and return the
    largest |exported - eager| at each; refuse (and remove the file) where one exceeds the tolerance. The
    task's predictor says what the network reads (``export_inputs``: the image, and e.g. an expression's
    word ids) and which module takes them (``export_module``). The file is written beside ``out`` and renamed
    over it once checked: a refusal or a kill keeps an earlier export under that name."""
    tmp = temporary_beside(out)
    try:
        diffs = _export_checked(predictor, fmt, tmp, size)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return diffs


def _export_checked(predictor: Predictor, fmt: str, out: Path, size: Tuple[int, int]) -> Dict[Tuple[int, int], float]:
    model = predictor.export_module().float().eval()
    example = predictor.export_inputs(size)
    names = list(example)
    if fmt == "torchscript":
        with torch.no_grad():
            torch.jit.trace(model, tuple(example.values())).save(str(out))
        exported = torch.jit.load(str(out))
        run = lambda inp: exported(*inp.values()).detach().numpy()  # noqa: E731
    elif fmt == "onnx":
        try:
            import onnxruntime as ort
        except ImportError:
            raise SemisegError("ONNX export needs the export extra: pip install 'semiseg[export]'") from None
        axes = {0: "batch", 2: "height", 3: "width"}
        dynamic = {n: ({0: "batch"} if n != "image" else axes) for n in names}
        torch.onnx.export(model, tuple(example.values()), str(out), input_names=names, output_names=["logits"],
                          opset_version=17, dynamic_axes={**dynamic, "logits": axes}, dynamo=False)
        write_metadata(out, {**preprocessing(predictor), **predictor.export_metadata()})
        sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        run = lambda inp: sess.run(None, {k: v.numpy() for k, v in inp.items()})[0]  # noqa: E731
    else:
        raise SemisegError(f"unknown export format {fmt!r}; valid: onnx, torchscript")
    diffs = {}
    for hw in check_sizes(size):
        inp = predictor.export_inputs(hw, seed=hw[0] * 1000 + hw[1])
        with torch.no_grad():
            ref = model(*inp.values()).numpy()
        try:
            got = run(inp)
        except Exception as e:  # noqa: BLE001 (the runtime's own error types)
            raise SemisegError(f"the {fmt} export fails on a {hw[0]}x{hw[1]} input: {str(e).splitlines()[0]}") from None
        diffs[hw] = float(np.abs(got - ref).max()) if got.shape == ref.shape else float("inf")
        if diffs[hw] > TOLERANCE:
            raise SemisegError(f"the {fmt} export differs from the model by {diffs[hw]:.2e} on a {hw[0]}x{hw[1]} "
                               f"input (tolerance {TOLERANCE:g}); no file written")
    return diffs


def preprocessing(predictor: Predictor) -> Dict[str, str]:
    """What ``predict`` does around the network (whole-image mode), as the strings ONNX metadata holds."""
    d = predictor.cfg.data
    return {"semiseg_version": __version__,
            "input": "image: (1, 3, H, W) float32, RGB",
            "resize": str(d.resize),  # the long side, bilinear, aspect kept, sides rounded; 0: the image's own size
            "crop_size": str(d.crop_size),  # the training crop (the window of predict's slide mode)
            "pixel_scale": "0-1",  # mean and std are in [0, 1] units: x = (pixel / 255 - mean) / std
            "mean": json.dumps([float(v) for v in d.mean]), "std": json.dumps([float(v) for v in d.std]),
            "output": "logits: (1, C, h, w) at the input's size; bilinear (align corners) to the image's size, "
                      "then argmax over C",
            "class_names": json.dumps(list(predictor.class_names)),
            "palette": json.dumps([list(map(int, c)) for c in predictor.palette])}


def write_metadata(path: Path, meta: Dict[str, str]) -> None:
    try:
        import onnx
    except ImportError:
        raise SemisegError("ONNX export needs the export extra: pip install 'semiseg[export]'") from None
    model = onnx.load(str(path))
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


def onnx_input(image: np.ndarray, meta: Dict[str, str]) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> the exported model's input, prepared as ``predict`` prepares it, from the
    file's metadata (``sess.get_modelmeta().custom_metadata_map``) alone."""
    if int(meta["resize"]):
        h, w = image.shape[:2]
        scale = int(meta["resize"]) / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
    mean, std = (np.asarray(json.loads(meta[k]), np.float32) for k in ("mean", "std"))
    x = (image.astype(np.float32) / 255 - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def onnx_mask(logits: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """The model's (1, C, h, w) logits -> (H, W) uint8 class ids at the image's ``size`` (H, W): bilinear
    with aligned corners in float32, the arithmetic of ``predict``'s resize, then argmax."""
    def taps(n_in: int, n_out: int):
        scale = np.float32(n_in - 1) / np.float32(n_out - 1) if n_out > 1 else np.float32(0)
        pos = np.arange(n_out, dtype=np.float32) * scale
        lo = np.minimum(pos.astype(np.int64), n_in - 1)
        return lo, np.minimum(lo + 1, n_in - 1), pos - lo.astype(np.float32)

    (y0, y1, wy), (x0, x1, wx) = taps(logits.shape[2], size[0]), taps(logits.shape[3], size[1])
    rows = logits[0].astype(np.float32)
    top, bottom = rows[:, y0], rows[:, y1]
    top = (1 - wx) * top[:, :, x0] + wx * top[:, :, x1]
    bottom = (1 - wx) * bottom[:, :, x0] + wx * bottom[:, :, x1]
    return ((1 - wy)[:, None] * top + wy[:, None] * bottom).argmax(0).astype(np.uint8)
