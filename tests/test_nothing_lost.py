"""Runs are never lost or damaged: one run per work_dir, a full disk, torn logs, resume of another method,
per-process state under torchrun, values checked at load, and a clean stop with loader workers."""
import csv
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from semiseg.bench.tables import write_section
from semiseg.cli import main
from semiseg.configure import load_config
from semiseg.data.check import check_layout
from semiseg.data.presets import resolve_layout
from semiseg.engine.checkpoint import load_checkpoint
from semiseg.engine.logging import RunLogger, read_jsonl
from semiseg.engine.trainer import Trainer, train
from semiseg.errors import SemisegError

from conftest import ENV, TINY, short, steps_logged, tiny_cfg, train_cmd, wait_for, write_cfg


def cli(capsys, *argv):
    """``semiseg ARGV`` in this process: (exit code, stderr lines)."""
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in argv])
    return exit_.value.code, capsys.readouterr().err.strip().splitlines()


def equal_weights(a: Path, b: Path) -> None:
    ca, cb = load_checkpoint(a), load_checkpoint(b)
    assert ca["step"] == cb["step"]
    for k, v in ca["model"].items():
        assert torch.equal(v, cb["model"][k]), k
    for k, v in ca["method"].get("teacher", {}).items():
        assert torch.equal(v, cb["method"]["teacher"][k]), k


# ---------------------------------------------------------------- item 4: --resume of another method
def test_resume_refuses_a_checkpoint_of_another_method_and_leaves_it_whole(tiny_scenes, tmp_path):
    train(short(tiny_scenes, "method.name=dssn"), work_dir=str(tmp_path))
    before = (tmp_path / "latest.pth").read_bytes()
    with pytest.raises(SemisegError, match=r"method 'dssn' run and the config says 'supervised'.*--load-from"):
        Trainer(short(tiny_scenes, "train.iters=4"), work_dir=str(tmp_path), resume="auto")
    assert (tmp_path / "latest.pth").read_bytes() == before  # the teacher is still in it
    assert "teacher" in load_checkpoint(tmp_path / "latest.pth")["method"]
    assert not (tmp_path / ".semiseg.lock").exists()  # a refused start lets go of the folder
    with pytest.raises(SemisegError, match=r"train.optimizer 'sgd' run and the config says 'adamw'"):
        Trainer(short(tiny_scenes, "method.name=dssn", "train.optimizer=adamw"), work_dir=str(tmp_path), resume="auto")


def test_a_resume_past_the_end_says_there_is_nothing_to_train(tiny_scenes, tmp_path, capsys):
    train(short(tiny_scenes), work_dir=str(tmp_path))
    train(short(tiny_scenes, "train.iters=1"), work_dir=str(tmp_path), resume="auto")
    assert "nothing to train: the run is at step 2 and train.iters is 1" in capsys.readouterr().out


def test_a_resume_with_changed_settings_names_each_change(tiny_scenes, tmp_path, capsys):
    """Continuing with another method option (or a longer schedule) is allowed, and said, key by key."""
    train(short(tiny_scenes, "method.name=fixmatch"), work_dir=str(tmp_path))
    capsys.readouterr()
    train(short(tiny_scenes, "method.name=fixmatch", "method.paste_p=0.5", "train.iters=3"), work_dir=str(tmp_path),
          resume="auto")
    out = capsys.readouterr().out
    assert "method.paste_p: 0.0, now 0.5" in out and "train.iters: 2, now 3" in out
    assert "work_dir" not in out.split("settings changed since")[1].splitlines()[0]
    train(short(tiny_scenes, "method.name=fixmatch", "method.paste_p=0.5", "train.iters=4"), work_dir=str(tmp_path),
          resume="auto")
    assert "method.paste_p" not in capsys.readouterr().out  # the checkpoint now holds 0.5


def test_a_resume_from_a_checkpoint_without_settings_says_changes_cannot_be_checked(tiny_scenes, tmp_path, capsys):
    """A checkpoint that holds no settings (made by another tool from our weights) still resumes, and says
    that what changed since cannot be checked rather than nothing."""
    train(short(tiny_scenes), work_dir=str(tmp_path))
    ckpt = torch.load(tmp_path / "latest.pth", weights_only=False)
    del ckpt["config"]
    torch.save(ckpt, tmp_path / "latest.pth")
    capsys.readouterr()
    train(short(tiny_scenes, "train.iters=3"), work_dir=str(tmp_path), resume="auto")
    assert f"note: {tmp_path / 'latest.pth'} holds no settings: what changed since it was saved cannot be checked" \
        in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "latest.pth")["step"] == 3


# ---------------------------------------------------------------- item 5: CSV rows under a fixed header
def test_metrics_csv_rows_stay_under_their_header_when_a_term_is_missing_or_new(tmp_path):
    log = RunLogger(tmp_path, True, 10)
    log.write("train", 1, {"loss": 1.0, "mask_ratio/top": 0.5, "lr": 0.1, "s_per_step": 2.0})
    log.write("train", 2, {"loss": 2.0, "lr": 0.2, "s_per_step": 3.0})  # no top pixels at this step
    log.write("train", 3, {"loss": 3.0, "lr": 0.3, "s_per_step": 4.0, "steps_skipped": 1})  # a term first seen
    log.close()
    with open(tmp_path / "metrics_train.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["lr"] for r in rows] == ["0.1", "0.2", "0.3"]
    assert [r["s_per_step"] for r in rows] == ["2.0", "3.0", "4.0"]
    assert [r["mask_ratio/top"] for r in rows] == ["0.5", "", ""]
    assert [r["steps_skipped"] for r in rows] == ["", "", "1"]
    # a resumed logger keeps the header it finds and cuts the rows after its step
    log = RunLogger(tmp_path, True, 10, start_step=2)
    log.write("train", 3, {"loss": 3.5, "lr": 0.35, "s_per_step": 5.0})
    log.close()
    with open(tmp_path / "metrics_train.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["step"], r["lr"], r["s_per_step"]) for r in rows] == [("1", "0.1", "2.0"), ("2", "0.2", "3.0"),
                                                                     ("3", "0.35", "5.0")]


def test_a_fresh_start_keeps_no_row_of_the_run_it_replaces_and_a_resume_keeps_its_setup_records(tmp_path):
    """Setup records are written at the start step: a run started over in the folder must not inherit the
    former run's step-0 record (the table would name a machine it never trained on)."""
    log = RunLogger(tmp_path, True, 10)
    log.record("setup", 0, {"device": "old machine", "precision": "fp32"})
    log.write("train", 1, {"loss": 1.0})
    log.close()
    log = RunLogger(tmp_path, True, 10, start_step=1)  # resumed at step 1: both rows stay
    log.record("setup", 1, {"device": "new machine", "precision": "fp32"})
    log.close()
    assert [(r["kind"], r["step"]) for r in read_jsonl(tmp_path / "metrics.jsonl")] == [
        ("setup", 0), ("train", 1), ("setup", 1)]
    RunLogger(tmp_path, True, 10).close()  # started over at step 0
    assert read_jsonl(tmp_path / "metrics.jsonl") == []


# ---------------------------------------------------------------- item 6 and 11: values checked at load
@pytest.mark.parametrize("overrides, message", [
    (["train.iters=0"], "'train.iters': 0; valid: at least 1 step"),
    (["data.batch_size=0"], "'data.batch_size': 0; valid: a number >= 1"),
    (["data.batch_size=-2"], "'data.batch_size': -2; valid: a number >= 1"),
    (["eval.batch_size=0"], "'eval.batch_size': 0; valid: a number >= 1"),
    (["train.log_interval=0"], "'train.log_interval': 0; valid: a number >= 1"),
    (["train.accum_steps=0"], "'train.accum_steps': 0; valid: a number >= 1"),
    (["data.crop_size=0"], "'data.crop_size': 0; valid: a number >= 1"),
    (["data.num_workers=-1"], "'data.num_workers': -1; valid: a number >= 0"),
    (["data.scale_range=[2.0,0.5]"], "'data.scale_range': [2.0, 0.5]; valid: a pair [low, high] with low <= high"),
    (["method=[dssn]"], "'method': ['dssn']; valid: a mapping"),
    (["method.name=fixmatch", "method.selector=[class_aware]"], "'method.selector': ['class_aware']; valid: a mapping"),
    (["model.dilations={a: 1}"], "'model.dilations': {'a': 1}; valid: a list"),
    (["train=[1]"], "'train': [1]; valid: a mapping"),
    (["data.mean=[1,2]"], "'data.mean': [1.0, 2.0]; valid: a list of 3 numbers"),
    (["train.seed=-1"], "'train.seed': -1; valid: a number >= 0 and <= 4294967295"),
    (["method.name=dssn", "method.burn_in_steps=-5"], "'method.burn_in_steps': -5; valid: a number >= 0"),
    (["train.lr=.nan"], "'train.lr': nan; valid: a number >= 0"),
    (["data.palette=[[1,2]]"], "'data.palette': [[1, 2]]; valid: a list of lists of 3 numbers"),
    (["method.name=[csl]"], "'method.name': ['csl']; valid: csl, dssn"),
])
def test_bad_values_are_refused_at_load_naming_the_key(overrides, message, capsys):
    with pytest.raises(SemisegError) as e:
        load_config(None, overrides)
    assert str(e.value).startswith(f"command line override: bad value for {message}")
    code, err = cli(capsys, "train", *overrides, "--work-dir", "unused")
    assert code == 2 and err == [f"error: {e.value}"]


def test_a_base_that_is_not_one_file_and_a_split_file_that_is_not_utf8_get_one_line(tmp_path, voc_root):
    (tmp_path / "c.yaml").write_text("_base_: [a.yaml]\n")
    with pytest.raises(SemisegError, match=r"c.yaml: _base_ must name one file .*not \['a.yaml'\]"):
        load_config(tmp_path / "c.yaml")
    labeled = voc_root / "splits/4/labeled.txt"
    labeled.write_bytes(labeled.read_text().encode("utf-16"))  # what a Windows editor's "Unicode" saves
    with pytest.raises(SemisegError, match=r"labeled.txt is not UTF-8 text \(byte 0 is 0xff\): save it as UTF-8"):
        resolve_layout(load_config(None, [f"data.root={voc_root}", "data.dataset=voc", "data.split=4"]).data)


def test_epochs_stand_in_for_iters_and_a_missing_split_is_named_with_those_that_exist(tiny_scenes, tmp_path):
    (tmp_path / "c.yaml").write_text("train:\n  iters: 0\n")
    assert load_config(tmp_path / "c.yaml", ["train.epochs=2"]).train.epochs == 2  # epochs set the schedule
    with pytest.raises(SemisegError, match=r"data.split=nope: no folder .*splits/nope; splits under .*: 1_16, .*all"):
        Trainer(short(tiny_scenes, "data.split=nope"), work_dir=str(tmp_path))


def test_a_refused_start_leaves_no_folder_it_made_and_keeps_one_that_was_there(tiny_scenes, tmp_path):
    work = tmp_path / "runs" / "new" / "run"  # two levels that did not exist
    with pytest.raises(SemisegError, match="data.split=nope"):
        Trainer(short(tiny_scenes, "data.split=nope"), work_dir=str(work))
    assert not (tmp_path / "runs").exists()
    work.mkdir(parents=True)  # the user's own folder stays, empty as it was
    with pytest.raises(SemisegError, match="data.split=nope"):
        Trainer(short(tiny_scenes, "data.split=nope"), work_dir=str(work))
    assert work.is_dir() and not any(work.iterdir())


# ---------------------------------------------------------------- item 14: an empty unlabeled folder
def test_an_empty_unlabeled_folder_is_named_at_start(tmp_path):
    from conftest import write_pair

    root = tmp_path / "d"
    for i in range(4):
        write_pair(root, f"images/{i}.png", f"masks/{i}.png", classes=2, seed=i)
        write_pair(root, f"val/images/{i}.png", f"val/masks/{i}.png", classes=2, seed=9 + i)
    (root / "unlabeled").mkdir()
    report = check_layout(resolve_layout(load_config(None, [f"data.root={root}", "data.dataset=folder",
                                                            "data.num_classes=2"]).data, lenient=True))
    assert report.problems == [f"{root / 'unlabeled'}: holds no images"]
    cfg = tiny_cfg(root, "data.dataset=folder", "data.num_classes=2", "method.name=fixmatch", "train.iters=1")
    with pytest.raises(SemisegError, match=r"method fixmatch needs unlabeled data, but .*unlabeled holds no images"):
        Trainer(cfg, work_dir=str(tmp_path / "w"))


# ---------------------------------------------------------------- item 10: a torn last log line
def test_a_torn_last_log_line_neither_stops_resume_nor_report(tiny_scenes, tmp_path, capsys):
    cfg = ["train.iters=4", "train.eval_interval=4", "train.ckpt_interval=2", "train.deterministic=true"]
    train(tiny_cfg(tiny_scenes, *cfg), work_dir=str(tmp_path / "ref"))
    work = tmp_path / "w"
    part = Trainer(tiny_cfg(tiny_scenes, *cfg), work_dir=str(work))
    for _ in range(2):
        assert part.train_step() is not None
        part.step += 1
        part.log.write("train", part.step, {"loss": 1.0})
    part.save("latest.pth")
    part.log.close()
    with open(work / "metrics.jsonl", "a") as f:
        f.write('{"kind": "train", "step": 3, "lo')  # what a kill or a full disk mid-write leaves
    code, err = cli(capsys, "report", work)
    assert code == 0 and any("last line is torn" in line for line in err)
    resumed = train(tiny_cfg(tiny_scenes, *cfg), work_dir=str(work), resume="auto")
    assert "mIoU" in resumed
    rows = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "train"] == [1, 2, 3, 4]
    equal_weights(tmp_path / "ref" / "latest.pth", work / "latest.pth")


# ---------------------------------------------------------------- item 8: one run per work_dir
def test_two_runs_started_at_once_into_one_folder_one_refuses(tiny_scenes, tmp_path):
    write_cfg(tmp_path, tiny_scenes)
    work = tmp_path / "w"
    cmd = train_cmd(tmp_path, work, "train.iters=6", "train.eval_interval=3", "train.report=false")
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
             for _ in range(2)]
    results = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, _, err in results if code == 2).strip().splitlines()
    assert len(refused) == 1 and "is in use by another run (PID" in refused[0]
    evals = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in evals if r["kind"] == "eval"] == [3, 6]  # one run's rows, once each
    assert not (work / ".semiseg.lock").exists()


def test_a_lock_left_by_a_killed_run_is_taken_over_with_a_note(tiny_scenes, tmp_path, capsys):
    write_cfg(tmp_path, tiny_scenes)
    work = tmp_path / "w"
    p = subprocess.Popen(train_cmd(tmp_path, work, "train.iters=100000", "train.ckpt_interval=2"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    try:
        wait_for(lambda: (work / "latest.pth").exists() and steps_logged(work) >= 2)
        with pytest.raises(SemisegError, match=rf"is in use by another run \(PID {p.pid} on "):
            Trainer(short(tiny_scenes), work_dir=str(work), resume="auto")
    finally:  # a failed assertion must not leave a 100000-step run behind
        p.kill()
        p.wait()
    assert json.loads((work / ".semiseg.lock").read_text())["pid"] == p.pid  # SIGKILL leaves it
    trainer = Trainer(tiny_cfg(tiny_scenes, "train.iters=100000", "train.deterministic=true", "train.seed=1",
                               "train.threads=1"), work_dir=str(work), resume="auto")
    assert f"locked by a run that is gone (PID {p.pid}" in capsys.readouterr().err
    assert json.loads((work / ".semiseg.lock").read_text())["pid"] == os.getpid()
    trainer.close()
    assert not (work / ".semiseg.lock").exists()


# ---------------------------------------------------------------- item 9: a full disk
def test_a_lock_that_no_run_wrote_is_taken_over(tiny_scenes, tmp_path, capsys):
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / ".semiseg.lock").write_text('{"pid": "abc", "host": "vm"}')
    Trainer(short(tiny_scenes), work_dir=str(tmp_path)).close()
    assert "locked by a run that is gone (an unreadable lock); taking it over" in capsys.readouterr().err


class SmallDisk:
    """A folder on a tmpfs of a chosen size (root may mount one); ``fill`` takes the space that is left."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        path.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()})")

    def fill(self) -> None:
        fd = os.open(self.path / "filler", os.O_CREAT | os.O_WRONLY)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:  # ENOSPC: full
            pass
        finally:
            os.close(fd)

    def grow(self, size: int) -> None:
        (self.path / "filler").unlink(missing_ok=True)
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False)


def test_a_full_disk_gets_one_line_leaves_no_temporary_and_resume_continues_exactly(tiny_scenes, tmp_path, capsys):
    write_cfg(tmp_path, tiny_scenes)
    args = [tmp_path / "c.yaml", *TINY, "train.iters=4", "train.ckpt_interval=2", "train.eval_interval=100",
            "train.deterministic=true", "train.report=false"]
    assert cli(capsys, "train", *args, "--work-dir", tmp_path / "ref")[0] == 0
    size = (tmp_path / "ref" / "latest.pth").stat().st_size
    # room for one checkpoint and the logs, not for a second one beside it: step 4's best.pth cannot be written
    disk = SmallDisk(tmp_path / "disk", size * 3 // 2 + 256 * 1024)
    try:
        work = disk.path / "w"
        code, err = cli(capsys, "train", *args, "--work-dir", work)
        assert code == 2 and len(err) == 1, err
        assert err[0].startswith(f"error: cannot write {work}/") and "No space left on device" in err[0]
        assert not list(work.glob(".*.tmp*"))
        assert load_checkpoint(work / "latest.pth")["step"] == 2  # the previous checkpoint loads
        disk.fill()  # still full: the resume's log rewrite cannot be written either
        code, err = cli(capsys, "train", *args, "--work-dir", work, "--resume")
        assert code == 2 and len(err) == 1 and "No space left on device" in err[0], err
        assert not list(work.glob(".*.tmp*"))
        disk.grow(size * 4)
        assert cli(capsys, "train", *args, "--work-dir", work, "--resume")[0] == 0
        equal_weights(tmp_path / "ref" / "latest.pth", work / "latest.pth")
        rows = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows if r["kind"] == "train"] == [1, 2, 3, 4]
    finally:
        disk.unmount()


def test_a_doc_section_that_cannot_be_written_keeps_the_page_and_says_so_in_one_line(tmp_path):
    """The benchmark page holds every table: a section written on a full disk must not leave it torn."""
    disk = SmallDisk(tmp_path / "disk", 64 * 1024)
    try:
        doc = disk.path / "benchmarks.md"
        page = "# Benchmarks\n\n<!-- semiseg:s -->\nold table\n<!-- /semiseg:s -->\n\nprose after it\n"
        doc.write_text(page)
        disk.fill()
        with pytest.raises(SemisegError, match=f"^cannot write {doc}: No space left on device; the previous "
                                               "benchmarks.md is kept$"):
            write_section(doc, "s", "a new table\n" * 20000)
        assert doc.read_text() == page
        assert not list(disk.path.glob(".*.tmp*"))
    finally:
        disk.unmount()


# ---------------------------------------------------------------- item 18: SIGTERM to the process group
def process_stats():
    """(pid, state, process group) of each process, from /proc."""
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        yield entry.name, fields[0], fields[2]


def test_sigterm_to_the_group_with_loader_workers_and_an_echoing_parent_exits_and_resumes_exactly(tiny_scenes,
                                                                                                    tmp_path):
    # what `make demo` does: the run's output piped through a parent that echoes it (bench quality --echo),
    # DSSN reading two streams with two loader workers each; the signal reaches the parent too, so the pipe
    # closes under the run while it finishes its step and writes its checkpoint
    write_cfg(tmp_path, tiny_scenes)
    cfg = ["method.name=dssn", "data.num_workers=2", "train.iters=40", "train.ckpt_interval=1000",
           "train.eval_interval=1000", "train.report=false"]
    subprocess.run(train_cmd(tmp_path, tmp_path / "ref", *cfg), check=True, capture_output=True, env=ENV)
    work = tmp_path / "w"
    echo = f"{shlex.quote(sys.executable)} -c 'import sys\nfor line in sys.stdin: sys.stdout.write(line)'"
    line = f"{shlex.join(train_cmd(tmp_path, work, *cfg))} 2>{tmp_path / 'err'} | {echo} >/dev/null"
    p = subprocess.Popen(["sh", "-c", line], env=ENV, start_new_session=True)
    wait_for(lambda: steps_logged(work) >= 3)
    os.killpg(p.pid, signal.SIGTERM)

    def group_gone():  # no live process left in the group (zombies waiting to be reaped do not count)
        p.poll()
        return not any(stat[1] != "Z" and int(stat[2]) == p.pid for stat in process_stats())

    try:
        wait_for(group_gone, timeout=30)
    except TimeoutError:
        os.killpg(p.pid, signal.SIGKILL)
        pytest.fail("the run was still there 30 s after SIGTERM")
    assert "Traceback" not in (tmp_path / "err").read_text()
    assert 3 <= load_checkpoint(work / "latest.pth")["step"] < 40
    subprocess.run(train_cmd(tmp_path, work, *cfg) + ["--resume"], check=True, capture_output=True, env=ENV)
    equal_weights(tmp_path / "ref" / "latest.pth", work / "latest.pth")


def test_sigterm_to_a_suite_stops_its_run_with_a_checkpoint_and_starts_no_other(tiny_scenes, tmp_path):
    """`bench quality` (and `compare`) train each run in a child process: a SIGTERM to the parent alone (a
    scheduler's, `kill PID`) reaches the run, which checkpoints and stops, and no further run starts."""
    import yaml

    write_cfg(tmp_path, tiny_scenes)
    run_overrides = [*TINY, "train.threads=1", "train.iters=60", "train.ckpt_interval=1000", "train.eval_interval=1000",
                     "train.report=false"]
    suite = {"name": "s", "seeds": [0], "overrides": run_overrides,
             "runs": [{"name": n, "config": str(tmp_path / "c.yaml")} for n in ("a", "b")]}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(suite))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "semiseg", "bench", "quality", str(tmp_path / "s.yaml"), "--out", str(out)]
    p = subprocess.Popen(cmd, env=ENV, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    wait_for(lambda: steps_logged(out / "a" / "seed0") >= 3)
    os.kill(p.pid, signal.SIGTERM)  # the parent alone
    try:
        printed = p.communicate(timeout=60)[0]
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        pytest.fail("the suite was still there 60 s after SIGTERM")
    try:
        wait_for(lambda: not any(stat[1] != "Z" and int(stat[2]) == p.pid for stat in process_stats()), timeout=30)
    except TimeoutError:
        os.killpg(p.pid, signal.SIGKILL)
        pytest.fail("the run went on training after its suite was stopped")
    assert p.returncode == 128 + signal.SIGTERM and "Traceback" not in printed
    assert "stopped by SIGTERM" in printed and "the same command continues the suite" in printed
    assert 3 <= load_checkpoint(out / "a" / "seed0" / "latest.pth")["step"] < 60
    assert not (out / "b").exists()  # no run started after the signal



def test_sigterm_as_a_suite_starts_its_next_run_reaches_that_run(tmp_path, monkeypatch):
    """The signal can come after the suite decided to start a run and before the run's process is one it
    forwards to: the run that starts is stopped as well, not left to train alone. The signal is sent just
    before the process is made; the stand-in run sleeps 60 s unless stopped."""
    import time

    from semiseg.bench import quality

    made, real_popen, events = [], subprocess.Popen, []

    class Event(threading.Event):  # the suite's stop flag, kept to wait until the handler has set it
        def __init__(self):
            super().__init__()
            events.append(self)

    def popen(cmd, **kw):
        if not made:
            os.kill(os.getpid(), signal.SIGTERM)
            assert events[0].wait(10)  # the handler has run: the suite is stopping, its run not yet started
        made.append(real_popen([sys.executable, "-c", "import time; time.sleep(60)"], **kw))
        return made[-1]

    monkeypatch.setattr(quality.subprocess, "Popen", popen)
    monkeypatch.setattr(quality.threading, "Event", Event)
    suite = {"name": "s", "seeds": [0], "runs": [{"name": n, "config": "configs/scenes/supervised.yaml"}
                                                 for n in ("a", "b")]}
    t0 = time.time()
    with pytest.raises(SystemExit) as stopped:
        quality.run_suite(suite, tmp_path / "out")
    assert stopped.value.code == 128 + signal.SIGTERM
    assert len(made) == 1 and made[0].returncode == -signal.SIGTERM and time.time() - t0 < 30


# ---------------------------------------------------------------- item 3: torchrun restart, per-process state
@pytest.mark.slow
def test_torchrun_restart_after_a_killed_worker_equals_an_uninterrupted_two_process_run(tiny_scenes, tmp_path):
    write_cfg(tmp_path, tiny_scenes)
    cfg = ["method.name=dssn", "train.iters=30", "train.ckpt_interval=5", "train.eval_interval=30",
           "train.report=false", "train.deterministic=true", "train.seed=1"]

    def torchrun(work, port):
        return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--max-restarts", "1",
                "--master-port", str(port), "-m", "semiseg", "train", str(tmp_path / "c.yaml"), *TINY,
                "train.threads=1", *cfg, "--work-dir", str(work)]

    subprocess.run(torchrun(tmp_path / "ref", 29561), check=True, capture_output=True, env=ENV, timeout=600)
    work = tmp_path / "w"
    p = subprocess.Popen(torchrun(work, 29563), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    wait_for(lambda: (work / "latest.pth").exists() and steps_logged(work) >= 9)
    workers = subprocess.run(["pgrep", "-f", "-P", str(p.pid), "semiseg"], capture_output=True, text=True).stdout
    workers = workers.split()
    os.kill(int(workers[-1]), signal.SIGKILL)  # one worker, mid-epoch, between checkpoints
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out[-3000:]
    starts = [int(line.rsplit("start at step ", 1)[1]) for line in out.splitlines() if "start at step" in line]
    assert starts[0] == 0 and max(starts) >= 5  # the restarted group resumed
    equal_weights(tmp_path / "ref" / "latest.pth", work / "latest.pth")


@pytest.mark.parametrize("argv, message", [
    (["predict", "x.pth", "--input", "a.png", "--output", "o", "--opacity", "2"],
     "argument --opacity: 2 is not in [0, 1]"),
    (["export", "x.pth", "--input-size", "0", "5"], "argument --input-size: 0 is under 16 pixels"),
])
def test_option_values_out_of_range_are_refused_by_name(argv, message, capsys):
    code, err = cli(capsys, *argv)
    assert code == 2 and err[-1].endswith(message)
