"""Loaders that yield one labeled and one (or two) unlabeled batches per step.

The labeled list is cycled to the unlabeled length, so one epoch consumes every unlabeled image
once (UniMatch's ``nsample``). :class:`EpochSampler` is a distributed sampler that reshuffles every
epoch and can start mid-epoch, so a resumed run sees exactly the batches an uninterrupted run would.
"""
from __future__ import annotations

import math
import signal
from typing import Dict, Iterator, List, Optional, Tuple, TypedDict

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from semiseg.data.dataset import collate_train
from semiseg.errors import SemisegError


class EpochSampler(Sampler):
    """Per-epoch permutation of ``n`` items, repeated to ``length`` and sharded over ranks.

    Yields ``(index, epoch)`` so the dataset can seed augmentation per sample and epoch.
    """

    def __init__(self, n: int, length: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.seed, self.rank, self.world = n, seed, rank, world
        self.per_rank = math.ceil(length / world)
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def indices(self, epoch: int) -> List[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        total = self.per_rank * self.world
        reps = math.ceil(total / self.n)
        idx = torch.cat([torch.randperm(self.n, generator=g) for _ in range(reps)])[:total]
        return idx[self.rank :: self.world].tolist()

    def __iter__(self) -> Iterator:
        for i in self.indices(self.epoch)[self.start :]:
            yield (i, self.epoch)

    def __len__(self) -> int:
        return self.per_rank - self.start


class Batch(TypedDict, total=False):
    """One training step's inputs, as :class:`TrainBatches` builds them (:func:`step_key` alone names the
    keys; a method reads the ones it needs)."""

    x: torch.Tensor  # labeled images (B, 3, H, W), normalised
    y: torch.Tensor  # their masks (B, H, W) long, data.ignore_index where unlabeled
    text: List[str]  # referring segmentation: each labeled sample's expression
    u: torch.Tensor  # unlabeled images, the weak view (B, 3, H, W)
    u_ignore: torch.Tensor  # (B, H, W) bool: padding of the unlabeled crops
    u_hidden: torch.Tensor  # (B, H, W) their hidden masks, for logging only (data.hidden_labels)
    u_props: List[torch.Tensor]  # per image, (K, H, W) bool mask proposals (data.proposal_store)
    u_text: List[str]  # referring segmentation: each unlabeled sample's expression
    mix: torch.Tensor  # the CutMix partner stream (method.mix=batch), with mix_ignore and mix_props
    mix_ignore: torch.Tensor
    mix_props: List[torch.Tensor]


def step_key(stream: str, field: str) -> str:
    """A dataset item's field in the step's batch: the labeled stream's image and mask are ``x`` and ``y``,
    another stream's image is the stream's name and its other fields ``<stream>_<field>``."""
    if stream == "x":
        return {"image": "x", "mask": "y"}.get(field, field)
    return stream if field == "image" else f"{stream}_{field}"


class TrainBatches:
    """Infinite stream of step batches (:class:`Batch`): ``x``, ``y`` plus ``u``, ``u_ignore`` (and the partner
    ``mix``); a referring batch adds the expressions (``text``, ``u_text``).

    ``streams`` maps a stream name to its dataset and seed; the labeled stream ``x`` is cycled to ``length``
    samples per epoch. ``skip(n)`` positions the stream after ``n`` batches without loading them (resume).
    """

    def __init__(self, streams: Dict[str, Tuple[Dataset, int]], length: int, batch: int, rank: int, world: int,
                 num_workers: int, device, source: str = "the training lists") -> None:
        self.batch, self.device = batch, device
        self.steps_per_epoch = math.ceil(length / world) // self.batch
        if self.steps_per_epoch == 0:
            raise SemisegError(f"{length} training samples ({source}, which sets the epoch) over {world} process(es) "
                               f"do not fill one batch of {self.batch} (lower data.batch_size)")
        self.streams: Dict[str, tuple] = {}
        for name, (ds, s) in streams.items():
            sampler = EpochSampler(len(ds), length, s, rank, world)
            # its own generator: creating an iterator draws a base seed, and from the global RNG that draw
            # would shift every later random number of a run resumed mid-epoch (dropout, augmentation)
            loader = DataLoader(ds, batch_size=self.batch, sampler=sampler, drop_last=True, collate_fn=collate_train,
                                generator=torch.Generator().manual_seed(s),
                                num_workers=num_workers, persistent_workers=num_workers > 0,
                                worker_init_fn=leave_stopping_to_the_main_process,
                                pin_memory=torch.device(device).type == "cuda")
            self.streams[name] = (sampler, loader)
        self.consumed, self.skipped = 0, 0
        self._iters: Optional[Dict[str, Iterator]] = None

    def skip(self, n: int) -> None:
        self.consumed, self._iters = n, None

    def _start_epoch(self) -> None:
        epoch, offset = divmod(self.consumed, self.steps_per_epoch)
        for sampler, _ in self.streams.values():
            sampler.set_epoch(epoch, offset * self.batch)
        self._iters = {k: iter(loader) for k, (_, loader) in self.streams.items()}

    def __next__(self) -> Batch:
        while True:
            batch = self._next()
            if batch is not None:
                return batch

    def _fetch(self, it):
        try:
            return next(it)
        except SemisegError as e:  # raised in a worker: keep the message, drop the worker traceback
            msg = str(e)
            raise SemisegError(msg.split("SemisegError: ")[-1].strip() if "SemisegError: " in msg else msg) from None

    def _next(self) -> Optional[Batch]:
        """One step's batches; None when a stream's batch was emptied by skipped samples."""
        if self._iters is None or self.consumed % self.steps_per_epoch == 0:
            self._start_epoch()
        out = {}
        fetched = {name: self._fetch(it) for name, it in self._iters.items()}
        self.consumed += 1
        self.skipped += sum(int(b["skipped"]) for b in fetched.values())
        if any("image" not in b for b in fetched.values()):
            return None
        n = min(b["image"].shape[0] for b in fetched.values())  # skips can shorten a stream: keep them aligned
        for name, b in fetched.items():
            out.update({step_key(name, k): v[:n] for k, v in b.items() if k not in ("skipped", "index")})
        return Batch(**{k: self._to_device(v) for k, v in out.items()})

    def _to_device(self, v):
        nb = self.device.type == "cuda"
        if torch.is_tensor(v):
            return v.to(self.device, non_blocking=nb)
        return [t.to(self.device, non_blocking=nb) if torch.is_tensor(t) else t for t in v]  # proposals; text

    def __iter__(self):
        return self

    def close(self) -> None:
        """Shut the loader workers down now (what an iterator's finaliser would do at some later point)."""
        for it in (self._iters or {}).values():
            shutdown = getattr(it, "_shutdown_workers", None)  # multi-process iterators only
            if shutdown is not None:
                shutdown()
        self._iters = None


def leave_stopping_to_the_main_process(worker_id: int) -> None:
    """Loader workers ignore SIGTERM/SIGINT. Ctrl-C, ``kill -- -PGID`` and ``pkill -f`` reach them as well
    as the trainer; a worker that died of it would crash the step the trainer is finishing before it
    writes its stop checkpoint. The DataLoader shuts its workers down, and they exit by themselves if
    the main process is killed outright (they watch their parent)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


__all__ = ["Batch", "EpochSampler", "TrainBatches", "leave_stopping_to_the_main_process", "step_key"]
