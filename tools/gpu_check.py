"""`make gpu-check`: what semiseg does on a CUDA GPU, in one command of at most about 8 minutes.

1. the tests marked ``cuda`` (fp16 with its scaler, pinned loaders, a CUDA checkpoint exported and used on
   the CPU, SyncBN where two GPUs exist);
2. 50 steps of every method on the scenes with the default GPU options;
3. VOC-sized steps with random weights, each speed option timed with its peak memory: DeepLabV3+
   ResNet-101 at 513 px, batch 8 + 8 (UniMatch), and DINOv2-B + DPT at 518 px, batch 4 + 4 (UniMatch V2);
4. UniMatch V2's step against its authors' (``--vs-reference``) at that size;
5. a one-process torchrun.
It writes ``OUT/gpu-check.md`` (the GPU named) and exits 1 if a stage failed. Without CUDA it says so in
one line and exits 0. ``--smoke`` runs every stage at toy sizes on any device: the script's own test.

    python tools/gpu_check.py [--out runs/gpu-check] [--smoke]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METHODS = ("supervised", "fixmatch", "unimatch", "unimatch_v2", "csl", "dssn")
VOC_SIZED = {  # (config, overrides): the authors' VOC step sizes on the scenes' images, random weights
    "DeepLabV3+ ResNet-101, 513 px, batch 8+8": ("configs/scenes/unimatch.yaml", [
        "model.backbone=resnet101", "model.pretrained=", "model.output_stride=16", "model.head_channels=256",
        "model.low_level_channels=48", "data.resize=513", "data.crop_size=513", "data.batch_size=8"]),
    "DINOv2-B + DPT, 518 px, batch 4+4": ("configs/scenes/unimatch_v2_dinov2-s.yaml", [
        "model.backbone=dinov2_base", "data.resize=518", "data.crop_size=518", "data.batch_size=4"]),
}
SMOKE = ["model.backbone=resnet18", "model.pretrained=", "model.width=0.125", "model.head_channels=16",
         "model.low_level_channels=8", "data.crop_size=32", "data.resize=32", "data.batch_size=2", "data.num_workers=0"]
SMOKE_VIT = ["model.backbone=dinov2_tiny", "data.crop_size=28", "data.resize=28", "data.batch_size=2",
             "data.num_workers=0"]


def run(cmd, timeout: int) -> tuple:
    """A stage's command: (ok, seconds, its output's last lines)."""
    start = time.time()
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    try:
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)
        ok, out = r.returncode == 0, r.stdout + r.stderr
    except subprocess.TimeoutExpired as e:
        ok, out = False, f"timed out after {timeout} s\n{(e.stdout or b'')[-2000:]!r}"
    return ok, time.time() - start, out


def tail(text: str, n: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/gpu-check", help="folder for gpu-check.md and the runs")
    ap.add_argument("--smoke", action="store_true", help="every stage at toy sizes, on any device")
    ap.add_argument("--data-root", default="data/scenes", help="the scenes (semiseg data scenes --out DIR)")
    args = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available() and not args.smoke:
        print(f"gpu-check: no CUDA device here (torch {torch.__version__}); skipped. Its CPU paths run in make test.")
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    py, semiseg = sys.executable, [sys.executable, "-m", "semiseg"]
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU (smoke run)"
    data = [f"data.root={args.data_root}"]
    small = data + (SMOKE if args.smoke else [])
    steps = "2" if args.smoke else "50"
    stages = [("tests marked cuda", [py, "-m", "pytest", "-q", "-m", "cuda", "tests/test_cuda.py"], 300)]
    for m in METHODS:
        stages.append((f"{steps} steps of {m} on the scenes", [
            *semiseg, "train", f"configs/scenes/{m}.yaml", *small, f"train.iters={steps}",
            f"train.eval_interval={steps}",
            "train.report=false", "eval.max_images=64", "--work-dir", str(out / m), "--force"], 300))
    for name, (config, overrides) in VOC_SIZED.items():
        overrides = data + ((SMOKE_VIT if "dinov2" in config else SMOKE) if args.smoke else overrides)
        timing = ["--steps", "1" if args.smoke else "5", "--warmup", "1" if args.smoke else "2"]
        doc = str(out / f"options-{len(stages)}.md")
        stages.append((f"speed options: {name}", [*semiseg, "bench", "speed", config, *overrides, "--options", *timing,
                                                  "--section", "gpu-options", "--doc", doc], 600))
    config, overrides = VOC_SIZED["DINOv2-B + DPT, 518 px, batch 4+4"]
    stages.append(("UniMatch V2 against its authors' step, DINOv2-B at 518", [
        *semiseg, "bench", "speed", config, *data, *(SMOKE_VIT if args.smoke else overrides), "--vs-reference",
        "--steps", "2" if args.smoke else "10", "--warmup", "1" if args.smoke else "2",
        "--section", "gpu-vs-reference", "--doc", str(out / "vs-reference.md")], 600))
    stages.append(("torchrun, one process", [
        py, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1", "-m", "semiseg", "train",
        "configs/scenes/supervised.yaml", *small, "train.iters=20", "train.eval_interval=20", "train.report=false",
        "eval.max_images=64", "--work-dir", str(out / "torchrun"), "--force"], 300))

    lines = [f"# gpu-check on {device}", "", f"torch {torch.__version__}; `python tools/gpu_check.py"
             + (" --smoke" if args.smoke else "") + "`.", "", "| stage | result | seconds |", "| --- | --- | --- |"]
    failed, details = [], []
    for name, cmd, timeout in stages:
        print(f"gpu-check: {name} ...", flush=True)
        ok, secs, text = run(cmd, timeout)
        failed += [] if ok else [name]
        lines.append(f"| {name} | {'ok' if ok else 'FAILED'} | {secs:.0f} |")
        details += [f"## {name}", "", "```", tail(text), "```", ""]
        print(f"gpu-check: {name}: {'ok' if ok else 'FAILED'} ({secs:.0f} s)", flush=True)
    tables = [p.read_text() for p in sorted(out.glob("*.md")) if p.name != "gpu-check.md"]
    report = "\n".join(lines + ["", *tables, "", *details])
    (out / "gpu-check.md").write_text(report)
    print(f"gpu-check: {len(stages) - len(failed)} of {len(stages)} stages ok; {out / 'gpu-check.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
