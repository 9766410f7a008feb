"""The HTML report: every part present, self-contained, and (when Chromium is installed) it renders."""
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from semiseg.cli import run
from semiseg.engine.trainer import train

from conftest import tiny_cfg


@pytest.fixture(scope="module")
def report(tiny_scenes, tmp_path_factory):
    work = tmp_path_factory.mktemp("run")
    train(tiny_cfg(tiny_scenes, "method.name=unimatch_v2", "train.iters=4", "train.eval_interval=2",
                   "train.log_interval=1"), work_dir=str(work))
    assert run(["report", str(work), "--max-images", "3"]) == 0
    return work / "report.html"


def test_report_has_every_part_and_needs_no_network(report):
    page = report.read_text()
    for section in ("curves", "iou", "images", "confusion"):
        assert f'id="{section}"' in page
    assert page.count("<svg") >= 4  # losses, mIoU, mask ratio, confusion matrix
    assert "teacher_mIoU" in page and "mask_ratio/" in page  # teacher curve and per-class mask ratios
    assert len(re.findall(r'<img src="data:image/png;base64,', page)) == 12  # 3 rows x 4 columns
    assert not re.search(r'(src|href)="https?://', page)


@pytest.fixture(scope="module")
def suite_report(tiny_scenes, tmp_path_factory):
    """A suite folder of two real runs, as ``semiseg bench quality`` leaves it: labeled-only and DSSN (a teacher)."""
    work = tmp_path_factory.mktemp("suite")
    (work / "suite.yaml").write_text("name: demo\nseeds: [0]\nbaseline: supervised\n"
                                     "runs: [{name: supervised}, {name: dssn}]\n")
    for method in ("supervised", "dssn"):
        train(tiny_cfg(tiny_scenes, f"method.name={method}", "train.iters=2", "train.eval_interval=1"),
              work_dir=str(work / method / "seed0"))
    assert run(["report", str(work), "--max-images", "2"]) == 0
    return work / "report.html"


def test_suite_report_puts_the_runs_side_by_side(suite_report):
    page = suite_report.read_text()
    assert "| supervised | 1 |" not in page and "<td>dssn</td>" in page  # the table, as HTML
    assert page[page.index('id="curves"'):].count("<polyline") == 2  # both runs' curves on one plot
    images = page[page.index('id="images"'):]
    # image, ground truth, supervised's prediction, DSSN's prediction and its teacher's pseudo-label
    assert "supervised (seed0) prediction, dssn (seed0) prediction, dssn (seed0) pseudo-label" in images
    assert len(re.findall(r'<img src="data:image/png;base64,', images)) == 2 * 5


@pytest.mark.parametrize("page", ["report", "suite_report"])
def test_report_renders_in_headless_chromium(page, request, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Chromium not installed; the structure tests above cover the pages")
    report = request.getfixturevalue(page)
    shot = tmp_path / "shot.png"
    r = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                        "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,2400",
                        f"--screenshot={shot}", f"file://{report}"], capture_output=True, text=True, timeout=120)
    assert shot.is_file(), r.stderr[-2000:]
    px = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert px.std() > 10  # not a blank page


def test_suite_report_has_the_table_and_a_bar_chart(tmp_path):
    from test_bench import fake_run

    fake_run(tmp_path, "supervised", 0, 40.0)
    fake_run(tmp_path, "unimatch", 0, 50.0)
    assert run(["report", str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text()
    assert "<table>" in page and "unimatch" in page and 'aria-label="final mIoU' in page
    curves = page[page.index('id="curves"'):]
    assert curves.count("<polyline") == 2 and "supervised" in curves and "unimatch" in curves


def test_a_suite_report_whose_record_is_damaged_or_whose_page_has_no_folder_is_one_line(tmp_path):
    """A suite.yaml that is no YAML, and --out in a folder that does not exist, were tracebacks."""
    from test_bench import fake_run

    fake_run(tmp_path, "supervised", 0, 40.0)
    page = tmp_path / "no" / "r.html"
    out = subprocess.run([sys.executable, "-m", "semiseg", "report", str(tmp_path), "--out", str(page)],
                         capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and f"cannot write {page}" in out.stderr
    (tmp_path / "suite.yaml").write_text("name: [x\n")
    out = subprocess.run([sys.executable, "-m", "semiseg", "report", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and f"suite file {tmp_path / 'suite.yaml'}" in out.stderr
    assert not (tmp_path / "report.html").exists()


def test_suite_report_of_referring_runs_charts_the_teachers_oiou(tmp_path):
    from test_bench import fake_res_run

    fake_res_run(tmp_path, "supervised-1pct", 0, 20.0)
    fake_res_run(tmp_path, "semires-1pct", 0, 30.0, teacher=True)
    assert run(["report", str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text()
    assert 'aria-label="final oIoU' in page and "| semires-1pct" not in page and "semires-1pct" in page
    assert "30.00" in page and "25.00" not in page  # the teacher's score, not its student's


def test_semiseg_train_writes_the_report_and_the_engine_does_not(tiny_scenes, tmp_path):
    from conftest import TINY

    (tmp_path / "c.yaml").write_text(f"data:\n  root: {tiny_scenes}\n  split: all\n")
    common = [str(tmp_path / "c.yaml"), *TINY, "train.iters=1", "train.eval_interval=1"]
    train(tiny_cfg(tiny_scenes, "train.iters=1", "train.eval_interval=1", "train.report=true"),
          work_dir=str(tmp_path / "python"))
    assert not (tmp_path / "python" / "report.html").exists()  # the trainer builds no report (layering)
    assert run(["train", "--work-dir", str(tmp_path / "cli"), *common]) == 0
    assert 'id="curves"' in (tmp_path / "cli" / "report.html").read_text()


def test_report_of_a_run_whose_selector_takes_the_labeled_shares_shows_its_pseudo_labels(tiny_scenes, tmp_path):
    """The report's pseudo-label column selects as the run did: class_share with the labeled masks' shares."""
    train(tiny_cfg(tiny_scenes, "method.name=fixmatch", "method.selector={name: class_share}", "train.iters=2",
                   "train.eval_interval=2"), work_dir=str(tmp_path))
    assert run(["report", str(tmp_path), "--max-images", "2"]) == 0
    images = (tmp_path / "report.html").read_text().split('id="images"')[1]
    assert len(re.findall(r'<img src="data:image/png;base64,', images)) == 2 * 4  # pseudo-label column included
