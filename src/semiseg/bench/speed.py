"""``semiseg bench speed CONFIG``: is this config fast enough, and is the data loader keeping up?

Reports medians over repeated steps after warm-up (this machine's timings are noisy):
- training step time with pre-loaded batches (compute only) and with the real loader, the two taken in turn,
- training images per second (labeled + unlabeled per optimizer step),
- data loader throughput on its own, as a multiple of what training consumes,
- inference images per second (eval mode, no grad, the training crop),
- peak memory (process RSS on CPU, allocated memory on CUDA).
"""
from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import resource
import statistics
import tempfile
import time
from typing import Callable, Dict, List

import torch



def _median_time(fn: Callable[[], object], steps: int, warmup: int, sync: Callable[[], None]) -> List[float]:
    return _interleaved_times([fn], steps, warmup, sync)[0]


def _interleaved_times(fns: List[Callable[[], object]], steps: int, warmup: int,
                       sync: Callable[[], None]) -> List[List[float]]:
    """The times of each of ``fns``, called in turn step by step: a change of load on the machine (another
    process starting or pausing) falls on all of them alike, so that their medians compare."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    sync()
    times: List[List[float]] = [[] for _ in fns]
    for _ in range(steps):
        for fn, out in zip(fns, times):
            t = time.perf_counter()
            fn()
            sync()
            out.append(time.perf_counter() - t)
    return times


def _child(queue, fn, args) -> None:
    try:
        queue.put(("ok", fn(*args)))
    except BaseException as e:  # the parent raises it
        queue.put(("error", e))


def in_fresh_process(fn: Callable, *args):
    """``fn(*args)`` in a new process (spawned: its own peak memory, no state of this one; not a daemon, so
    that it may start data-loader workers), its result or its exception back here."""
    from semiseg.errors import SemisegError

    ctx = multiprocessing.get_context("spawn")
    queue = ctx.SimpleQueue()
    proc = ctx.Process(target=_child, args=(queue, fn, args))
    proc.start()
    proc.join()
    if queue.empty():
        raise SemisegError(f"the measuring process died (exit code {proc.exitcode})")
    kind, value = queue.get()
    if kind == "error":
        raise value
    return value


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


@contextlib.contextmanager
def bench_trainer(cfg):
    """A trainer for timing the config's real step: a throwaway work_dir, a schedule long enough to keep
    the poly LR away from zero, its log closed afterwards."""
    from semiseg.engine.trainer import Trainer

    cfg.train.iters = 10**9
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, work_dir=tmp)
        try:
            yield trainer
        finally:
            trainer.log.close()


def measure(cfg, steps: int = 20, warmup: int = 5) -> Dict[str, float]:
    with bench_trainer(cfg) as trainer:
        dev = trainer.device
        sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
        real = trainer.batches
        cached = [next(real) for _ in range(4)]
        streams = 1 + trainer.method.unlabeled_streams
        per_step_images = cfg.data.batch_size * min(streams, 2) * cfg.train.accum_steps

        preloaded = itertools.cycle(cached)

        def step_on(batches):
            def step():
                trainer.batches = batches
                trainer.train_step()
            return step

        compute, with_loader = _interleaved_times([step_on(preloaded), step_on(real)], steps, warmup, sync)
        loader = _median_time(lambda: next(real), steps * 2, warmup, sync)

        model = trainer.model.eval()
        x = cached[0]["x"]
        with torch.no_grad(), trainer.autocast():
            infer = _median_time(lambda: model(x), steps, warmup, sync)
    step_c, step_l, load = (statistics.median(v) for v in (compute, with_loader, loader))
    batches_per_step = cfg.train.accum_steps
    return {
        "method": cfg.method.name,
        "step_s": round(step_c, 4),
        "step_with_loader_s": round(step_l, 4),
        "train_images_per_s": round(per_step_images / step_c, 1),
        "loader_batches_per_s": round(1 / load, 1),
        "loader_headroom": round((1 / load) / (batches_per_step / step_c), 2),
        "inference_images_per_s": round(x.shape[0] / statistics.median(infer), 1),
        "peak_memory_mib": round(peak_memory_mib(dev), 0),
    }


def step_seconds(cfg, steps: int = 3, warmup: int = 1) -> float:
    """The median time of one training step of ``cfg`` as it trains (its own loader), after ``warmup``
    steps: what a schedule's estimate multiplies."""
    with bench_trainer(cfg) as trainer:
        dev = trainer.device
        sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
        return statistics.median(_median_time(trainer.train_step, steps, warmup, sync))


class _StandIn(torch.nn.Module):
    """A network of negligible cost behind the model contract (a 1x1 convolution; FP branches by dropout,
    complementary dropout ignored), so that a method's real step costs only what is not the network."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.head = torch.nn.Conv2d(3, num_classes, 1)

    def forward(self, x, fp_branches: int = 0, comp_drop: bool = False):
        out = self.head(x)
        if fp_branches:
            return out, [torch.nn.functional.dropout2d(out, 0.5, training=True) for _ in range(fp_branches)]
        return out


def measure_overhead(cfg, steps: int = 20, warmup: int = 3) -> Dict[str, float]:
    """What one step of the config's method costs besides its network, measured on the method's own
    ``training_step`` through the trainer's ``train_step`` (strong views, CutMix, selection, refinement,
    losses, bookkeeping) with the network replaced by a 1x1-convolution stand-in; and, for a method with
    an EMA teacher, one update of the real teacher."""
    from semiseg.methods import METHODS

    with bench_trainer(cfg) as trainer:
        cached = [next(trainer.batches) for _ in range(4)]
        parts = {}
        real = trainer.method
        if real.teacher is not None:
            parts["ema"] = statistics.median(_median_time(lambda: real.teacher.update(trainer.model, 10), steps,
                                                          warmup, lambda: None))
        nil = _StandIn(trainer.num_classes)
        trainer.method = METHODS.get(cfg.method.name)(cfg.method, nil, real.criterion, trainer.num_classes, student=nil,
                                                      norm=(real.mean, real.std))
        trainer.method.set_schedule(cfg.train.iters, 10**6)  # past any warm-up: every loss term is computed
        trainer.step = 10**6
        trainer.optimizer = torch.optim.SGD([{"params": list(nil.parameters()), "lr_scale": 0.0}], lr=0.0)
        trainer.batches = itertools.cycle(cached)
        parts["step_without_network"] = statistics.median(_median_time(trainer.train_step, steps, warmup, lambda: None))
    return parts


def profile_step(cfg, top: int = 15, steps: int = 3) -> str:
    """Where a training step's time goes: the ``top`` operators by self CPU time (per input shapes, forward
    and backward apart), averaged over ``steps`` steps after one untimed one, as a Markdown table."""
    from torch.profiler import ProfilerActivity, profile

    with bench_trainer(cfg) as trainer:
        trainer.batches = itertools.cycle([next(trainer.batches) for _ in range(2)])
        trainer.train_step()
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for _ in range(steps):
                trainer.train_step()
    events = sorted(prof.key_averages(group_by_input_shape=True), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events)
    lines = [f"| operator ({cfg.method.name}) | input shapes | ms per step | share |", "| --- | --- | --- | --- |"]
    for e in events[:top]:
        shapes = ", ".join(str(tuple(s)) for s in e.input_shapes if s)[:90]
        lines.append(f"| {e.key} | {shapes} | {e.self_cpu_time_total / 1000 / steps:.1f} | "
                     f"{100 * e.self_cpu_time_total / total:.1f}% |")
    lines.append(f"| all operators | | {total / 1000 / steps:.1f} | 100.0% |")  # what each share is a part of
    return "\n".join(lines)


def speed_table(results: List[Dict[str, float]]) -> str:
    base = results[0]["step_s"]
    lines = ["| config | step (s) | vs first | step with loader (s) | train img/s | loader headroom | infer img/s | "
             "peak MiB |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        lines.append(f"| {r.get('config', r['method'])} | {r['step_s']:.3f} | {r['step_s'] / base:.2f}x | "
                     f"{r['step_with_loader_s']:.3f} | "
                     f"{r['train_images_per_s']} | {r['loader_headroom']}x | {r['inference_images_per_s']} | "
                     f"{r['peak_memory_mib']:.0f} |")
    return "\n".join(lines)
