"""``semiseg bench speed CONFIG --options``: the step time and peak memory of one config under each speed
option, each in a fresh process (its own peak memory), so that a user sees what each buys on the machine
at hand. Options that only act on CUDA get a line saying so where there is none."""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch

# (row, overrides, timed where: "any" | "vit" (a dinov2_* encoder) | "cuda"). fp16 is timed on CUDA only: a CPU
# without native fp16 emulates it (a DINOv2-S step ran for minutes); its scaler's logic is tested on a CPU
# (tests/test_cuda.py)
OPTIONS: Tuple[Tuple[str, List[str], str], ...] = (
    ("as configured", [], "any"),
    ("fp32 (train.amp=none)", ["train.amp=none"], "any"),
    ("bf16 autocast (train.amp=bf16)", ["train.amp=bf16"], "any"),
    ("fp16 autocast + gradient scaler (train.amp=fp16)", ["train.amp=fp16"], "cuda"),
    ("channels_last (train.channels_last=true)", ["train.channels_last=true"], "any"),
    ("torch.compile (train.compile=true)", ["train.compile=true"], "any"),
    ("explicit attention (model.attention=explicit)", ["model.attention=explicit"], "vit"),
    ("fused attention (model.attention=sdpa)", ["model.attention=sdpa"], "vit"),
    ("activation checkpointing (model.grad_checkpoint=true)", ["model.grad_checkpoint=true"], "vit"),
    ("no cuDNN autotuning or TF32 (train.deterministic=true)", ["train.deterministic=true"], "cuda"),
)


def _measure_in_child(config: str, overrides: List[str], steps: int, warmup: int) -> Dict[str, float]:
    from semiseg.bench.speed import measure
    from semiseg.configure import load_config

    return measure(load_config(config, overrides), steps, warmup)


def measure_options(config: str, overrides: List[str], steps: int, warmup: int,
                    cuda: Optional[bool] = None) -> List[Dict[str, object]]:
    """One row per option that applies here: its step and peak memory, or the reason it was not measured."""
    from semiseg.configure import load_config

    cuda = torch.cuda.is_available() if cuda is None else cuda
    vit = load_config(config, overrides).model.backbone.startswith("dinov2_")
    from semiseg.bench.speed import in_fresh_process

    rows = []
    for name, extra, scope in OPTIONS:
        if scope == "cuda" and not cuda:
            rows.append({"option": name, "note": "timed on CUDA only (no CUDA device here)"})
        elif scope == "vit" and not vit:
            rows.append({"option": name, "note": "acts on a dinov2_* encoder only"})
        else:
            r = in_fresh_process(_measure_in_child, config, [*overrides, *extra], steps, warmup)
            rows.append({"option": name, **r})
    return rows


def options_table(rows: List[Dict[str, object]]) -> str:
    base = next(r["step_s"] for r in rows if "step_s" in r)
    lines = ["| option | step (s) | vs as configured | train img/s | peak MiB |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        if "step_s" in r:
            lines.append(f"| {r['option']} | {r['step_s']:.3f} | {r['step_s'] / base:.2f}x | "
                         f"{r['train_images_per_s']} | {r['peak_memory_mib']:.0f} |")
        else:
            lines.append(f"| {r['option']} | {r['note']} | | | |")
    return "\n".join(lines)
