"""Registered tasks (importing this package registers all of them): semantic segmentation and referring
expression segmentation. See :mod:`semiseg.tasks.base` for what a task owns."""
from semiseg.tasks.registry import TASKS
from semiseg.tasks.referring.task import ReferringTask  # noqa: F401  (registers)
from semiseg.tasks.semantic.task import SemanticTask  # noqa: F401  (registers)


def build_task(cfg, rank: int = 0, world: int = 1):
    return TASKS.get(cfg.task)(cfg, rank, world)


def task_of(state: dict):
    """The task class of a loaded checkpoint (those written before tasks were recorded are semantic)."""
    return TASKS.get(state.get("task", "semantic"))


__all__ = ["TASKS", "build_task", "task_of"]
