"""Which autocast dtype a run uses: ``train.amp`` resolved for the device it runs on; and the names a run
records of both (timings differ between devices, and autocast moves the scores too)."""
from __future__ import annotations

import platform
from pathlib import Path
from typing import Optional

import torch


def _cpuinfo() -> str:
    """/proc/cpuinfo's text; "" where there is none (macOS, Windows)."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_has_native_bf16() -> bool:
    """bf16 arithmetic in hardware (AVX512_BF16 or AMX): there bf16 autocast is 1.5-1.8x faster than fp32;
    elsewhere it is emulated, and 7x slower on an AVX2 EPYC (DSSN on the scenes: 33 s/step vs 4.7)."""
    flags = _cpuinfo()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def device_name(device: torch.device) -> str:
    """The GPU's name, else the CPU's model name."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    models = [line.split(":", 1)[1].strip() for line in _cpuinfo().splitlines() if line.startswith("model name")]
    return models[0] if models else platform.processor() or platform.machine()


def precision_name(dtype: Optional[torch.dtype]) -> str:
    """What a run computes in: fp32, or its autocast dtype."""
    return {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}[dtype]


def amp_dtype(amp: str, device: torch.device) -> Optional[torch.dtype]:
    if amp == "none":
        return None
    if amp == "auto":
        if device.type == "cpu":
            return torch.bfloat16 if cpu_has_native_bf16() else None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]
