"""Apply a checkpoint to images: ``semiseg.load(ckpt).predict(image)`` and ``semiseg predict``.

The checkpoint's task gives the predictor (``semiseg.tasks.base.Predictor``): its ``predict(image, ...)``
returns class ids at the image's own size, ``predict_files`` writes index, colour and overlay PNGs. The
checkpoint's embedded config is all that is needed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from semiseg.engine.checkpoint import load_checkpoint
from semiseg.tasks import task_of
from semiseg.tasks.base import Predictor


def load(path: str | Path, device: str = "cpu", teacher: Optional[bool] = None) -> Predictor:
    """The checkpoint at ``path`` as its task's predictor; ``teacher``: the EMA teacher's weights (unset: the
    task's rule, the student for semantic segmentation, the teacher where there is one for referring)."""
    state = load_checkpoint(path, settings=True)
    return task_of(state).predictor(state, str(path), device, teacher)
