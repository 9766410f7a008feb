"""``semiseg bench speed CONFIG --vs-reference``: semiseg's ``unimatch_v2`` step against the authors' step
(``bench/reference.py``) on the same network, batch, crop and initial weights.

Four sides, each in a process of its own (so that each has its own peak memory):
- ``semiseg``: the config as given (its autocast, fused attention and other speed options);
- ``semiseg, reference settings``: the same code in fp32 with the package's explicit attention, which
  must give the reference's losses (it shows the two are one step, computed two ways);
- ``reference under the config's autocast``: the authors' step in semiseg's precision, whose distance
  to the fp32 reference is what rounding alone moves the losses (the yardstick for "agree");
- ``reference``: the authors' step.
Every step is seeded alike on every side, so all draw the same views and dropout masks; the table
gives the median step time and the peak memory of each, the speed-up of semiseg's default over the
reference, and the losses after the last step.
"""
from __future__ import annotations

import statistics
import time
from typing import Dict, List

import torch

# the authors' settings: fp32, the package's attention, eager, the default memory layout
AUTHORS = ["train.amp=none", "model.attention=explicit", "train.compile=false", "train.channels_last=false",
           "model.grad_checkpoint=false"]
SIDES = (("semiseg", False, []), ("semiseg, reference settings", False, AUTHORS),
         ("reference under the config's autocast (the noise yardstick)", True, AUTHORS[1:]),
         ("reference (the authors' step)", True, AUTHORS))


def run_side(config: str, overrides: List[str], reference: bool, steps: int, warmup: int) -> Dict[str, object]:
    """``warmup`` + ``steps`` training steps of one side, each seeded by its index: step times (the timed
    ones), every step's loss and the peak memory."""
    from semiseg.bench.reference import ReferenceV2Step
    from semiseg.bench.speed import bench_trainer, peak_memory_mib
    from semiseg.configure import load_config
    from semiseg.engine.trainer import seed_everything

    cfg = load_config(config, overrides)
    if cfg.method.name != "unimatch_v2":
        from semiseg.errors import SemisegError

        raise SemisegError(f"--vs-reference times UniMatch V2's step: {config} trains method.name={cfg.method.name}")
    with bench_trainer(cfg) as trainer:
        dev = trainer.device
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        step_fn = ReferenceV2Step(trainer) if reference else None
        times, losses = [], []
        for i in range(warmup + steps):
            seed_everything(i, deterministic=False)
            start = time.perf_counter()
            if step_fn is not None:
                out = step_fn(i)
            else:
                trainer.step = i  # the teacher's ramp follows the step
                out = trainer.train_step()
            loss = float(out["loss"])  # the host sync a logged loss costs both sides alike
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            if i >= warmup:
                times.append(time.perf_counter() - start)
            losses.append(loss)
        return {"step_s": statistics.median(times), "peak_mib": peak_memory_mib(dev), "losses": losses,
                "device": str(dev)}


def compare_to_reference(config: str, overrides: List[str], steps: int = 20, warmup: int = 3) -> List[Dict]:
    from semiseg.bench.speed import in_fresh_process

    return [{"side": name, **in_fresh_process(run_side, config, [*overrides, *extra], reference, steps, warmup)}
            for name, reference, extra in SIDES]


def loss_gap(a: Dict, b: Dict) -> float:
    """The largest relative difference of two sides' losses at the same step."""
    return max(abs(x - y) / max(abs(y), 1e-8) for x, y in zip(a["losses"], b["losses"]))


def reference_table(results: List[Dict]) -> str:
    ours, same, yardstick, ref = results
    lines = ["| step | step (s) | speed-up over the reference | peak MiB | loss at the last step | largest loss "
             "difference to the reference, any step |", "| --- | --- | --- | --- | --- | --- |"]
    for r in results:
        lines.append(f"| {r['side']} | {r['step_s']:.3f} | {ref['step_s'] / r['step_s']:.2f}x | {r['peak_mib']:.0f} | "
                     f"{r['losses'][-1]:.4f} | {100 * loss_gap(r, ref):.2f}% |")
    noise = loss_gap(yardstick, ref)
    agree = loss_gap(ours, ref) <= max(2 * noise, 1e-4)
    lines += ["", f"{len(ref['losses'])} steps from the same weights, each seeded alike on every side, on "
              f"{ref['device']}. At the reference's settings semiseg's step gives the reference's losses to "
              f"{100 * loss_gap(same, ref):.3f}%. "
              f"Its default step is {ref['step_s'] / ours['step_s']:.2f}x the reference's speed; its losses "
              + ("agree with the reference's" if agree else "do NOT agree with the reference's")
              + f" (at most {100 * loss_gap(ours, ref):.2f}% apart, against {100 * noise:.2f}% between the reference "
              "in fp32 and under the same autocast: rounding alone)."]
    return "\n".join(lines)
