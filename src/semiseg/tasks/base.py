"""What a task is: everything that differs between two kinds of segmentation, behind one interface.

The trainer, ``semiseg eval``/``predict``/``export``/``report`` and ``bench quality`` hold a task and call
it; none of them knows a task by its name or its metric by its name. A task owns:

- its data: training streams (:meth:`Task.train_batches`) and the validation loader;
- its model (:meth:`Task.model_from`, also from a checkpoint alone) and the optimizer's LR groups;
- its evaluator (:meth:`Task.evaluate`) and headline score (``key``: what picks ``best.pth``);
- its predictor (``Predictor``: a checkpoint applied to images, with the task's extra ``inputs``);
- its report sections and suite-table columns.

Two scaffolds are shared by every task: :class:`Predictor` (checkpoint -> model -> masks and PNGs) and
:func:`eval_loop` (eval mode, no grad, autocast, restore); a task fills in only what it scores or draws.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torch import nn

from semiseg.config import from_dict
from semiseg.data.io import mask_image, output_names, read_image, save_png
from semiseg.errors import SemisegError
from semiseg.models.weights import load_weights


def no_reduce(t: torch.Tensor) -> torch.Tensor:
    """One process's sums are all the sums (the trainer passes the all-reduce of its process group)."""
    return t


@torch.no_grad()
def eval_loop(model: nn.Module, loader, device: torch.device, amp_dtype, score: Callable[[dict], None]) -> None:
    """Every validation batch through ``score`` with the model in eval mode, under autocast when ``amp_dtype``
    is set; the model's mode is restored afterwards (validation runs in the middle of training)."""
    was_training = model.training
    model.eval()
    autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()
    try:
        with autocast:
            for batch in loader:
                score(batch)
    finally:
        model.train(was_training)


def check_device(device: str) -> torch.device:
    """The device, or one line saying which ones this machine has (torch's own errors are an assertion
    deep in ``.to()`` for CUDA without CUDA, and a parse error naming every device type it knows)."""
    have = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise SemisegError(f"device {device!r} is not a device name; this machine has: {', '.join(have)}") from None
    if dev.type not in ("cpu", "cuda"):
        raise SemisegError(f"device {device}: semiseg runs on cpu or cuda; this machine has: {', '.join(have)}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SemisegError(f"device {device}: CUDA is not available here; this machine has: {', '.join(have)}")
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise SemisegError(f"device {device}: no such GPU; this machine has: {', '.join(have)}")
    return dev


class Predictor:
    """A trained model plus what it needs to read raw images: the config (normalisation, resize), class
    names and palette. A task's predictor adds :meth:`predict` (one image and the task's ``inputs``, e.g.
    an expression, -> (H, W) uint8 class ids at the image's size)."""

    inputs: Dict[str, str] = {}  # what predict needs besides the image: keyword argument -> what it is

    def __init__(self, model: nn.Module, cfg, class_names: List[str], palette: List[List[int]],
                 device: str = "cpu") -> None:
        dev = check_device(device)
        self.model, self.cfg = model.to(dev).eval(), cfg
        self.class_names, self.palette, self.device = class_names, palette, dev

    def predict(self, image, **inputs) -> np.ndarray:
        raise NotImplementedError

    def colorize(self, pred: np.ndarray) -> np.ndarray:
        pal = np.zeros((256, 3), np.uint8)
        pal[: len(self.palette)] = np.asarray(self.palette, np.uint8)
        return pal[pred]

    def overlay(self, image: np.ndarray, pred: np.ndarray, opacity: float = 0.5) -> np.ndarray:
        return (image * (1 - opacity) + self.colorize(pred) * opacity).astype(np.uint8)

    def index_png(self, pred: np.ndarray, **options) -> np.ndarray:
        """What index/ holds (class ids; a task may map them to another id scheme on request)."""
        return pred

    def predict_files(self, inputs: Sequence[Path], out: Path, opacity: float = 0.5, options: Optional[dict] = None,
                      **model_inputs) -> List[Path]:
        """index/ (class ids), color/ and overlay/ PNGs per input file; ``options`` go to :meth:`predict` and
        :meth:`index_png` as the task takes them (slide mode, label ids)."""
        options = dict(options or {})
        self.check_options(options)
        written: List[Path] = []
        for f, name in zip(inputs, output_names(list(inputs))):
            try:
                img = read_image(f)
            except SemisegError as e:  # what is already there, so that a rerun need not redo it blind
                done = f"{len(written)} of {len(inputs)} images were written to {out} before it"
                raise SemisegError(f"{e}; {done}") from None
            pred = self.predict(img, **model_inputs, **self.predict_options(options))
            if not written:  # made with the first result: a failed first file leaves no empty folders
                for sub in ("index", "color", "overlay"):
                    (out / sub).mkdir(parents=True, exist_ok=True)
            save_png(mask_image(self.index_png(pred, **options)), out / "index" / name)
            save_png(Image.fromarray(self.colorize(pred)), out / "color" / name)
            save_png(Image.fromarray(self.overlay(img, pred, opacity)), out / "overlay" / name)
            written.append(out / "overlay" / name)
        return written

    # export: what the network reads and which module takes it (semiseg export traces it)
    def export_module(self) -> nn.Module:
        return self.model

    def export_inputs(self, size: Tuple[int, int], seed: int = 0) -> Dict[str, torch.Tensor]:
        """Example inputs by name, the image (1, 3, H, W) first."""
        return {"image": torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(seed))}

    def export_metadata(self) -> Dict[str, str]:
        """What the exported file's user needs beyond the image's preprocessing (ONNX metadata strings)."""
        return {}

    def check_options(self, options: dict) -> None:
        """Refuse, before any file is written, an option this predictor cannot honour."""

    def predict_options(self, options: dict) -> dict:
        return {}


class Task:
    """The interface the engine and the commands call (see the module's docstring). Subclasses set ``key``
    and ``Predictor`` and implement the data, model and evaluation methods."""

    key = "mIoU"  # the headline score: picks best.pth, gains and gap closed in suite tables
    Predictor = Predictor
    by_teacher = False  # predictions and suite scores from the EMA teacher where a run has one (SemiRES's rule)

    def __init__(self, cfg, rank: int = 0, world: int = 1) -> None:
        self.cfg, self.rank, self.world = cfg, rank, world
        self.class_names: List[str] = []
        self.palette: List[List[int]] = []
        self.notes: List[str] = []  # how the data was read where the task chose (the trainer logs them)

    # config and checkpoints ------------------------------------------------------------------------------
    @classmethod
    def check_config(cls, cfg, origin: Dict[str, str]) -> None:
        """Check the task's own names in the config (configure.check_config calls it)."""

    @classmethod
    def checkpoint_meta(cls, state: dict, cfg, path: str) -> Dict[str, Any]:
        """What the model needs from a checkpoint besides its config: class names, palette, ..."""
        meta = state.get("meta") or {}
        if not meta.get("class_names"):
            raise SemisegError(f"checkpoint {path} has no class names (written by an older semiseg?)")
        return meta

    @classmethod
    def predictor(cls, state: dict, path: str = "the checkpoint", device: str = "cpu",
                  teacher: Optional[bool] = None) -> Predictor:
        """A loaded checkpoint (``semiseg.inference.load`` reads the file) as this task's predictor; ``teacher``:
        the EMA teacher's weights instead of the student's (an error where the run trained none); unset, the
        task's rule (``by_teacher``)."""
        if teacher is None:
            teacher = cls.by_teacher and "teacher" in state.get("method", {})
        cfg = from_dict(state["config"], f"the config in {path}")
        cfg.model.pretrained = ""  # weights come from the checkpoint, nothing else is read
        meta = cls.checkpoint_meta(state, cfg, path)
        if teacher and "teacher" not in state.get("method", {}):
            raise SemisegError(f"checkpoint {path} has no teacher (its method trains none)")
        model = cls.model_from(cfg, meta)
        load_weights(model, state["method"]["teacher"] if teacher else state["model"], path,
                     "teacher" if teacher else "model")
        return cls.Predictor(model, cfg, list(meta["class_names"]), meta["palette"], device)

    def meta(self) -> Dict[str, Any]:
        """What a checkpoint needs besides the config to be used on its own."""
        return {"class_names": self.class_names, "palette": self.palette}

    # model and optimizer ---------------------------------------------------------------------------------
    @classmethod
    def model_from(cls, cfg, meta: Dict[str, Any]) -> nn.Module:
        raise NotImplementedError

    def build_model(self, meta: Optional[Dict[str, Any]] = None) -> nn.Module:
        return self.model_from(self.cfg, {**self.meta(), **(meta or {})})

    def lr_groups(self, model: nn.Module) -> List[Tuple[list, float]]:
        """(parameters, LR scale) beside the backbone's group (scale 1), e.g. the head at ``train.lr_multi``."""
        raise NotImplementedError

    # data and evaluation ---------------------------------------------------------------------------------
    def train_batches(self, unlabeled_streams: int, device):
        raise NotImplementedError

    def class_pixels(self):
        """Labeled pixels per class over the training masks (class balancing); None where the task has none."""
        return None

    def val_loader(self):
        raise NotImplementedError

    def evaluate(self, net: nn.Module, loader, device, amp=None,
                 reduce: Callable[[torch.Tensor], torch.Tensor] = no_reduce) -> Tuple[Dict[str, float], str]:
        """Scalars to log (unprefixed; ``key`` among them) and a table to print. ``reduce`` adds up the
        processes' sums (each process scores its shard of the validation split)."""
        raise NotImplementedError

    # suites and reports ----------------------------------------------------------------------------------
    @classmethod
    def headline(cls, e: Dict[str, float]) -> float:
        """The score of one finished evaluation that gains are measured in: ``key``, the teacher's where
        ``by_teacher`` and the run has one."""
        return e.get(f"teacher_{cls.key}", e[cls.key]) if cls.by_teacher else e[cls.key]

    @classmethod
    def table_scores(cls, e: Dict[str, float]) -> Dict[str, float]:
        """A suite table's score columns for one finished evaluation (NaN where a run has none)."""
        return {f"{cls.key} (student)": e[cls.key], f"{cls.key} (teacher)": e.get(f"teacher_{cls.key}", float("nan"))}

    @classmethod
    def report_sections(cls, ckpt: Path, max_images: int, draw) -> List[str]:
        """HTML sections about a checkpoint's predictions; ``draw`` has the report's renderers (``image_table``,
        ``heatmap``, ``load`` a checkpoint file), which live above the tasks."""
        return []

    @classmethod
    def comparison_sections(cls, ckpts: List[Tuple[str, Path]], max_images: int, draw) -> List[str]:
        """HTML sections comparing the runs of a suite (``ckpts``: a label and a checkpoint per run)."""
        return []
