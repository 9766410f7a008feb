"""The training engine: exact resume, torchrun on CPU, evaluation, checkpoints."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from semiseg.engine.checkpoint import load_checkpoint
from semiseg.engine.precision import device_name
from semiseg.tasks.semantic.evaluator import confusion, iou_table, metrics_from_confusion, slide_logits
from semiseg.engine.trainer import Trainer, train
from semiseg.configure import load_config
from semiseg.errors import SemisegError

from conftest import TINY, tiny_cfg


def run_steps(root, work, iters, resume=None):
    cfg = tiny_cfg(root, f"train.iters={iters}", "train.eval_interval=1000", "train.ckpt_interval=2",
                   "train.deterministic=true", "train.seed=3")
    trainer = Trainer(cfg, work_dir=str(work), resume=resume)
    trainer.run()
    return trainer


def test_resume_is_exact(tiny_scenes, tmp_path):
    full = run_steps(tiny_scenes, tmp_path / "a", 4)
    part = Trainer(tiny_cfg(tiny_scenes, "train.iters=4", "train.eval_interval=1000", "train.ckpt_interval=2",
                            "train.deterministic=true", "train.seed=3"), work_dir=str(tmp_path / "b"))
    for _ in range(2):  # two steps, then a checkpoint, then a fresh process-like trainer resumes
        assert part.train_step() is not None
        part.step += 1
    part.save("latest.pth")
    resumed = run_steps(tiny_scenes, tmp_path / "b", 4, resume="auto")
    assert resumed.step == 4
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    a, b = full.optimizer.state_dict(), resumed.optimizer.state_dict()
    for pid, st in a["state"].items():
        assert torch.equal(st["momentum_buffer"], b["state"][pid]["momentum_buffer"])


def test_checkpoint_holds_everything_and_best_is_written(tiny_scenes, tmp_path):
    trainer = Trainer(tiny_cfg(tiny_scenes, "train.iters=2", "train.eval_interval=2"), work_dir=str(tmp_path))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    try:
        metrics = trainer.run()
    finally:
        trainer.close()
    ckpt = load_checkpoint(tmp_path / "latest.pth")
    assert {"model", "method", "optimizer", "scaler", "step", "best", "rng", "config", "meta"} <= set(ckpt)
    assert ckpt["step"] == 2 and ckpt["config"]["train"]["iters"] == 2
    assert any(not torch.equal(before[k], v) for k, v in ckpt["model"].items() if v.is_floating_point())
    last_eval = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()][-1]
    assert last_eval["kind"] == "eval" and metrics["mIoU"] == last_eval["mIoU"]  # the run returns its evaluation
    assert ckpt["best"]["mIoU"] == metrics["mIoU"] and ckpt["best"]["step"] == 2
    assert not any(k.startswith("module.") for k in ckpt["model"])
    assert (tmp_path / "best.pth").is_file() and (tmp_path / "config.yaml").is_file()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in rows} == {"setup", "train", "eval"}
    setup, = [r for r in rows if r["kind"] == "setup"]  # where and in what the run computed, in the file alone
    assert setup["step"] == 0 and setup["precision"] == ("bf16 autocast" if trainer.amp else "fp32")
    assert setup["device"] == device_name(torch.device("cpu")) and setup["device"]
    assert not (tmp_path / "metrics_setup.csv").exists()  # text, not a curve: no CSV, no TensorBoard scalar


def test_torchrun_two_cpu_processes(tiny_scenes, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data:\n  root: %s\n" % tiny_scenes)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517",
           "-m", "semiseg", "train", str(cfg), *TINY, "data.split=all", "train.iters=2", "train.eval_interval=2",
           "train.threads=1", "--work-dir", str(tmp_path / "w")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "world size 2" in r.stdout
    rows = [json.loads(line) for line in (tmp_path / "w/metrics.jsonl").read_text().splitlines()]
    assert any(row["kind"] == "eval" and row["step"] == 2 for row in rows)


def test_metrics_from_known_confusion():
    pred = torch.tensor([0, 0, 1, 1, 2, 2])
    gt = torch.tensor([0, 1, 1, 1, 2, 255])
    m = metrics_from_confusion(confusion(pred, gt, 3, 255))
    # class 0: I=1, U=2; class 1: I=2, U=3; class 2: I=1, U=1
    assert m["iou"] == pytest.approx([50.0, 200 / 3, 100.0])
    assert m["aAcc"] == pytest.approx(80.0) and m["mAcc"] == pytest.approx((100 + 200 / 3 + 100) / 3)
    # of the 5 labeled pixels the model calls 2 class 0 where 1 is: class 1 shrinks from 60% to 40%
    assert m["share_pred"] == pytest.approx([40.0, 40.0, 20.0]) and m["share_true"] == pytest.approx([20.0, 60.0, 20.0])


def test_the_iou_table_shows_each_class_share_predicted_and_true():
    m = metrics_from_confusion(confusion(torch.tensor([0, 0, 0, 1]), torch.tensor([0, 0, 1, 1]), 2, 255))
    table = iou_table(["background", "blob"], m["iou"], {"mIoU": m["mIoU"]}, m["share_pred"], m["share_true"])
    assert table.splitlines()[0].split() == ["class", "IoU", "pred%", "true%"]
    assert table.splitlines()[2].split() == ["blob", "50.00", "25.0", "50.0"]


def test_slide_window_equals_whole_for_a_pointwise_model():
    model = torch.nn.Conv2d(3, 5, 1)
    x = torch.randn(2, 3, 50, 37)
    whole = model(x).softmax(1)
    assert torch.allclose(slide_logits(model, x, 5, window=16), whole, atol=1e-6)
    assert torch.allclose(slide_logits(model, x, 5, window=64), whole, atol=1e-6)  # window larger than image


def test_nonfinite_losses_stop_the_run(tiny_scenes, tmp_path):
    cfg = tiny_cfg(tiny_scenes, "train.iters=10", "train.max_bad_steps=3", "train.lr=1e30",
                   "train.optimizer=sgd")
    with pytest.raises(SemisegError, match="3 consecutive non-finite losses"):
        train(cfg, work_dir=str(tmp_path))


def test_corrupt_image_mid_run_stops_or_is_skipped(tiny_scenes, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(tiny_scenes, root)
    lines = (root / "splits/all/labeled.txt").read_text().splitlines()
    bad = root / lines[5].split()[0]
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")  # found only when its batch is loaded
    cfg = tiny_cfg(root, "data.split=all", "train.iters=40", "train.eval_interval=1000", "train.ckpt_interval=1000")
    with pytest.raises(SemisegError, match=f"image file .*{bad.name} cannot be read"):
        train(cfg, work_dir=str(tmp_path / "stop"))
    assert not (tmp_path / "stop/latest.pth").exists()  # no step was taken on it, nothing written
    skip = tiny_cfg(root, "data.split=all", "train.iters=40", "train.eval_interval=40", "data.on_error=skip")
    trainer = Trainer(skip, work_dir=str(tmp_path / "skip"))
    trainer.run()
    assert trainer.step == 40 and trainer.batches.skipped == 3  # 40 steps x 4 = 160 samples = 2.5 epochs of 64


def test_missing_listed_files_fail_at_start_with_counts(tiny_scenes, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(tiny_scenes, root)
    split = root / "splits/all/labeled.txt"
    split.write_text(split.read_text()[:-9])  # truncated mid-path: the last mask path is now wrong
    with pytest.raises(SemisegError, match="1 of the 128 files listed in .*labeled.txt do not exist"):
        Trainer(tiny_cfg(root, "data.split=all"), work_dir=str(tmp_path / "w"))


def test_logged_means_skip_missing_per_class_values(tiny_scenes, tmp_path):
    """A per-class diagnostic is NaN in a step without that class; the logged interval mean skips it."""
    cfg = tiny_cfg(tiny_scenes, "method.name=unimatch", "method.mix=roll", "train.iters=4", "train.log_interval=4",
                   "train.eval_interval=1000", "data.hidden_labels=true")
    trainer = Trainer(cfg, work_dir=str(tmp_path))
    nan = float("nan")
    steps = iter([{"loss": 1.0, "mask_ratio_c1": nan, "pl_recall_c2": 0.2},
                  {"loss": 3.0, "mask_ratio_c1": 0.5, "pl_recall_c2": nan},
                  {"loss": 1.0, "mask_ratio_c1": nan, "pl_recall_c2": 0.4},
                  {"loss": 3.0, "mask_ratio_c1": 0.7, "pl_recall_c2": nan}])
    trainer.train_step = lambda: {k: torch.tensor(v, dtype=torch.float64) for k, v in next(steps).items()}
    trainer.run()
    row = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
           if json.loads(line)["kind"] == "train"][-1]
    assert row["loss"] == pytest.approx(2.0) and row[f"mask_ratio/{trainer.names[1]}"] == pytest.approx(0.6)
    assert row[f"pl_recall/{trainer.names[2]}"] == pytest.approx(0.3)


def test_gradient_accumulation_all_reduces_on_the_last_micro_step_only(tiny_scenes, tmp_path):
    """Under DDP (anything with ``no_sync``) the first accum_steps - 1 micro-steps run inside ``no_sync``."""
    import contextlib

    trainer = Trainer(tiny_cfg(tiny_scenes, "train.accum_steps=3", "train.iters=2"), work_dir=str(tmp_path))
    entered = []

    class Wrapped(torch.nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, *args, **kwargs):
            return self.module(*args, **kwargs)

        @contextlib.contextmanager
        def no_sync(self):
            entered.append(True)
            yield

    trainer.wrapped = trainer.method.model = Wrapped(trainer.model)
    logs = trainer.train_step()
    assert len(entered) == 2  # micro-steps 1 and 2 of 3
    assert all(torch.is_tensor(v) and v.dim() == 0 for v in logs.values())  # numbers only at log time


def test_median_frequency_weights_are_the_median_share_over_each_share():
    from semiseg.losses import median_frequency_weights

    # shares 0.6, 0.3, 0.1 and a class never labeled: median 0.3 -> 0.5, 1, 3; the absent class 1
    assert [round(w, 6) for w in median_frequency_weights([600, 300, 100, 0])] == [0.5, 1.0, 3.0, 1.0]


def test_class_balance_weights_the_labeled_loss_by_the_labeled_masks(tmp_path, capsys):
    """Known masks: background 3/4 of the pixels, the defect 1/4 -> weights 0.667 and 2 (median 0.5)."""
    from conftest import write_pair

    root = tmp_path / "mine"
    mask = np.zeros((40, 40), np.uint8)
    mask[:, :10] = 1  # a quarter of every labeled mask
    for i in range(4):
        write_pair(root, f"images/l{i}.png", f"masks/l{i}.png", size=(40, 40), mask_values=mask, seed=i)
        write_pair(root, f"val/images/v{i}.png", f"val/masks/v{i}.png", size=(40, 40), mask_values=mask, seed=9 + i)
    cfg = load_config(None, TINY + ["data.dataset=folder", f"data.root={root}", "train.class_balance=median",
                                    "data.class_names=[background, defect]", "train.iters=1", "train.report=false"])
    trainer = Trainer(cfg, work_dir=str(tmp_path / "run"))
    assert [round(w, 4) for w in trainer.method.criterion.weights.tolist()] == [0.6667, 2.0]
    trainer.run()
    trainer.close()
    said = "class weights of the labeled loss (median frequency): background 0.67, defect 2.00"
    assert said in capsys.readouterr().out


def test_class_balance_is_refused_beside_class_weights_and_where_the_task_has_no_masks(tiny_scenes, res_scenes,
                                                                                      tmp_path):
    from conftest import res_cfg

    with pytest.raises(SemisegError, match="class_balance=median sets the class weights: leave train.class_weights"):
        Trainer(tiny_cfg(tiny_scenes, "train.class_balance=median", "train.class_weights=[1,1,1,1,1,1]",
                         "train.iters=1"), work_dir=str(tmp_path / "a"))
    with pytest.raises(SemisegError, match="class_balance=median needs the labeled masks' class counts"):
        Trainer(res_cfg(res_scenes, "train.class_balance=median", "train.class_weights=[]", "train.iters=1"),
                work_dir=str(tmp_path / "b"))
