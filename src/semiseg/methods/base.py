"""The method contract: ``training_step(batch, step) -> dict`` with ``"loss"`` and logged terms."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from semiseg.methods.teacher import EMATeacher
from semiseg.models.weights import load_weights

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@dataclass
class MethodConfig:
    """Knobs every method has; subclasses add their own fields."""


def typed(section: Any, schema: type) -> Any:
    """The config's ``method`` section (checked against ``schema`` when the config loaded) as an instance of
    the method's ``Config`` dataclass: typed fields instead of an untyped mapping; ``name`` stays outside."""
    values = OmegaConf.to_container(section) if isinstance(section, DictConfig) else dict(section)
    values.pop("name", None)
    return schema(**values)


class Method(ABC):
    """A semi-supervised recipe. The trainer owns the loop, optimizer, AMP and DDP; a method owns its
    forward passes, pseudo-labels, losses and (optionally) a teacher.

    Flags the trainer reads instead of method names, set on the class and changed by an instance where
    its config decides them: ``tasks`` (the ``task`` values it trains), ``unlabeled_streams`` (0: labeled
    only; 1: one unlabeled batch; 2: plus a CutMix partner batch, which ``mix`` decides), ``needs_proposals``
    (a refiner in the config turns it on).
    A method with an EMA teacher sets ``self.teacher``; the trainer evaluates, saves and restores it.
    """

    Config = MethodConfig
    tasks = ("semantic",)  # the tasks whose batches and models its step knows (config.task)
    unlabeled_streams = 0
    needs_proposals = False

    def __init__(self, cfg: Any, model: nn.Module, criterion: nn.Module, num_classes: int,
                 student: Optional[nn.Module] = None, norm: Tuple[Sequence[float], Sequence[float]] = IMAGENET) -> None:
        self.cfg = typed(cfg, self.Config)  # the ``method`` section as this method's own dataclass
        self.needs_proposals = self.proposals_needed(self.cfg)
        self.model = model  # possibly DDP-wrapped: call it for forward passes
        self.student = student if student is not None else model  # unwrapped: for the teacher and state
        self.criterion = criterion
        self.num_classes = num_classes
        self.mean, self.std = norm  # the data normalisation, for photometric augmentation
        self.teacher: Optional[EMATeacher] = None
        self.iters, self.steps_per_epoch = 0, 1  # the schedule, told by the trainer (set_schedule)
        self.notes: List[str] = []  # what a user should know about this method on this data (the trainer logs it)

    @classmethod
    def proposals_needed(cls, cfg: Any) -> bool:
        """Whether a run with this ``method`` section reads mask proposals, known before anything is built
        (``semiseg compare`` makes the store first)."""
        return cls.needs_proposals

    def set_schedule(self, iters: int, steps_per_epoch: int) -> None:
        """The run's length in optimizer steps and one epoch's: a teacher whose averaging horizon is given
        as a share of the schedule (``ema_horizon``) takes its momentum from it here."""
        self.iters, self.steps_per_epoch = iters, max(1, steps_per_epoch)
        horizon = getattr(self.cfg, "ema_horizon", 0.0)
        if self.teacher is not None and horizon > 0:
            self.teacher.momentum = 1 - 1 / max(1.0, horizon * iters)

    @abstractmethod
    def training_step(self, batch: Dict[str, torch.Tensor], step: int) -> Dict[str, torch.Tensor]:
        """One step's forward passes and losses; ``batch`` holds ``x, y`` and ``u, u_ignore`` (+ ``mix``)."""

    def after_step(self, step: int) -> None:
        """Called after each optimizer step (EMA updates live here)."""

    def state_dict(self) -> Dict[str, Any]:
        return {"teacher": self.teacher.module.state_dict()} if self.teacher is not None else {}

    def load_state_dict(self, state: Dict[str, Any], source: str = "the method state") -> None:
        """Restore what :meth:`state_dict` saved (the resume path); a teacher that does not fit names ``source``."""
        if self.teacher is not None:
            load_weights(self.teacher.module, state.get("teacher", {}), source, "teacher")
