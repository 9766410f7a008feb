"""The CUDA-only paths (tests marked ``cuda``: `make gpu-check` runs them on a GPU, elsewhere they skip), and
the part of each that a CPU can run: fp16 autocast with its gradient scaler, the loader's pinned memory."""
import subprocess
import sys

import pytest
import torch

from semiseg.engine.trainer import Trainer

from conftest import short

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def fp16_steps(cfg, work, steps=3):
    """``steps`` fp16 steps: each loss, the scaler's scale, whether the weights moved."""
    trainer = Trainer(cfg, work_dir=work)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items() if v.dtype.is_floating_point}
    losses = [float(trainer.train_step()["loss"]) for _ in range(steps)]
    after = trainer.model.state_dict()
    moved = sum(not torch.equal(before[k], after[k]) for k in before)
    trainer.log.close()
    return trainer, losses, moved


def test_fp16_autocast_runs_with_its_gradient_scaler_on_a_cpu(tiny_scenes, tmp_path):
    cfg = short(tiny_scenes, "train.amp=fp16", "method.name=fixmatch")
    trainer, losses, moved = fp16_steps(cfg, tmp_path)
    assert trainer.amp is torch.float16 and trainer.scaler.is_enabled()
    assert trainer.scaler.get_scale() == 65536.0  # no overflow in three steps: the initial scale stands
    assert all(torch.isfinite(torch.tensor(losses))) and moved > 10


def test_the_scaler_skips_an_overflowing_step_and_halves_its_scale(tiny_scenes, tmp_path):
    """An inf in a gradient: the scaler skips the optimizer step (the weights stay) and halves the scale,
    which is what fp16 on a GPU relies on."""
    cfg = short(tiny_scenes, "train.amp=fp16")
    trainer = Trainer(cfg, work_dir=tmp_path)
    param = next(p for p in trainer.model.parameters() if p.requires_grad)
    param.register_hook(lambda g: torch.full_like(g, float("inf")))
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    trainer.train_step()
    assert trainer.scaler.get_scale() == 32768.0  # the weights stay (BatchNorm's statistics moved in the forward)
    assert all(torch.equal(before[k], v) for k, v in trainer.model.named_parameters())
    trainer.log.close()


def test_loaders_pin_host_memory_where_the_device_is_cuda(tiny_scenes):
    from semiseg.tasks import build_task

    task = build_task(short(tiny_scenes, "method.name=fixmatch"))
    cpu = task.train_batches(1, torch.device("cpu"))
    cuda = task.train_batches(1, torch.device("cuda"))  # built, not iterated: no device needed for this
    assert [loader.pin_memory for _, loader in cpu.streams.values()] == [False, False]
    assert [loader.pin_memory for _, loader in cuda.streams.values()] == [True, True]


@pytest.mark.cuda
@needs_cuda
def test_fp16_steps_on_cuda(tiny_scenes, tmp_path):
    trainer, losses, moved = fp16_steps(short(tiny_scenes, "train.amp=fp16", "method.name=unimatch"), tmp_path)
    assert trainer.device.type == "cuda" and trainer.scaler.is_enabled()
    assert all(torch.isfinite(torch.tensor(losses))) and moved > 10


@pytest.mark.cuda
@needs_cuda
def test_cuda_batches_come_from_pinned_memory(tiny_scenes, tmp_path):
    trainer = Trainer(short(tiny_scenes), work_dir=tmp_path)
    assert all(loader.pin_memory for _, loader in trainer.batches.streams.values())
    batch = next(trainer.batches)
    assert batch["x"].is_cuda and batch["u"].is_cuda
    trainer.log.close()


@pytest.mark.cuda
@needs_cuda
def test_a_cuda_checkpoint_exports_and_predicts_on_a_cpu(tiny_scenes, tmp_path):
    pytest.importorskip("onnx")
    from semiseg.cli import run

    work = tmp_path / "w"
    assert run(["train", "--work-dir", str(work), *short_args(tiny_scenes)]) == 0
    out = tmp_path / "m.onnx"
    assert run(["export", str(work / "latest.pth"), "--format", "onnx", "--output", str(out)]) == 0
    assert out.stat().st_size > 10_000
    assert run(["predict", str(work / "latest.pth"), "--device", "cpu", "--input",
                str(next((tiny_scenes / "images").glob("*.png"))), "--output", str(tmp_path / "p")]) == 0


@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="SyncBN needs two CUDA devices")
def test_syncbn_under_torchrun_on_two_gpus(tiny_scenes, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "semiseg",
           "train", "--work-dir", str(tmp_path / "w"), *short_args(tiny_scenes)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "world size 2, device cuda" in r.stdout


def short_args(root):
    """``short``'s overrides, for a command line."""
    from conftest import SHORT, TINY

    return [*TINY, f"data.root={root}", *SHORT]
