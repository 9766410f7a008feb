"""``semiseg bench selector``: the batched CSL selector against the literal per-image SVD loop."""
from __future__ import annotations

import statistics
import time

import torch

from semiseg.bench.csl_loop import csl_per_image
from semiseg.pseudo.selectors import build_selector

SHAPES = [(16, 11, 64, 64), (8, 21, 321, 321), (8, 6, 96, 96)]  # the last: one selection at the scenes config


def median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def selector_table() -> str:
    """Per probability shape: the loop's and the batched selector's median time, and their largest difference."""
    select = build_selector({"name": "csl"})
    lines = ["| probs (B, C, H, W) | per-image SVD loop (ms) | batched (ms) | speed-up | max weight difference |",
             "| --- | --- | --- | --- | --- |"]
    for shape in SHAPES:
        g = torch.Generator().manual_seed(0)
        probs = (torch.randn(*shape, generator=g) * 3).softmax(1)
        ignore = torch.zeros(shape[0], *shape[2:], dtype=torch.bool)
        repeats = 10 if shape[-1] <= 64 else 3
        loop = median_time(lambda: csl_per_image(probs, ignore), repeats)
        batched = median_time(lambda: select(probs, ignore), repeats)
        diff = (select(probs, ignore)[1] - csl_per_image(probs, ignore)[1]).abs().max().item()
        lines.append(f"| {tuple(shape)} | {1000 * loop:.1f} | {1000 * batched:.1f} | {loop / batched:.1f}x "
                     f"| {diff:.1e} |")
    return "\n".join(lines)
