"""Checkpoints: atomic writes (``semiseg.files``), unwrapped state dicts, ``weights_only`` loading.

A checkpoint holds model, teacher (via the method state), optimizer, scaler, step, best metrics, RNG
states and the resolved config, so ``--resume`` restores everything and ``predict`` needs nothing else.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Dict

import numpy as np
import torch
from torch import nn

from semiseg.config import Config
from semiseg.errors import SemisegError
from semiseg.files import atomic_file, temporary_beside


def save_checkpoint(path: str | Path, state: Dict[str, Any]) -> None:
    """Write to a temp file in the same folder, fsync, then rename: a kill never leaves a torn file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as f:
        torch.save(state, f)
    remove_torn_temporaries(path.parent, path.name)


def remove_torn_temporaries(folder: Path, name: str) -> None:
    """Delete the half-written temporaries (``.NAME.tmpPID``) that killed writers left behind. Only one
    process writes a run's checkpoints: right after its own write finished, any other temporary is stale."""
    for stale in Path(folder).glob(f".{name}.tmp*"):
        if stale != temporary_beside(Path(folder) / name):
            stale.unlink(missing_ok=True)


def load_checkpoint(path: str | Path, settings: bool = False) -> Dict[str, Any]:
    """A checkpoint, read without running code; ``settings``: it must hold its run's config (predict, eval and
    export build the model from it)."""
    path = Path(path)
    if path.is_dir():
        raise SemisegError(f"checkpoint {path} is a folder, not a file (a run's best.pth or latest.pth is)")
    if not path.is_file():
        raise SemisegError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise SemisegError(f"checkpoint {path} is empty (0 bytes): a copy or a download that did not finish")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        why = (str(e).strip().splitlines() or [e.__class__.__name__])[0]
        raise SemisegError(f"checkpoint {path} cannot be loaded safely (weights_only: a torn file, or one that "
                           f"would run code): {why}") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise SemisegError(f"checkpoint {path} is not a semiseg checkpoint (no 'model' entry)")
    if settings and not isinstance(ckpt.get("config"), dict):
        raise SemisegError(f"checkpoint {path} holds no settings (its 'config' entry): the model it holds cannot be "
                           f"built")
    return ckpt


def rng_state() -> Dict[str, Any]:
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    v, internal, gauss = state["python"]
    random.setstate((v, tuple(internal), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def process_state(nets: Dict[str, nn.Module]) -> Dict[str, Any]:
    """What differs between the processes of a group: their RNG streams (augmentation, dropout) and the
    buffers (BatchNorm statistics) of ``nets``; a torchrun restart gives each process its own back."""
    return {"rng": rng_state(), **{k: {n: b.detach().cpu() for n, b in net.named_buffers()} for k, net in nets.items()}}


def restore_process_state(state: Dict[str, Any], nets: Dict[str, nn.Module]) -> None:
    set_rng_state(state["rng"])
    for key, net in nets.items():
        buffers = dict(net.named_buffers())
        with torch.no_grad():
            for name, value in state.get(key, {}).items():
                buffers[name].copy_(value)


def refuse_another_run(ckpt: Dict[str, Any], cfg, path: Path) -> None:
    """``--resume`` continues the run that wrote the checkpoint; another method or task starts from its
    weights with ``--load-from``, instead of rewriting it with half its state (a teacher dropped)."""
    saved = ckpt.get("config") or {}
    was = {"task": ckpt.get("task", saved.get("task", Config.task)), "method": (saved.get("method") or {}).get("name"),
           "train.optimizer": (saved.get("train") or {}).get("optimizer")}
    now = {"task": cfg.task, "method": cfg.method.name, "train.optimizer": cfg.train.optimizer}
    for key in was:
        if was[key] is not None and was[key] != now[key]:
            raise SemisegError(f"{path} is a {key} {was[key]!r} run and the config says {now[key]!r}: --resume "
                               f"continues the same run; to start {now[key]!r} from its weights use --load-from {path}")


RUN_FILES = ("latest.pth", "best.pth")


def refuse_to_overwrite(work_dir: Path, force: bool) -> None:
    """A new run never replaces another run's checkpoints unless asked: ``--force`` starts over (the old
    checkpoints are removed now, the logs are started anew), ``--resume`` continues."""
    held = [work_dir / n for n in RUN_FILES if (work_dir / n).is_file()]
    if not held:
        return
    if not force:
        try:
            step = f" at step {load_checkpoint(held[0])['step']}"
        except SemisegError:
            step = ""
        raise SemisegError(f"{work_dir} holds a run ({held[0].name}{step}); continue it with --resume, start over "
                           "with --force, or choose another --work-dir")
    if os.environ.get("RANK", "0") == "0":  # before the process group exists: rank 0 by its variable
        for path in held:
            path.unlink(missing_ok=True)
