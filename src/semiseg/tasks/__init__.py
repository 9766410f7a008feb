"""Registered tasks (importing this package registers all of them): semantic segmentation and referring
expression segmentation. See :mod:`semiseg.tasks.base` for what a task owns."""
from semiseg.config import Config
from semiseg.tasks.registry import TASKS
from semiseg.tasks.referring.task import ReferringTask  # noqa: F401  (registers)
from semiseg.tasks.semantic.task import SemanticTask  # noqa: F401  (registers)


def build_task(cfg, rank: int = 0, world: int = 1):
    return TASKS.get(cfg.task)(cfg, rank, world)


def task_named(name=None):
    """The task class of that name; unnamed (checkpoints, configs and run folders written before tasks were
    recorded), the schema's default."""
    return TASKS.get(name or Config.task)


def task_of(state: dict):
    """The task class of a loaded checkpoint."""
    return task_named(state.get("task"))


__all__ = ["TASKS", "build_task", "task_named", "task_of"]
