"""Resume mid-epoch: a run killed between checkpoints and resumed equals an uninterrupted one, bit for bit,
and its logs hold each step once."""
import csv
import json

import pytest
import torch

from semiseg.engine.trainer import Trainer

from conftest import tiny_cfg


class Killed(Exception):
    """Stands for a SIGKILL: the process dies between two steps, after the last checkpoint."""


def config(root, *extra):
    # 8 steps of an epoch that has 15 (dssn: 60 unlabeled / 4) or 16 (supervised, split all: 64 / 4)
    return tiny_cfg(root, "train.iters=8", "train.eval_interval=1000", "train.ckpt_interval=3",
                    "train.deterministic=true", "train.seed=3", "train.report=false", *extra)


def killed_at(trainer, step):
    run_step = trainer.train_step

    def step_or_die():
        if trainer.step == step:
            raise Killed
        return run_step()

    trainer.train_step = step_or_die
    with pytest.raises(Killed):
        trainer.run()


def states(trainer):
    out = {f"model.{k}": v for k, v in trainer.model.state_dict().items()}
    if trainer.method.teacher is not None:
        out.update({f"teacher.{k}": v for k, v in trainer.method.teacher.module.state_dict().items()})
    return out


@pytest.mark.parametrize("extra", [("data.split=all",), ("method.name=dssn",),
                                   ("method.name=dssn", "method.paste_p=0.5", "method.distribution_alignment=true",
                                    "method.selector={name: none}")],
                         ids=["supervised", "dssn", "dssn-paste-align"])
# dssn-paste-align: the method's banks resume too; with selector none every pixel's aligned label reaches the
# loss (the tiny model clears no threshold), so a bank that is not restored fails it
def test_resume_mid_epoch_equals_an_uninterrupted_run(extra, tiny_scenes, tmp_path):
    full = Trainer(config(tiny_scenes, *extra), work_dir=str(tmp_path / "a"))
    assert full.batches.steps_per_epoch >= 15  # the kill and the checkpoint fall inside the first epoch
    full.run()
    part = Trainer(config(tiny_scenes, *extra), work_dir=str(tmp_path / "b"))
    killed_at(part, 5)  # the last checkpoint is step 3: steps 4 and 5 are logged, then lost
    (tmp_path / "b" / ".latest.pth.tmp4242").write_bytes(b"half a checkpoint")  # a kill during a write
    resumed = Trainer(config(tiny_scenes, *extra), work_dir=str(tmp_path / "b"), resume="auto")
    assert resumed.step == 3
    resumed.run()
    a, b = states(full), states(resumed)
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} of {len(a)} tensors differ, e.g. {differ[:3]}"
    rows = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if r["kind"] == "train"]
    assert steps == list(range(1, 9))  # each step once: the rows of the lost steps 4-5 were replaced
    full_rows = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    loss = lambda rs: [r["loss"] for r in rs if r["kind"] == "train"]  # noqa: E731
    assert loss(rows) == loss(full_rows)
    with open(tmp_path / "b" / "metrics_train.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == list(range(1, 9))
    assert not list((tmp_path / "b").glob(".*.tmp*"))  # torn temporaries of killed runs are cleaned up
