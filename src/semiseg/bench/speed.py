"""``semiseg bench speed CONFIG``: is this config fast enough, and is the data loader keeping up?

Reports medians over repeated steps after warm-up (this machine's timings are noisy):
- training step time with pre-loaded batches (compute only) and with the real loader,
- training images per second (labeled + unlabeled per optimizer step),
- data loader throughput on its own, as a multiple of what training consumes,
- inference images per second (eval mode, no grad, the training crop),
- peak memory (process RSS on CPU, allocated memory on CUDA).
"""
from __future__ import annotations

import itertools
import json
import resource
import statistics
import tempfile
import time
from typing import Callable, Dict, List

import torch

from semiseg.config import load_config


def _median_time(fn: Callable[[], object], steps: int, warmup: int, sync: Callable[[], None]) -> List[float]:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return times


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def measure(cfg, steps: int = 20, warmup: int = 5) -> Dict[str, float]:
    from semiseg.engine.trainer import Trainer

    cfg.train.iters = 10**9  # keep the poly LR away from zero while timing
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, work_dir=tmp)
        dev = trainer.device
        sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
        real = trainer.batches
        cached = [next(real) for _ in range(4)]
        streams = 1 + trainer.method.unlabeled_streams
        per_step_images = cfg.data.batch_size * min(streams, 2) * cfg.train.accum_steps

        trainer.batches = itertools.cycle(cached)
        compute = _median_time(trainer.train_step, steps, warmup, sync)
        trainer.batches = real
        with_loader = _median_time(trainer.train_step, steps, warmup, sync)
        loader = _median_time(lambda: next(real), steps * 2, warmup, sync)

        model = trainer.model.eval()
        x = cached[0]["x"]
        with torch.no_grad(), trainer._autocast():
            infer = _median_time(lambda: model(x), steps, warmup, sync)
        trainer.log.close()
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


def speed_from_cli(args) -> int:
    cfg = load_config(args.config, args.overrides)
    result = measure(cfg, args.steps, args.warmup)
    width = max(len(k) for k in result)
    for k, v in result.items():
        print(f"{k:<{width}}  {v}")
    print(json.dumps(result))
    return 0
