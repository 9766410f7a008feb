"""The quality suite's bookkeeping: finished-run detection, the table, the doc section."""
import json
import subprocess
import sys

import pytest

from semiseg.bench.quality import final_eval, read_suite
from semiseg.bench.tables import table, write_section
from semiseg.errors import SemisegError


def fake_run(root, name, seed, miou, iters=10, finished=True, teacher=None, obj=None):
    wd = root / name / f"seed{seed}"
    wd.mkdir(parents=True)
    (wd / "config.yaml").write_text(f"train:\n  iters: {iters}\n")
    rows = [{"kind": "train", "step": iters, "s_per_step": 0.5}]
    ev = {"kind": "eval", "step": iters if finished else iters // 2, "mIoU": miou, "IoU_bg": miou + 10,
          "IoU_obj": miou - 10 if obj is None else obj}
    if teacher is not None:
        ev["teacher_mIoU"] = teacher
    rows.append(ev)
    (wd / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_table_means_spread_and_gap_closed(tmp_path):
    suite = {"name": "s", "seeds": [0, 1], "baseline": "sup", "full": "full",
             "runs": [{"name": "sup"}, {"name": "full"}, {"name": "m"}, {"name": "pending"},
                      {"name": "on-m", "baseline": "m"}]}
    fake_run(tmp_path, "sup", 0, 40.0)
    fake_run(tmp_path, "sup", 1, 42.0)
    fake_run(tmp_path, "full", 0, 61.0)
    fake_run(tmp_path, "full", 1, 61.0)
    fake_run(tmp_path, "m", 0, 50.0, teacher=52.0)
    fake_run(tmp_path, "m", 1, 52.0, teacher=54.0)
    fake_run(tmp_path, "pending", 0, 99.0, finished=False)
    fake_run(tmp_path, "on-m", 0, 56.0)
    assert final_eval(tmp_path / "pending" / "seed0") is None
    text = table(suite, tmp_path)
    assert "| sup | 2 | 41.00 ± 1.41 |" in text
    # (51 - 41) / (61 - 41); both seeds gain exactly 10: a zero-width interval
    assert "| m | 2 | 51.00 ± 1.41 | 53.00 ± 1.41 | +10.00 | [+10.00, +10.00] | +50% |" in text
    assert "| pending | 0 | - |" in text
    # a run's own baseline, on the seeds the run has (seed 0 only): (56 - 50) / (61 - 50)
    assert "| on-m | 1 | 56.00 | - | +6.00 | - | +55% |" in text  # one seed: no interval
    assert "| m | 61.0 | 41.0 |" in text  # per-class means
    # 4 finished runs on seed 0 and 3 on seed 1, 10 steps at 0.5 s each; the unfinished run does not count
    assert "Run time of the finished runs (s/step x steps, summed): 0m35s (seed 0 0m20s, seed 1 0m15s)." in text


def test_table_says_where_and_in_what_precision_its_runs_trained(tmp_path):
    """A run's setup records (one per start or resume) name its device and precision; the table counts them,
    and runs from before the record exist say so instead of passing for this machine's."""
    suite = {"name": "s", "seeds": [0, 1], "baseline": "sup", "runs": [{"name": "sup"}, {"name": "m"}]}
    for name, seed in [("sup", 0), ("sup", 1), ("m", 0), ("m", 1)]:
        fake_run(tmp_path, name, seed, 40.0)

    def setup(device, precision):
        return {"kind": "setup", "step": 0, "device": device, "precision": precision}

    for name, seed, records in [("sup", 0, [setup("EPYC", "fp32")]), ("sup", 1, [setup("EPYC", "fp32")]),
                                ("m", 0, [setup("EPYC", "fp32"), {**setup("Xeon", "bf16 autocast"), "step": 5}])]:
        metrics = tmp_path / name / f"seed{seed}" / "metrics.jsonl"
        metrics.write_text("".join(json.dumps(r) + "\n" for r in records) + metrics.read_text())
    assert final_eval(tmp_path / "m" / "seed0")["machines"] == ["EPYC, fp32", "Xeon, bf16 autocast"]
    assert ("Trained on (the runs' own records, a resumed run under each): EPYC, fp32 (3 runs); "
            "Xeon, bf16 autocast (1 run); not recorded (1 run).") in table(suite, tmp_path)


def test_gain_interval_is_paired_by_seed(tmp_path):
    """Seeds that move baseline and method together give a narrow interval although each run's own spread is
    wide; the half-width is t(0.975, n-1) x sd(differences) / sqrt(n)."""
    suite = {"name": "s", "seeds": [0, 1, 2], "baseline": "sup", "runs": [{"name": "sup"}, {"name": "m"}]}
    for seed, (b, m) in enumerate([(40.0, 42.0), (50.0, 53.0), (45.0, 49.0)]):
        fake_run(tmp_path, "sup", seed, b)
        fake_run(tmp_path, "m", seed, m)
    # differences 2, 3, 4: mean 3, sd 1, t(0.975, 2) = 4.303 -> 3 +- 2.484
    assert "| m | 3 | 48.00 ± 5.57 | - | +3.00 | [+0.52, +5.48] |" in table(suite, tmp_path)


def test_a_sentence_per_run_says_which_differences_the_interval_supports(tmp_path):
    suite = {"name": "s", "seeds": [0, 1, 2], "baseline": "sup", "versus": "um",
             "runs": [{"name": "sup"}, {"name": "um"}, {"name": "m"}, {"name": "one-seed"}]}
    for seed, (b, u, m) in enumerate([(40.0, 42.0, 41.0), (50.0, 53.0, 55.0), (45.0, 49.0, 50.0)]):
        fake_run(tmp_path, "sup", seed, b)
        fake_run(tmp_path, "um", seed, u)
        fake_run(tmp_path, "m", seed, m)
    fake_run(tmp_path, "one-seed", 0, 60.0)
    text = table(suite, tmp_path)
    # um - sup: 2, 3, 4 -> [+0.52, +5.48]; m - sup: 1, 5, 5 -> 3.67 +- 5.74; m - um: -1, 2, 1 -> 0.67 +- 3.79
    assert ("- um: +3.00 against sup (by seed +2.00 / +3.00 / +4.00), [+0.52, +5.48]: a gain the interval "
            "supports.") in text
    assert ("- m: +3.67 against sup (by seed +1.00 / +5.00 / +5.00), [-2.07, +9.40]: no difference shown (the "
            "interval holds 0); +0.67 against um (by seed -1.00 / +2.00 / +1.00), [-3.13, +4.46]: no difference "
            "shown (the interval holds 0). No class below sup on the seed mean.") in text
    assert "- one-seed" not in text and "- sup" not in text  # one seed has no interval; the baseline no sentence


def test_the_sentence_gives_each_seeds_difference_and_the_classes_below_the_baseline(tmp_path):
    """What a reader checks a recipe by: whether every seed gains, and whether any class ends below the
    baseline on the seed mean (over the seeds both runs finished), with that class's IoU on each seed: whether one
    seed or all of them put it there."""
    suite = {"name": "s", "seeds": [0, 1, 2], "baseline": "sup",
             "runs": [{"name": "sup"}, {"name": "m"}, {"name": "low"}]}
    for seed, (b, m, m_obj, low_obj) in enumerate([(40.0, 42.0, 25.0, 25.0), (50.0, 53.0, 45.0, 45.0),
                                                   (45.0, 49.0, 38.0, 32.0)]):
        fake_run(tmp_path, "sup", seed, b)  # obj 30, 40, 35: mean 35.0
        fake_run(tmp_path, "m", seed, m, obj=m_obj)  # obj mean 36.0, though below on seed 0
        fake_run(tmp_path, "low", seed, m, obj=low_obj)  # obj mean 34.0
    text = table(suite, tmp_path)
    assert ("- m: +3.00 against sup (by seed +2.00 / +3.00 / +4.00), [+0.52, +5.48]: a gain the interval "
            "supports. No class below sup on the seed mean.") in text
    assert ("- low: +3.00 against sup (by seed +2.00 / +3.00 / +4.00), [+0.52, +5.48]: a gain the interval "
            "supports. Below sup on the seed mean: obj (34.0 against 35.0; by seed 25.0 / 45.0 / 32.0 against "
            "30.0 / 40.0 / 35.0).") in text


def test_table_at_an_intermediate_step(tmp_path):
    suite = {"name": "s", "seeds": [0], "baseline": "sup", "runs": [{"name": "sup"}, {"name": "m"}, {"name": "late"}]}
    for name, mid, last in (("sup", 40.0, 45.0), ("m", 38.0, 50.0)):
        fake_run(tmp_path, name, 0, last)
        metrics = tmp_path / name / "seed0" / "metrics.jsonl"
        metrics.write_text(json.dumps({"kind": "eval", "step": 5, "mIoU": mid}) + "\n" + metrics.read_text())
    fake_run(tmp_path, "late", 0, 60.0, finished=False)  # has an eval at step 5 but has not finished: not listed
    text = table(suite, tmp_path, step=5)
    assert "| sup | 1 | 40.00 |" in text and "| m | 1 | 38.00 | - | -2.00 |" in text
    assert "| late | 0 | - |" in text
    assert "| m | 1 | 50.00 | - | +5.00 |" in table(suite, tmp_path)  # the default is still the last eval
    assert final_eval(tmp_path / "m" / "seed0", step=7) is None  # no eval at that step


def test_table_reads_baseline_and_reference_runs_from_another_suite(tmp_path):
    main, abl = tmp_path / "main", tmp_path / "abl"
    fake_run(main, "sup", 0, 40.0)
    fake_run(main, "sup", 1, 30.0)  # a seed the ablation suite does not have: not used
    fake_run(main, "full", 0, 60.0)
    fake_run(main, "m", 0, 50.0)
    fake_run(main, "unrelated", 0, 1.0)
    fake_run(abl, "m-ablated", 0, 45.0)
    suite = {"name": "abl", "seeds": [0], "baseline": "sup", "full": "full", "reference": str(main),
             "reference_runs": ["m"], "runs": [{"name": "m-ablated"}]}
    text = table(suite, abl)
    assert "| sup (reference) | 1 | 40.00 |" in text
    assert "| m (reference) | 1 | 50.00 | - | +10.00 | - | +50% |" in text
    assert "| m-ablated | 1 | 45.00 | - | +5.00 | - | +25% |" in text
    assert "unrelated" not in text
    assert text.index("m (reference)") < text.index("m-ablated")


def test_write_section_replaces_only_its_block(tmp_path):
    doc = tmp_path / "b.md"
    doc.write_text("intro\n<!-- semiseg:s -->\nold\n<!-- /semiseg:s -->\noutro\n")
    write_section(doc, "s", "new")
    assert doc.read_text() == "intro\n<!-- semiseg:s -->\nnew\n<!-- /semiseg:s -->\noutro\n"
    write_section(doc, "t", "other")
    assert doc.read_text().endswith("<!-- semiseg:t -->\nother\n<!-- /semiseg:t -->\n")


def test_write_section_writes_a_linked_page_where_it_lies_and_keeps_its_mode(tmp_path):
    page = tmp_path / "site" / "b.md"
    page.parent.mkdir()
    page.write_text("<!-- semiseg:s -->\nold\n<!-- /semiseg:s -->\n")
    page.chmod(0o600)
    link = tmp_path / "b.md"
    link.symlink_to(page)
    write_section(link, "s", "new")
    assert link.is_symlink() and page.read_text() == "<!-- semiseg:s -->\nnew\n<!-- /semiseg:s -->\n"
    assert page.stat().st_mode & 0o777 == 0o600


def test_the_doc_section_is_written_even_when_the_tables_reader_has_gone(tmp_path):
    """`semiseg bench quality S --table-only --doc D | head -1`: the pipe closes before the table is printed; the
    section must be in D all the same (it was printed first, and the broken pipe stopped the command)."""
    fake_run(tmp_path / "out", "sup", 0, 40.0)
    fake_run(tmp_path / "out", "m", 0, 50.0)
    (tmp_path / "s.yaml").write_text("name: s\nbaseline: sup\nruns:\n  - {name: sup}\n  - {name: m}\n")
    doc = tmp_path / "d.md"
    p = subprocess.Popen([sys.executable, "-m", "semiseg", "bench", "quality", str(tmp_path / "s.yaml"), "--table-only",
                          "--out", str(tmp_path / "out"), "--doc", str(doc)], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, cwd=tmp_path)
    p.stdout.close()  # the reader is gone before the command writes anything
    p.wait(timeout=120)
    assert "| m | 1 | 50.00 | - | +10.00 |" in doc.read_text()


def test_a_table_of_no_finished_run_keeps_the_page(tmp_path):
    """`--table-only` pointed at a folder without the suite's runs (a forgotten `--out`) wrote a table of empty
    rows over the page's measured one; it is one line naming the folder, exit 2, the page and folder untouched."""
    (tmp_path / "s.yaml").write_text("name: s\nbaseline: sup\nruns:\n  - {name: sup}\n  - {name: m}\n")
    doc = tmp_path / "d.md"
    doc.write_text("<!-- semiseg:s -->\nmeasured\n<!-- /semiseg:s -->\n")
    out = subprocess.run([sys.executable, "-m", "semiseg", "bench", "quality", str(tmp_path / "s.yaml"), "--table-only",
                          "--out", str(tmp_path / "elsewhere"), "--doc", str(doc)], capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "elsewhere" in out.stderr
    assert doc.read_text() == "<!-- semiseg:s -->\nmeasured\n<!-- /semiseg:s -->\n"
    assert not (tmp_path / "elsewhere").exists()
    fake_run(tmp_path / "out", "sup", 0, 40.0)  # finished, evaluated at step 10 only
    out = subprocess.run([sys.executable, "-m", "semiseg", "bench", "quality", str(tmp_path / "s.yaml"), "--table-only",
                          "--out", str(tmp_path / "out"), "--step", "7", "--doc", str(doc)], capture_output=True,
                         text=True, cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "evaluation at step 7" in out.stderr
    assert doc.read_text() == "<!-- semiseg:s -->\nmeasured\n<!-- /semiseg:s -->\n"


def test_suite_needs_unique_names(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("name: s\nruns:\n  - {name: a, config: x}\n  - {name: a, config: y}\n")
    with pytest.raises(SemisegError, match="unique name"):
        read_suite(p)


@pytest.mark.parametrize("runs", ["[]", "5", "[a, b]"])
def test_a_suite_whose_runs_are_no_list_of_runs_is_one_line(runs, tmp_path):
    """`runs: []` (or no list of mappings) is one line naming the file and the key, exit 2; was a traceback."""
    p = tmp_path / "s.yaml"
    p.write_text(f"name: s\nruns: {runs}\n")
    with pytest.raises(SemisegError, match=f"suite file {p}: 'runs' must list one run or more"):
        read_suite(p)
    out = subprocess.run([sys.executable, "-m", "semiseg", "bench", "quality", str(p), "--table-only"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "'runs'" in out.stderr


def test_boundary_f_and_auroc_on_known_inputs():
    import numpy as np
    import torch

    from semiseg.bench.pseudo import auroc, boundary_counts

    gt = torch.zeros(8, 8, dtype=torch.long)
    gt[:, 4:] = 1
    assert boundary_counts(gt, gt) == (16, 16, 16, 16)  # two boundary columns of 8
    shifted = torch.zeros(8, 8, dtype=torch.long)
    shifted[:, 5:] = 1  # one pixel off: still within the 1 px tolerance
    mp, np_, mg, ng = boundary_counts(shifted, gt)
    assert (mp, np_) == (16, 16) and (mg, ng) == (16, 16)
    far = torch.zeros(8, 8, dtype=torch.long)
    far[:, 7:] = 1
    assert boundary_counts(far, gt)[0] == 0
    assert auroc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([False, False, True, True])) == 1.0
    assert auroc(np.array([0.5, 0.5, 0.5, 0.5]), np.array([False, True, False, True])) == 0.5


def test_confused_with_names_where_each_true_class_goes_wrong_most():
    import torch

    from semiseg.bench.pseudo import confused_with

    cm = torch.tensor([[90, 6, 4],    # background: 6% to class 1
                       [10, 50, 40],  # class 1: 40% to class 2 (more than to background)
                       [0, 0, 0]])    # class 2: never in the labels
    assert confused_with(cm) == [(1, pytest.approx(0.06)), (2, pytest.approx(0.40)), (-1, 0.0)]
    assert confused_with(torch.eye(2, dtype=torch.long) * 5) == [(-1, 0.0), (-1, 0.0)]  # nothing went elsewhere


def test_bench_pseudo_end_to_end(tiny_scenes, tiny_store, tmp_path, capsys):
    from semiseg.cli import run
    from semiseg.engine.trainer import train

    from conftest import tiny_cfg

    train(tiny_cfg(tiny_scenes, "train.iters=2", "train.eval_interval=2"), work_dir=str(tmp_path))
    assert run(["bench", "pseudo", str(tmp_path / "latest.pth"), "--proposals", str(tiny_store),
                "--doc", str(tmp_path / "d.md")]) == 0
    text = (tmp_path / "d.md").read_text()
    for row in ("| threshold 0.95 |", "| CPLG (class_aware) |", "| csl |", "| class_share (DARS) |",
                "| max confidence |", "| refined by iom |", "| prediction aligned to the labeled shares |",
                "| labeled |", "| predicted (mean probability) |", "| refined by cpi |"):
        assert row in text
    assert "Per true class: the other class the label maps give its pixels most often" in text
    # per predicted class: `none` keeps every pixel of every predicted class (never-predicted classes: -)
    none_rows = [line for line in text.splitlines() if line.startswith("| none |") and " / " in line]
    cells = none_rows[0].strip("| ").split(" | ")[1:]
    assert any(c != "-" for c in cells) and all(c == "-" or c.startswith("100.0 / ") for c in cells)
    # per true class: `none` selects everything, so its recall is the prediction's own per-class recall
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Per true class: recall"))
    recall_none = next(line for line in lines[start:] if line.startswith("| none |")).strip("| ").split(" | ")[1:]
    start = lines.index("Per class, the label maps before selection: precision / recall (%).")
    prediction = next(line for line in lines[start:] if line.startswith("| prediction |")).strip("| ").split(" | ")[1:]
    assert recall_none == [c.split(" / ")[1] for c in prediction] and any(c not in ("-", "0.0") for c in recall_none)
    # --scales: the maps are the model's probabilities averaged over the scales, as a multi-scale teacher's
    import torch
    import torch.nn.functional as F

    from semiseg.bench.pseudo import _probs
    from semiseg.inference import load

    predictor = load(str(tmp_path / "latest.pth"))
    item = {"image": torch.randn(3, 32, 32), "mask": torch.zeros(32, 32, dtype=torch.long)}
    with torch.no_grad():
        x = item["image"][None]
        big = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)
        down = F.interpolate(predictor.model(big).float(), size=(32, 32), mode="bilinear", align_corners=True)
        want = (predictor.model(x).float().softmax(1) + down.softmax(1)) / 2
        assert torch.allclose(_probs(predictor, item, [1.0, 2.0]), want, atol=1e-5)
    assert run(["bench", "pseudo", str(tmp_path / "latest.pth"), "--scales", "1,2", "--max-images", "2",
                "--section", "ms", "--doc", str(tmp_path / "d.md")]) == 0
    written = (tmp_path / "d.md").read_text()
    assert "--max-images 2 --scales 1,2 --section ms --doc" in written
    assert "The checkpoint's student, labelling at scales 1, 2; 2 unlabeled images, scored" in written
    with pytest.raises(SemisegError, match="--scales 1,0: numbers between 0.25 and 4"):
        run(["bench", "pseudo", str(tmp_path / "latest.pth"), "--scales", "1,0"])
    with pytest.raises(SemisegError, match="--max-images -1: 0 \\(all\\) or more"):
        run(["bench", "pseudo", str(tmp_path / "latest.pth"), "--max-images", "-1"])


def test_bench_pseudo_finds_a_relative_data_root_elsewhere_with_data_root(tiny_scenes, tmp_path, monkeypatch):
    """A checkpoint saves data.root as given (relative to where it trained); from another folder the root is
    given with --data-root, and without it the refusal says so."""
    from semiseg.cli import run
    from semiseg.engine.trainer import train

    from conftest import tiny_cfg

    (tmp_path / "there").mkdir()
    (tmp_path / "there" / "scenes").symlink_to(tiny_scenes)
    monkeypatch.chdir(tmp_path / "there")
    train(tiny_cfg("scenes", "train.iters=1", "train.eval_interval=1"), work_dir=str(tmp_path / "run"))
    monkeypatch.chdir(tmp_path)
    ckpt = str(tmp_path / "run" / "latest.pth")
    with pytest.raises(SemisegError, match=r"data.root 'scenes'.*--data-root"):
        run(["bench", "pseudo", ckpt, "--max-images", "1"])
    assert run(["bench", "pseudo", ckpt, "--max-images", "1", "--data-root", str(tmp_path / "there" / "scenes"),
                "--doc", str(tmp_path / "d.md")]) == 0
    assert "1 unlabeled images, scored" in (tmp_path / "d.md").read_text()
    import json

    other = tmp_path / "three"  # the same scenes labelled with 3 classes: not the data this checkpoint predicts
    other.mkdir()
    for entry in tiny_scenes.iterdir():
        if entry.name != "meta.json":
            (other / entry.name).symlink_to(entry)
    meta = json.loads((tiny_scenes / "meta.json").read_text())
    (other / "meta.json").write_text(json.dumps({**meta, "class_names": meta["class_names"][:3],
                                                 "palette": meta["palette"][:3]}))
    with pytest.raises(SemisegError, match=rf"{ckpt} predicts {len(meta['class_names'])} classes and the data at "
                                           rf"{other} has 3"):
        run(["bench", "pseudo", ckpt, "--data-root", str(other)])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SemisegError, match=rf"data.root {tmp_path / 'notes.txt'} is a file, not a folder"):
        run(["bench", "pseudo", ckpt, "--data-root", str(tmp_path / "notes.txt")])


def test_bench_speed_reports_every_number(tiny_scenes, tmp_path):
    """Each number is what it says: images per second are the step's images over its time (UniMatch's step
    reads the labeled and the unlabeled batch, supervised-only the labeled one), peak memory is the process's
    high-water mark, the profile's shares are each operator's part of the profiled time."""
    import resource

    from semiseg.bench.speed import measure, measure_overhead, profile_step, speed_table

    from conftest import tiny_cfg

    res = [measure(tiny_cfg(tiny_scenes, f"method.name={m}",
                            "method.mix=roll" if m != "supervised" else "train.seed=0"), steps=2, warmup=1)
           for m in ("supervised", "unimatch")]
    for r, images in zip(res, (4, 8)):  # data.batch_size=4 per stream
        # rounded to 0.1: on a loaded machine a step takes seconds and the rounding alone is over 1%
        assert r["train_images_per_s"] == pytest.approx(images / r["step_s"], rel=0.01, abs=0.05)
        assert r["inference_images_per_s"] > 0 and r["step_with_loader_s"] >= r["step_s"] * 0.5
    high_water = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert 0 < res[0]["peak_memory_mib"] <= res[1]["peak_memory_mib"] <= round(high_water)  # a high-water mark
    assert "| unimatch |" in speed_table(res) and f"{res[1]['step_s'] / res[0]['step_s']:.2f}x" in speed_table(res)
    parts = measure_overhead(tiny_cfg(tiny_scenes, "method.name=unimatch", "method.mix=roll"), steps=2, warmup=1)
    assert set(parts) == {"step_without_network"}  # UniMatch has no teacher to average
    table = profile_step(tiny_cfg(tiny_scenes, "method.name=unimatch", "method.mix=roll"), top=5, steps=1)
    *rows, total = [[c.strip() for c in r.strip("|").split("|")] for r in table.splitlines()[2:]]
    assert len(rows) == 5 and any("conv" in r[0] for r in rows)  # the network's convolutions lead a step
    ms, shares = [float(r[2]) for r in rows], [float(r[3].strip("%")) for r in rows]
    assert ms == sorted(ms, reverse=True) and total[0] == "all operators" and total[3] == "100.0%"
    total_ms = float(total[2])  # the profiled step's time: each share is its operator's part of it
    assert sum(ms) <= total_ms + 0.3 and all(abs(m * 100 / total_ms - s) <= 0.2 + 0.05 * s for m, s in zip(ms, shares))
    parts = measure_overhead(tiny_cfg(tiny_scenes, "method.name=dssn"), steps=2, warmup=1)
    assert set(parts) == {"ema", "step_without_network"}  # DSSN's teacher is averaged each step


def fake_res_run(root, name, seed, oiou, iters=10, finished=True, teacher=False):
    """A referring run's files as the engine writes them; a teacher-student run's teacher holds ``oiou`` and
    its student 5 points less."""
    wd = root / name / f"seed{seed}"
    wd.mkdir(parents=True)
    (wd / "config.yaml").write_text(f"task: res\ntrain:\n  iters: {iters}\n")
    scores = {"oIoU": oiou, "mIoU": oiou - 1, "P@0.5": 50.0, "P@0.7": 30.0, "P@0.9": 5.0}
    ev = {"kind": "eval", "step": iters if finished else iters // 2}
    if teacher:
        ev.update({**{k: v - 5 for k, v in scores.items()}, **{f"teacher_{k}": v for k, v in scores.items()}})
    else:
        ev.update(scores)
    rows = [{"kind": "train", "step": iters, "loss_x": 0.1, "s_per_step": 0.4}, ev]
    (wd / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_res_suite_table_gains_per_baseline(tmp_path):
    suite = {"name": "r", "seeds": [0], "runs": [
        {"name": "sup-1pct"}, {"name": "semires-1pct", "baseline": "sup-1pct"},
        {"name": "sup-10pct"}, {"name": "semires-10pct", "baseline": "sup-10pct"}, {"name": "pending"}]}
    fake_res_run(tmp_path, "sup-1pct", 0, 20.0)
    fake_res_run(tmp_path, "semires-1pct", 0, 32.5, teacher=True)
    fake_res_run(tmp_path, "sup-10pct", 0, 40.0)
    fake_res_run(tmp_path, "semires-10pct", 0, 39.0, teacher=True)
    fake_res_run(tmp_path, "pending", 0, 99.0, finished=False)
    assert final_eval(tmp_path / "pending" / "seed0") is None
    text = table(suite, tmp_path)
    # the gain is the teacher's oIoU (32.50) over supervised-only's (20.00)
    assert "| semires-1pct | 1 | 32.50 | 31.50 | 50.00 | 30.00 | 5.00 | +12.50 | - | - | 0.40 |" in text
    assert "| semires-10pct | 1 | 40.00" not in text and "| -1.00 |" in text
    assert "| sup-1pct | 1 | 20.00 | 19.00 | 50.00 | 30.00 | 5.00 | - |" in text
    assert "| pending | 0 | - |" in text
    assert "Run time of the finished runs (s/step x steps, summed): 0m16s" in text  # 4 runs x 10 steps x 0.4 s


def test_suite_runs_in_parallel_and_resumes(tiny_scenes, tmp_path, capsys):
    import os

    from semiseg.cli import run

    from conftest import REPO, TINY

    overrides = ", ".join(f'"{o}"' for o in TINY + [f"data.root={tiny_scenes}", "model.pretrained=",
                                                   "train.iters=2", "train.eval_interval=2"])
    (tmp_path / "s.yaml").write_text(f"name: par\nseeds: [0]\noverrides: [{overrides}]\nruns:\n"
                                     f"  - {{name: a, config: {REPO}/configs/scenes/supervised.yaml}}\n"
                                     f"  - {{name: b, config: {REPO}/configs/scenes/supervised.yaml, "
                                     "overrides: [train.lr=0.002]}\n")
    out = tmp_path / "out"
    assert run(["bench", "quality", str(tmp_path / "s.yaml"), "--out", str(out), "--jobs", "2"]) == 0
    first = capsys.readouterr().out
    assert "2 to go, 2 at a time" in first and "| a | 1 |" in first and "| b | 1 |" in first
    cfg = (out / "b/seed0/config.yaml").read_text()
    assert f"threads: {max(1, (os.cpu_count() or 1) // 2)}" in cfg and "lr: 0.002" in cfg
    assert run(["bench", "quality", str(tmp_path / "s.yaml"), "--out", str(out), "--jobs", "2"]) == 0
    assert "2 finished, 0 to go" in capsys.readouterr().out
    assert run(["bench", "quality", str(tmp_path / "s.yaml"), "--out", str(out), "--only", "a", "--seeds", "1",
                "--echo"]) == 0
    text = capsys.readouterr().out  # --seeds picks what runs now; the table keeps the suite's seeds
    assert "1 runs, 0 finished, 1 to go" in text and "| a | 1 |" in text
    # --echo: the run's own output (its per-class table) is shown here and still kept in its train.log
    assert "mIoU" in text.split("start a seed 1")[1].split("| run |")[0]
    assert "mIoU" in (out / "a/seed1/train.log").read_text()
    assert "mIoU" not in first.split("| run |")[0]  # without it, only the suite's own lines
    assert (out / "a/seed1/latest.pth").is_file() and not (out / "b/seed1").exists()


def test_bench_speed_times_the_step_with_and_without_its_loader_under_the_same_load(monkeypatch):
    """Another process that starts or pauses between two timings must not move their ratio: a fake clock on
    which the machine is three times slower for the first half of the timed steps, a loader that adds a
    tenth to each step; the step with its loader reads 1.1 times the step, whenever the load changed."""
    import contextlib
    import itertools
    from types import SimpleNamespace

    import torch

    from semiseg.bench import speed

    now, calls = [0.0], itertools.count(1)
    load = {"factor": 3.0}

    def spend(seconds):
        now[0] += seconds * load["factor"]

    class Loader:
        def __next__(self):
            spend(0.1)
            return {"x": torch.zeros(2, 3, 4, 4)}

    class Trainer:
        device, batches = torch.device("cpu"), Loader()
        method = SimpleNamespace(unlabeled_streams=1)
        autocast = staticmethod(contextlib.nullcontext)

        def train_step(self):
            next(self.batches)
            spend(1.0)
            if next(calls) == 10:  # warm-up and the first four pairs at three times the cost, then alone
                load["factor"] = 1.0

        class model:
            def eval():
                return lambda x: spend(0.5)

    monkeypatch.setattr(speed, "bench_trainer", lambda cfg: contextlib.nullcontext(Trainer()))
    monkeypatch.setattr(speed, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    cfg = SimpleNamespace(data=SimpleNamespace(batch_size=2), train=SimpleNamespace(accum_steps=1),
                          method=SimpleNamespace(name="unimatch"))
    r = speed.measure(cfg, steps=8, warmup=1)
    assert r["step_with_loader_s"] == pytest.approx(1.1 * r["step_s"], rel=1e-3)
    assert r["step_s"] == pytest.approx(2.0)  # the median of four steps at 3 s and four at 1 s


def test_bench_pseudo_on_folder_data_says_first_that_its_unlabeled_images_have_no_masks(own_folder, tmp_path,
                                                                                     monkeypatch):
    """A folder data set's unlabeled images carry no masks to score against: said at once, not after asking
    for --data-root (a relative data.root from another folder) and then refusing for the masks."""
    from semiseg.cli import run
    from semiseg.configure import load_config
    from semiseg.engine.trainer import train

    root = own_folder.parent
    monkeypatch.chdir(root.parent)
    train(load_config(own_folder, [f"data.root={root.name}", "train.iters=1"]), work_dir=str(tmp_path / "run"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SemisegError, match=r"folder data set's unlabeled images have no masks.*data\.unlabeled"):
        run(["bench", "pseudo", str(tmp_path / "run" / "latest.pth")])


TWICE = "<!-- semiseg:s -->\na\n<!-- /semiseg:s -->\n<!-- semiseg:s -->\nb\n<!-- /semiseg:s -->\n"


@pytest.mark.parametrize("page", ["<!-- semiseg:s -->\nold\n", "x\n<!-- /semiseg:s -->\nold\n<!-- semiseg:s -->\ny\n",
                                  TWICE])
def test_a_section_whose_markers_are_not_one_pair_in_order_keeps_the_page(page, tmp_path):
    """A start marker without its end (or an end before its start, or two sections of one name) made the next
    write append a second section and the one after replace everything between the two starts: 570 lines of
    other tables went. It is one line naming the page and the section, the page as it was."""
    doc = tmp_path / "d.md"
    doc.write_text(page)
    with pytest.raises(SemisegError, match=f"{doc}: section 's'"):
        write_section(doc, "s", "new")
    assert doc.read_text() == page


def test_a_page_without_write_permission_is_not_replaced(tmp_path):
    """The page is replaced by a rename, which a read-only file does not stop: its mode says keep it."""
    doc = tmp_path / "d.md"
    doc.write_text("<!-- semiseg:s -->\nold\n<!-- /semiseg:s -->\n")
    doc.chmod(0o444)
    with pytest.raises(SemisegError, match=f"cannot write {doc}: it is read-only"):
        write_section(doc, "s", "new")
    assert doc.read_text() == "<!-- semiseg:s -->\nold\n<!-- /semiseg:s -->\n"


def test_gain_and_gap_closed_are_paired_on_the_seeds_the_baseline_has(tmp_path):
    """A baseline missing a seed: the gain was the method's 3-seed mean against the baseline's 2-seed mean, and
    lay outside its own (paired, 2-seed) interval. Gain and gap closed now use the seeds both (all three) have."""
    suite = {"name": "s", "seeds": [0, 1, 2], "baseline": "sup", "full": "full",
             "runs": [{"name": "sup"}, {"name": "full"}, {"name": "m"}]}
    for seed, (b, f, m) in enumerate([(40.0, 60.0, 45.0), (50.0, 70.0, 56.0), (45.0, 65.0, 40.0)]):
        if seed < 2:
            fake_run(tmp_path, "sup", seed, b)
        fake_run(tmp_path, "full", seed, f)
        fake_run(tmp_path, "m", seed, m)
    # paired seeds 0, 1: differences 5, 6 -> +5.50; the gap on those seeds is 20 each -> 28%
    assert "| m | 3 | 47.00 ± 8.19 | - | +5.50 | [-0.85, +11.85] | +28% |" in table(suite, tmp_path)


@pytest.mark.parametrize("seeds", ["[0, 0, 1]", "[]", "1", "'012'", "[0, x]", "[true]", "[[0]]"])
def test_seeds_must_be_a_list_of_distinct_integers(seeds, tmp_path):
    """A repeated seed counted twice in every mean and interval; `seeds: 1` was a traceback; `seeds: []` blamed
    --out."""
    p = tmp_path / "s.yaml"
    p.write_text(f"name: s\nseeds: {seeds}\nruns:\n  - {{name: a, config: x}}\n")
    with pytest.raises(SemisegError, match=f"suite file {p}: 'seeds' must list distinct integer seeds"):
        read_suite(p)


@pytest.mark.parametrize("key, line", [("baseline", "baseline: nosuch"), ("full", "full: nosuch"),
                                       ("versus", "versus: nosuch"), ("baseline", "baseline: [a]"),
                                       ("runs.1.baseline", None)])
def test_baseline_full_and_versus_name_a_run_of_the_suite(key, line, tmp_path):
    """A baseline, full or versus naming no run emptied every gain, gap or sentence of the table, silently."""
    p = tmp_path / "s.yaml"
    runs = "  - {name: a, config: x}\n  - {name: b, config: x" + (", baseline: nosuch}" if line is None else "}")
    p.write_text(f"name: s\n{line or ''}\nruns:\n{runs}\n")
    with pytest.raises(SemisegError, match=f"suite file {p}: '{key}' names no run"):
        read_suite(p)


def test_a_reference_suite_may_name_its_baseline_from_the_reference(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("name: s\nreference: elsewhere\nbaseline: sup\nfull: full\nreference_runs: [dssn]\nversus: dssn\n"
                 "runs:\n  - {name: a, config: x}\n")
    assert read_suite(p)["versus"] == "dssn"


@pytest.mark.parametrize("text, what", [("name: [x", "not valid YAML"),
                                        ("name: 'a -->'\nruns:\n  - {name: a, config: x}\n", "'name'"),
                                        ("name: s\nruns:\n  - {name: 'a/b', config: x}\n", "'runs'")])
def test_a_suite_file_that_is_no_yaml_or_names_no_folder_is_one_line(text, what, tmp_path):
    """Names become folders and the page's markers: a name with '-->' or '/' broke them."""
    p = tmp_path / "s.yaml"
    p.write_text(text)
    with pytest.raises(SemisegError, match=f"suite file {p}.*{what}"):
        read_suite(p)


def test_table_only_keeps_the_runs_folders_suite_record(tmp_path):
    """`--table-only` only reads the runs: it rewrote their folder's suite.yaml (which `semiseg report` rebuilds
    the table from) with whatever suite it was given."""
    fake_run(tmp_path / "out", "sup", 0, 40.0)
    (tmp_path / "out" / "suite.yaml").write_text("name: s\nruns:\n  - {name: sup}\n")
    (tmp_path / "s.yaml").write_text("name: s\nruns:\n  - {name: sup}\n  - {name: m}\n")
    out = subprocess.run([sys.executable, "-m", "semiseg", "bench", "quality", str(tmp_path / "s.yaml"), "--table-only",
                          "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0 and "| sup | 1 | 40.00 |" in out.stdout
    assert (tmp_path / "out" / "suite.yaml").read_text() == "name: s\nruns:\n  - {name: sup}\n"


@pytest.mark.parametrize("row", ['{"step": 5}', "[1, 2]"])
def test_a_metrics_row_that_is_no_record_is_one_line(row, tmp_path):
    fake_run(tmp_path, "sup", 0, 40.0)
    metrics = tmp_path / "sup" / "seed0" / "metrics.jsonl"
    metrics.write_text(row + "\n" + metrics.read_text())
    with pytest.raises(SemisegError, match=f"{metrics}, line 1: not a metrics record"):
        final_eval(tmp_path / "sup" / "seed0")


@pytest.mark.parametrize("cfg", ["", "train: [x\n", "train: {}\n"])
def test_a_run_config_without_its_schedule_is_one_line(cfg, tmp_path):
    fake_run(tmp_path, "sup", 0, 40.0)
    (tmp_path / "sup" / "seed0" / "config.yaml").write_text(cfg)
    with pytest.raises(SemisegError, match=f"{tmp_path / 'sup' / 'seed0' / 'config.yaml'}: no train.iters"):
        final_eval(tmp_path / "sup" / "seed0")


def test_an_empty_out_is_one_line_not_the_default_folder(tmp_path):
    """`--out ''` fell back to runs/bench/NAME: a suite meant elsewhere trained (or tabulated) there."""
    (tmp_path / "s.yaml").write_text("name: s\nruns:\n  - {name: sup, config: x}\n")
    out = subprocess.run([sys.executable, "-m", "semiseg", "bench", "quality", str(tmp_path / "s.yaml"), "--out", ""],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "--out" in out.stderr
    assert not (tmp_path / "runs").exists()
