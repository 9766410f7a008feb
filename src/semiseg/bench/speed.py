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
import os
import resource
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path
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
        with torch.no_grad(), trainer.autocast():
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


def measure_overhead(cfg, steps: int = 20, warmup: int = 3) -> Dict[str, float]:
    """Median time of the batched semi-supervised extras of one UniMatch step, on the config's shapes:
    two strong views of the unlabeled and of the partner batch, two CutMix boxes with their mixing,
    three selections, one EMA update of the whole model."""
    from semiseg.data.augment import cutmix_box, mix, strong_photometric
    from semiseg.methods.teacher import EMATeacher
    from semiseg.models import build_model
    from semiseg.pseudo.selectors import build_selector

    d = cfg.data
    size, b = d.resize or d.crop_size, d.batch_size
    b_size = (b, 3, size, size)
    u, u_mix = torch.randn(b_size), torch.randn(b_size)
    cfg.model.pretrained = ""
    model = build_model(cfg.model, 6)
    teacher = EMATeacher(model, 0.996)
    probs = torch.randn(b, 6, size, size).softmax(1)
    ignore = torch.zeros(b, size, size, dtype=torch.bool)
    select = build_selector(cfg.method.get("selector") or {"name": "threshold"})

    def aug():
        for _ in range(2):
            strong_photometric(u, d.mean, d.std), strong_photometric(u_mix, d.mean, d.std)

    def cutmix():
        for _ in range(2):
            box = cutmix_box(b, size, size, "cpu")
            mix(u, u_mix, box), mix(probs, probs, box), mix(ignore, ignore, box)

    def selection():
        for _ in range(3):
            select(probs, ignore)

    parts = {"strong_aug": aug, "cutmix": cutmix, "selection": selection, "ema": lambda: teacher.update(model, 10)}
    return {k: statistics.median(_median_time(fn, steps, warmup, lambda: None)) for k, fn in parts.items()}


def speed_table(results: List[Dict[str, float]]) -> str:
    base = results[0]["step_s"]
    lines = ["| method | step (s) | vs first | step with loader (s) | train img/s | loader headroom | infer img/s | "
             "peak MiB |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        lines.append(f"| {r['method']} | {r['step_s']:.3f} | {r['step_s'] / base:.2f}x | {r['step_with_loader_s']:.3f} | "
                     f"{r['train_images_per_s']} | {r['loader_headroom']}x | {r['inference_images_per_s']} | "
                     f"{r['peak_memory_mib']:.0f} |")
    return "\n".join(lines)


def speed_from_cli(args) -> int:
    configs = [c for c in args.config if "=" not in c]
    overrides = [c for c in args.config if "=" in c]
    results = []
    for path in configs:  # one process per config would isolate peak memory; in-process is what fits here
        results.append(measure(load_config(path, overrides), args.steps, args.warmup))
        print(json.dumps(results[-1]), flush=True)
    body = speed_table(results)
    if args.overhead:
        cfg = load_config(args.overhead, overrides)
        parts = measure_overhead(cfg, args.steps)
        step = measure(load_config(args.overhead, overrides), args.steps, args.warmup)["step_s"]
        total = sum(parts.values())
        body += (f"\n\nBatched extras of one {cfg.method.name} step ({args.overhead}), medians: "
                 + ", ".join(f"{k} {1000 * v:.1f} ms" for k, v in parts.items())
                 + f"; together {1000 * total:.1f} ms = {100 * total / step:.1f}% of the {1000 * step:.0f} ms step.")
    print(body)
    if args.doc:
        from semiseg.bench.quality import write_section

        cmd = "semiseg bench speed " + " ".join(args.config) + (f" --overhead {args.overhead}" if args.overhead else "")
        write_section(Path(args.doc), args.section, f"Produced by `{cmd} --doc {args.doc}` on {date.today()}, "
                      f"{os.cpu_count()} CPU(s), torch {torch.__version__}, {torch.get_num_threads()} threads; "
                      f"medians of {args.steps} steps after {args.warmup} warm-up.\n\n{body}")
    return 0
