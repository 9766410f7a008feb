"""Loaders that yield one labeled and one (or two) unlabeled batches per step.

The labeled list is cycled to the unlabeled length, so one epoch consumes every unlabeled image
once (UniMatch's ``nsample``). :class:`EpochSampler` is a distributed sampler that reshuffles every
epoch and can start mid-epoch, so a resumed run sees exactly the batches an uninterrupted run would.
"""
from __future__ import annotations

import math
import signal
import sys
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from semiseg.data.dataset import SegDataset, collate_train, collate_val
from semiseg.data.io import is_binary_255, read_mask
from semiseg.data.presets import Layout, resolve_layout
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


class TrainBatches:
    """Infinite stream of step batches: ``{"x", "y"}`` plus ``{"u", "u_ignore"}`` (and ``"mix"``); a referring
    batch adds the expressions (``text``, ``u_text``).

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

    def __next__(self) -> dict:
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

    def _next(self) -> Optional[dict]:
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
            b = {k: v[:n] for k, v in b.items() if k not in ("skipped", "index")}
            if name == "x":  # x, y (and the expressions, text)
                out.update({{"image": "x", "mask": "y"}.get(k, k): v for k, v in b.items()})
            else:  # u, u_ignore, u_hidden, u_props, u_text
                out.update({name if k == "image" else f"{name}_{k}": v for k, v in b.items()})
        return {k: self._to_device(v) for k, v in out.items()}

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


def semantic_batches(cfg, layout: Layout, rank: int, world: int, unlabeled_streams: int, device) -> TrainBatches:
    """The semantic task's streams: labeled ``x``, then ``u`` and the CutMix partner ``mix`` as the method asks;
    the split's files, masks and proposals checked before any step."""
    if layout.labeled is None:
        raise SemisegError(no_split_found(layout.root, cfg.data.split, "labeled"))
    if unlabeled_streams and layout.unlabeled is None:
        raise SemisegError(f"method {cfg.method.name} needs unlabeled data: "
                           + no_split_found(layout.root, cfg.data.split, "unlabeled"))
    if unlabeled_streams and not layout.unlabeled:
        raise SemisegError(f"method {cfg.method.name} needs unlabeled data, but "
                           f"{layout.sources.get('unlabeled', 'the unlabeled list')} holds no images")
    d, seed = cfg.data, cfg.train.seed
    if d.hidden_labels and unlabeled_streams:
        unmasked = [s.image for s in layout.unlabeled if s.mask is None]
        if unmasked:
            raise SemisegError(f"data.hidden_labels is on, but {len(unmasked)} of the {len(layout.unlabeled)} "
                               f"unlabeled samples in {layout.sources.get('unlabeled', 'the unlabeled split')} "
                               f"have no mask, e.g. {unmasked[:3]}: set data.hidden_labels=false (it only logs "
                               "selection precision where the unlabeled truth is known, as on the scenes)")
    check_files(layout, ["labeled"] + (["unlabeled"] if unlabeled_streams else []), d.hidden_labels)
    check_binary_masks(layout)
    store = None
    if d.proposal_store and unlabeled_streams:
        from semiseg.pseudo.store import ProposalStore

        store = ProposalStore(d.proposal_store)
        store.verify([s.image for s in layout.unlabeled], layout.sources.get("unlabeled", "the unlabeled split"))
    streams = {"x": (SegDataset(layout.labeled, layout, d, "train_l", seed=seed), seed)}
    for k, name in enumerate(["u", "mix"][:unlabeled_streams]):
        s = seed + 7919 * (k + 1)
        streams[name] = (SegDataset(layout.unlabeled, layout, d, "train_u", seed=s,
                                    with_hidden=d.hidden_labels and name == "u", proposals=store), s)
    kind = "unlabeled" if unlabeled_streams else "labeled"
    return TrainBatches(streams, len(getattr(layout, kind)), d.batch_size, rank, world, d.num_workers, device,
                        source=layout.sources.get(kind, f"the {kind} list"))


def no_split_found(root, split: str, kind: str) -> str:
    """Why a list is missing, naming data.split and the splits that exist when its folder is absent."""
    folder = root / "splits" / split
    if folder.is_dir():
        return f"no {kind} list found: {folder / (kind + '.txt')} does not exist (set data.{kind} or data.split)"
    found = sorted(p.name for p in (root / "splits").iterdir() if p.is_dir()) if (root / "splits").is_dir() else []
    return (f"data.split={split}: no folder {folder}; splits under {root / 'splits'}: {', '.join(found)}" if found
            else f"no {kind} list found under {root} (set data.{kind}, or data.split to a folder of {root / 'splits'})")


def check_files(layout: Layout, kinds, unlabeled_masks: bool = False) -> None:
    """Every listed image and mask exists, checked at start (a truncated or stale split file fails here,
    with counts, instead of hours into training)."""
    for kind in kinds:
        samples = getattr(layout, kind) or []
        masks = kind != "unlabeled" or unlabeled_masks
        paths = [p for s in samples for p in ((s.image, s.mask) if masks else (s.image,)) if p]
        missing = [p for p in paths if not (layout.root / p).is_file()]
        if missing:
            raise SemisegError(f"{len(missing)} of the {len(paths)} files listed in {layout.sources.get(kind, kind)} "
                               f"do not exist under {layout.root}, e.g. {missing[:3]}")


def check_binary_masks(layout: Layout) -> None:
    """The trap ``data check`` flags, looked for at the start of training too: labeled masks saved as 0/255
    train on background only (255 is the ignore label). All of them: refused before any step; some (a mask
    may hold background and ignore alone): a warning. The labeled list is the small one here: cheap to read."""
    n = len(layout.class_names)

    def binary_255(mask: str) -> bool:
        try:
            return is_binary_255(np.unique(read_mask(layout.root / mask)), n)
        except SemisegError:  # an unreadable mask is data.on_error's to handle, when it is loaded
            return False

    binary = [s.mask for s in layout.labeled if s.mask and binary_255(s.mask)]
    if not binary:
        return
    what = (f"{len(binary)} of the {len(layout.labeled)} labeled masks hold only 0 and 255, e.g. {binary[:3]}: "
            "255 is the ignore label, so their foreground is never learned; save them as 0/1 (`semiseg data check` "
            "lists them)")
    if len(binary) == len(layout.labeled):
        raise SemisegError(what)
    print(f"warning: {what}", file=sys.stderr, flush=True)


def leave_stopping_to_the_main_process(worker_id: int) -> None:
    """Loader workers ignore SIGTERM/SIGINT. Ctrl-C, ``kill -- -PGID`` and ``pkill -f`` reach them as well
    as the trainer; a worker that died of it would crash the step the trainer is finishing before it
    writes its stop checkpoint. The DataLoader shuts its workers down, and they exit by themselves if
    the main process is killed outright (they watch their parent)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def verify_val(ds: SegDataset, source: str, on_error: str) -> None:
    """Decode every validation image and mask before training starts: a bad file found at the first
    evaluation would end the run after it had trained, before that step's checkpoint. ``stop`` lists the
    bad files and stops; ``skip`` drops them from the validation set and says how many."""
    bad = []
    for i in range(len(ds)):
        try:
            ds.load(i, need_mask=True)
        except SemisegError as e:
            bad.append((i, str(e)))
    if not bad:
        return
    listed = "\n  ".join(msg for _, msg in bad[:5]) + (f"\n  ... and {len(bad) - 5} more" if len(bad) > 5 else "")
    if on_error != "skip":
        raise SemisegError(f"{len(bad)} of the {len(ds)} samples of {source} cannot be used (data.on_error=skip "
                           f"drops them):\n  {listed}")
    drop = {i for i, _ in bad}
    ds.samples = [smp for i, smp in enumerate(ds.samples) if i not in drop]
    print(f"warning: {len(bad)} of the validation samples dropped (data.on_error=skip); scores are over the "
          f"other {len(ds.samples)}:\n  {listed}", file=sys.stderr, flush=True)


def build_val_loader(cfg, layout: Layout, rank: int = 0, world: int = 1) -> DataLoader:
    if layout.val is None:
        raise SemisegError(f"no validation split found under {layout.root} (set data.val or add splits/val.txt)")
    samples = layout.val[: cfg.eval.max_images] if cfg.eval.max_images else layout.val
    ds = SegDataset(samples[rank::world], layout, cfg.data, "val")
    return DataLoader(ds, batch_size=cfg.eval.batch_size, shuffle=False, num_workers=min(cfg.data.num_workers, 2),
                      collate_fn=collate_val, worker_init_fn=leave_stopping_to_the_main_process)


__all__ = ["EpochSampler", "TrainBatches", "build_val_loader", "resolve_layout", "semantic_batches"]
