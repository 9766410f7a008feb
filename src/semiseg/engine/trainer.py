"""One training loop for every method, on CPU, one GPU, or many processes under torchrun.

    python -m semiseg train CONFIG            # one device
    torchrun --nproc-per-node N -m semiseg train CONFIG   # the same code, DDP (gloo on CPU)

The loop owns the optimizer, poly LR, autocast, gradient accumulation, DDP, checkpoints, evaluation
and logging; the method owns its forward passes and losses. The teacher is never DDP-wrapped.
"""
from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from semiseg.config import as_dict, changed_settings, describe_changes, save_config, to_yaml
from semiseg.engine import dist
from semiseg.engine.checkpoint import (load_checkpoint, process_state, refuse_another_run, refuse_to_overwrite,
                                      restore_process_state, rng_state, save_checkpoint)
from semiseg.engine.lock import WorkDirLock
from semiseg.engine.logging import RunLogger
from semiseg.engine.optim import build_optimizer, poly_lr, set_lr
from semiseg.engine.precision import amp_dtype, device_name, precision_name
from semiseg.errors import SemisegError
from semiseg.losses import build_criterion
from semiseg.methods import METHODS
from semiseg.methods.teacher import teacher_horizon_note
from semiseg.models.weights import load_weights
from semiseg.tasks import build_task
from semiseg.version import __version__


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def set_backend_flags(device: torch.device, deterministic: bool) -> None:
    """On CUDA: cuDNN's autotuner (it picks the fastest convolution for each input shape) and TF32 matmuls
    and convolutions (Ampere and later: fp32 storage, 10-bit mantissa products), unless
    ``train.deterministic``, which turns all three off."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cuda.matmul.allow_tf32 = not deterministic
        torch.backends.cudnn.allow_tf32 = not deterministic


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """DDP without per-forward buffer broadcast (UniMatch's broadcast_buffers=False): BN statistics stay
    per process, and methods may run several forwards before one backward."""
    import inspect

    kw = {"device_ids": [device.index]} if device.type == "cuda" else {}
    if "forward_sync_buffers" in inspect.signature(DDP).parameters:
        kw["forward_sync_buffers"] = False
    else:
        kw["broadcast_buffers"] = False
    return DDP(model, **kw)


class Trainer:
    def __init__(self, cfg, work_dir: Optional[str] = None, resume: Optional[str] = None,
                 load_from: Optional[str] = None, force: bool = False) -> None:
        self.cfg = cfg
        if work_dir:
            cfg.work_dir = work_dir
        self.work_dir = Path(cfg.work_dir)
        made = [p for p in (self.work_dir, *self.work_dir.parents) if not p.exists()]  # what the lock creates
        # rank 0 by its variable: the process group does not exist yet, and one lock stands for the group
        self.lock = WorkDirLock(self.work_dir).acquire() if os.environ.get("RANK", "0") == "0" else None
        try:
            self._setup(cfg, resume, load_from, force)
        except BaseException:
            self.close()
            for folder in made:  # a refused start leaves no empty folder it made (leaf first; any content stays)
                try:
                    folder.rmdir()
                except OSError:
                    break
            raise

    def _setup(self, cfg, resume: Optional[str], load_from: Optional[str], force: bool) -> None:
        if not resume:
            refuse_to_overwrite(self.work_dir, force)
        t = cfg.train
        self.ctx = dist.init_distributed()
        if t.threads and self.ctx.device.type == "cpu":
            torch.set_num_threads(t.threads)
        seed_everything(t.seed, t.deterministic)  # identical initial weights (and teacher) on every process
        self.task = build_task(cfg, self.ctx.rank, self.ctx.world)
        self.names = self.task.class_names
        self.num_classes = len(self.names)
        self.device = self.ctx.device
        self.amp = amp_dtype(t.amp, self.device)
        set_backend_flags(self.device, t.deterministic)

        model = self.task.build_model()
        if load_from:
            load_weights(model, load_checkpoint(load_from)["model"], load_from)
        if self.device.type == "cuda" and self.ctx.world > 1:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # SyncBN fails on CPU; useless on 1 GPU
        model = model.to(self.device)
        if t.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.wrapped = wrap_ddp(model, self.device) if self.ctx.world > 1 else model
        method_cls = METHODS.get(cfg.method.name)
        seed_everything(t.seed + self.ctx.rank, t.deterministic)  # per-process augmentation streams
        pixels = self.task.class_pixels() if t.class_balance != "none" else None
        criterion = build_criterion(t, cfg.data.ignore_index, self.num_classes, pixels)
        self.method = method_cls(cfg.method, self.wrapped, criterion, self.num_classes, student=model,
                                 norm=(tuple(cfg.data.mean), tuple(cfg.data.std)))
        if t.compile:  # after the method copied any teacher: the student alone is compiled, in place (same keys)
            model.compile()
        if getattr(self.method, "needs_proposals", False) and not cfg.data.proposal_store:
            raise SemisegError(f"method {cfg.method.name} refines pseudo-labels with mask proposals: make a store with "
                               "`semiseg proposals CONFIG --out DIR` and set data.proposal_store=DIR")
        self.optimizer = build_optimizer(t, model, self.task.lr_groups(model))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == torch.float16)
        self.batches = self.task.train_batches(self.method.unlabeled_streams, self.device)
        self.val_loader = self.task.val_loader()
        epoch = self.batches.steps_per_epoch // t.accum_steps
        if t.epochs:
            t.iters = t.epochs * epoch
        t.eval_interval, t.ckpt_interval = t.eval_interval or epoch, t.ckpt_interval or epoch
        self.method.set_schedule(t.iters, epoch)
        self.step, self.best, self.bad_steps, self.skipped = 0, {}, 0, 0
        if resume:
            self._resume(self.work_dir / "latest.pth" if resume == "auto" else Path(resume))
        self.log = RunLogger(self.work_dir, self.ctx.is_main, t.iters, self.step)
        self.stopped = False

    # ---------------------------------------------------------------- state
    def state(self) -> Dict[str, Any]:
        return {"model": self.model.state_dict(), "method": self.method.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(), "step": self.step,
                "best": self.best, "skipped": self.skipped, "rng": rng_state(), "config": as_dict(self.cfg),
                "task": self.cfg.task, "meta": self.task.meta(),
                "batches_consumed": self.batches.consumed, "version": __version__}

    def per_process_nets(self) -> Dict[str, nn.Module]:
        """The networks whose BatchNorm statistics each process keeps for itself (as UniMatch's DDP does)."""
        return {"model": self.model, **({"teacher": self.method.teacher.module} if self.method.teacher else {})}

    def _resume(self, path: Path) -> None:
        ckpt = load_checkpoint(path)
        refuse_another_run(ckpt, self.cfg, path)
        changes = describe_changes(changed_settings(ckpt.get("config") or {}, as_dict(self.cfg)))
        if not ckpt.get("config") and self.ctx.is_main:  # made elsewhere from our weights: say it, not "no change"
            print(f"note: {path} holds no settings: what changed since it was saved cannot be checked", flush=True)
        elif changes and self.ctx.is_main:  # allowed (a longer schedule, a switch turned on), never silent
            print(f"note: settings changed since {path} was saved: {'; '.join(changes)}", flush=True)
        load_weights(self.model, ckpt["model"], path)
        self.method.load_state_dict(ckpt["method"], path)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.step, self.best, self.skipped = ckpt["step"], ckpt["best"], ckpt.get("skipped", 0)
        self._restore_process_state(ckpt, path)
        # skipped (non-finite) steps consumed batches too: continue from the data position, not the step
        self.batches.skip(ckpt.get("batches_consumed", self.step * self.cfg.train.accum_steps))

    def _restore_process_state(self, ckpt: Dict[str, Any], path: Path) -> None:
        """Each process its own saved state; a group of another size (the documented exception) keeps the
        checkpoint's weights and statistics and draws fresh random streams per process."""
        saved = ckpt.get("processes") or [{"rng": ckpt["rng"]}]  # older checkpoints: rank 0's RNG alone
        if len(saved) == self.ctx.world:
            restore_process_state(saved[self.ctx.rank], self.per_process_nets())
            return
        if self.ctx.is_main and (self.ctx.world > 1 or len(saved) > 1):
            print(f"note: {path} was written by {len(saved)} process(es), this run has {self.ctx.world}: the "
                  "weights continue, the random streams start anew (not an exact resume)", flush=True)
        seed_everything(self.cfg.train.seed + 1_000_003 * self.step + self.ctx.rank, self.cfg.train.deterministic)

    def save(self, name: str) -> None:
        processes = dist.gather_objects(process_state(self.per_process_nets()))  # every process, before rank 0 writes
        if self.ctx.is_main:
            save_checkpoint(self.work_dir / name, {**self.state(), "processes": processes})
        dist.barrier()

    def close(self) -> None:
        """Stop the loader workers, leave the process group and the work_dir; safe after a failed start. The
        workers ignore SIGTERM (a signal to the process group must not kill them mid-step), so they are shut
        down here: left to the interpreter's exit, multiprocessing would SIGTERM them and wait forever."""
        if getattr(self, "batches", None) is not None:
            self.batches.close()
        dist.cleanup()
        if self.lock is not None:
            self.lock.release()

    # ---------------------------------------------------------------- loop
    def autocast(self):
        """The run's autocast context (train.amp resolved for the device); no-op in fp32."""
        return torch.autocast(self.device.type, dtype=self.amp) if self.amp else contextlib.nullcontext()

    def train_step(self) -> Optional[Dict[str, torch.Tensor]]:
        """One optimizer step over ``accum_steps`` micro-batches; the logged terms as 0-d float64 tensors (on
        the device: converted to numbers once per log interval, not a host sync per term and micro-step)."""
        t = self.cfg.train
        set_lr(self.optimizer, poly_lr(t.lr, self.step, t.iters, t.poly_power))
        logs: Dict[str, torch.Tensor] = {}
        no_sync = getattr(self.wrapped, "no_sync", None)  # DDP: all-reduce the gradients on the last micro-step
        for i in range(t.accum_steps):
            batch = next(self.batches)
            if t.channels_last:
                batch = {k: v.contiguous(memory_format=torch.channels_last) if torch.is_tensor(v) and v.dim() == 4
                         else v for k, v in batch.items()}
            accumulate = no_sync is not None and i < t.accum_steps - 1
            with no_sync() if accumulate else contextlib.nullcontext():
                with self.autocast():
                    out = self.method.training_step(batch, self.step)
                loss = out["loss"]
                if not dist.all_true(bool(torch.isfinite(loss.detach())), self.device):
                    self.optimizer.zero_grad(set_to_none=True)
                    return None
                self.scaler.scale(loss / t.accum_steps).backward()
            for k, v in out.items():  # tensors or plain numbers (e.g. a refiner's miss rate)
                v = torch.as_tensor(v.detach() if torch.is_tensor(v) else v, dtype=torch.float64)
                logs[k] = logs.get(k, 0.0) + v / t.accum_steps
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.method.after_step(self.step)
        return logs

    def run(self) -> Dict[str, float]:
        t, c = self.cfg.train, self.cfg
        if self.ctx.is_main:
            save_config(c, self.work_dir / "config.yaml")
        self.log.info(to_yaml(c))
        gb = c.data.batch_size * t.accum_steps * self.ctx.world
        self.log.info(f"world size {self.ctx.world}, device {self.device}, amp {self.amp}, global batch {gb}"
                      + (f" (the config's LR was set for {t.base_batch_size})" if t.base_batch_size and
                         t.base_batch_size != gb else "")
                      + f", {self.batches.steps_per_epoch} steps/epoch, start at step {self.step}")
        # each start and resume: a table of this run's scores can say where, and in what, they were computed
        self.log.record("setup", self.step, {"device": device_name(self.device), "precision": precision_name(self.amp)})
        if self.method.teacher is not None:
            self.log.info(teacher_horizon_note(self.method.teacher.momentum, t.iters))
        if t.class_balance != "none":
            weights = ", ".join(f"{n} {w:.2f}" for n, w in zip(self.names, self.method.criterion.weights.tolist()))
            self.log.info(f"class weights of the labeled loss ({t.class_balance} frequency): {weights}")
        for note in self.task.notes + self.method.notes:
            self.log.info(f"note: {note}")
        if self.step >= t.iters:
            self.log.info(f"nothing to train: the run is at step {self.step} and train.iters is {t.iters} "
                          "(raise train.iters to continue it)")
        handled = (signal.SIGTERM, signal.SIGINT)
        old = {sig: signal.signal(sig, self._on_signal) for sig in handled} if self._main_thread() else {}
        self.model.train()
        final: Dict[str, float] = {}
        t0, start, sums, counts = time.time(), self.step, {}, {}
        while self.step < t.iters and not self.stopped:
            logs = self.train_step()
            if logs is None:
                self.bad_steps += 1
                self.skipped += 1
                self.log.info(f"step {self.step}: non-finite loss, step skipped ({self.bad_steps} in a row)")
                if self.bad_steps >= t.max_bad_steps:
                    self.save("latest.pth")
                    raise SemisegError(f"{self.bad_steps} consecutive non-finite losses at step {self.step}; stopping "
                                       "(lower train.lr, or try train.amp=none)")
                continue
            self.bad_steps = 0
            self.step += 1
            for k, v in logs.items():  # averaged over the log interval, so no step goes unlogged; NaN (a
                finite = torch.isfinite(v)  # per-class diagnostic without pixels this step) counts as no value
                sums[k] = sums.get(k, 0.0) + torch.where(finite, v, 0.0)
                counts[k] = counts.get(k, 0) + finite
            if self.step % t.log_interval == 0 or self.step == t.iters:
                means = {self._name(k): float(v / counts[k]) for k, v in sums.items() if counts[k]}
                skipped = {"data_skipped": self.batches.skipped, "steps_skipped": self.skipped}
                self.log.progress(self.step, {**means, "lr": self.optimizer.param_groups[0]["lr"],
                                              "s_per_step": (time.time() - t0) / max(1, self.step - start),
                                              **{k: v for k, v in skipped.items() if v}})
                sums, counts = {}, {}
            if self.step % t.eval_interval == 0 or self.step == t.iters:
                final = self.validate()
            if self.step % t.ckpt_interval == 0 or self.step == t.iters:
                self.save("latest.pth")
        if self.stopped:
            self.save("latest.pth")
            self.log.info(f"stopped by signal at step {self.step}; checkpoint written, resume with --resume")
        for sig, handler in old.items():
            signal.signal(sig, handler)
        self.log.close()
        return final

    def _name(self, key: str) -> str:
        """``mask_ratio_c3`` -> ``mask_ratio/<class 3's name>`` (likewise ``sel_precision_c3``, ``pl_recall_c3``)
        for the logs."""
        stem, _, idx = key.rpartition("_c")
        if stem in ("mask_ratio", "sel_precision", "pl_recall") and idx.isdigit():
            return f"{stem}/{self.names[int(idx)]}"
        return key

    @staticmethod
    def _main_thread() -> bool:
        import threading

        return threading.current_thread() is threading.main_thread()

    def _on_signal(self, signum, frame) -> None:
        self.stopped = True  # SIGTERM/SIGINT: finish the current step, write a checkpoint, exit cleanly

    def validate(self) -> Dict[str, float]:
        nets = {"": self.model}
        if self.method.teacher is not None:
            nets["teacher_"] = self.method.teacher
        scalars: Dict[str, float] = {}
        for prefix, net in nets.items():
            scores, table = self.task.evaluate(net, self.val_loader, self.device, self.amp, dist.all_reduce_sum)
            scalars.update({f"{prefix}{k}": v for k, v in scores.items()})
            self.log.info(f"{prefix or 'student_'}eval at step {self.step}:\n" + table)
            key, score = f"{prefix}{self.task.key}", scores[self.task.key]
            if score > self.best.get(key, -1.0):
                self.best[key] = score
                self.best[f"{prefix}step"] = self.step
                if not prefix:
                    self.save("best.pth")
        self.log.write("eval", self.step, scalars)
        return scalars


def train(cfg, work_dir: Optional[str] = None, resume: Optional[str] = None, load_from: Optional[str] = None,
          force: bool = False) -> Dict[str, float]:
    """One run from Python (no report: ``semiseg train`` writes it); the last evaluation's scalars."""
    trainer = Trainer(cfg, work_dir, resume, load_from, force)
    try:
        return trainer.run()
    finally:
        trainer.close()

