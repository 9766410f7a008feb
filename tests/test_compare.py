"""`semiseg compare`: verdicts from paired seeds (known answers), and the command end to end on a folder."""
import math

import pytest

from semiseg.bench.compare import compare_suite, default_recipes, recommendation, verdict, verdict_lines
from semiseg.cli import run
from semiseg.errors import SemisegError


def evals(scores, classes=None):
    """Finished evaluations by seed: mIoU, and per-class IoU where given."""
    return [{"seed": s, "mIoU": m, **{f"IoU_{k}": v[s] for k, v in (classes or {}).items()}}
            for s, m in enumerate(scores)]


BASE = evals([50.0, 51.0, 52.0], {"background": [90, 90, 90], "defect": [10, 12, 14]})


def test_a_gain_every_seed_shares_is_supported():
    v = verdict(BASE, evals([55.0, 56.5, 57.0], {"background": [91, 91, 91], "defect": [19, 20, 21]}), "mIoU")
    assert v["kind"] == "gain" and math.isclose(v["mean"], 5.1666, abs_tol=1e-3) and v["ci"][1] > 0
    assert v["classes"] == []


def test_below_on_every_seed_is_harm_naming_the_class_that_falls_and_the_one_predicted_less():
    base = [{**e, "pred%_background": 80.0, "pred%_defect": 20.0} for e in BASE]
    worse = [{**e, "pred%_background": 90.0, "pred%_defect": 10.0 + e["seed"]}
             for e in evals([49.0, 50.0, 51.0], {"background": [91, 91, 91], "defect": [5, 6, 7]})]
    v = verdict(base, worse, "mIoU")
    assert v["kind"] == "harm" and v["mean"] == -1.0 and v["classes"] == ["defect"] and v["starved"] == ["defect"]
    line = verdict_lines({"supervised": base, "fixmatch": worse}, ["fixmatch"], "mIoU")[0]
    assert line.endswith("below supervised-only on every seed: defect; predicted on fewer pixels (pred%) on every "
                         "seed: defect.")
    line = verdict_lines({"supervised": BASE, "fixmatch": evals([49.0, 50.0, 51.0],
                                                                {"background": [91] * 3, "defect": [5, 6, 7]})},
                         ["fixmatch"], "mIoU")[0]
    assert line.startswith("- fixmatch: harms: below supervised-only on every seed (3), -1.00 mIoU")
    assert line.endswith("below supervised-only on every seed: defect.")


def test_mixed_seeds_show_no_difference_and_supervised_only_is_recommended():
    mixed = evals([53.0, 49.0, 53.0])
    assert verdict(BASE, mixed, "mIoU")["kind"] == "no difference shown"
    assert recommendation({"supervised": BASE, "unimatch": mixed}, ["unimatch"], "mIoU").startswith(
        "Recommendation: supervised-only.")


def test_the_largest_supported_gain_is_recommended():
    res = {"supervised": BASE, "a": evals([52.0, 53.1, 54.0]), "b": evals([56.0, 57.2, 58.0])}
    assert recommendation(res, ["a", "b"], "mIoU").startswith("Recommendation: b (semiseg train CONFIG recipe=b)")


def test_the_suite_puts_the_users_overrides_after_each_recipe_and_binary_data_gets_its_recipe():
    suite = compare_suite("mine.yaml", ["unimatch"], [0, 1], ["train.iters=5"], "compare-mine")
    assert suite["baseline"] == "supervised" and [r["name"] for r in suite["runs"]] == ["supervised", "unimatch"]
    assert suite["runs"][1]["overrides"] == ["recipe=unimatch"] and suite["overrides"] == ["train.iters=5"]
    assert "dssn-horizon-clean" in default_recipes(2) and "dssn-horizon-clean" not in default_recipes(5)


def test_compare_on_a_folder_prints_verdicts_a_recommendation_and_writes_its_page(own_folder, tmp_path, capsys):
    out, doc = tmp_path / "cmp", tmp_path / "results.md"
    doc.write_text("# Mine\n\n<!-- semiseg:compare-cmp -->\nstale table\n<!-- /semiseg:compare-cmp -->\n\nkept\n")
    assert run(["compare", str(own_folder), "--recipes", "unimatch", "--seeds", "0,1", "--iters", "2",
                "--out", str(out), "--doc", str(doc)]) == 0
    printed = capsys.readouterr().out
    assert "comparing supervised-only with unimatch" in printed and "4 runs of 2 steps (2 seeds)" in printed
    assert "of training for the 4 runs to go on this machine" in printed  # the estimate comes before any run
    assert printed.index("estimated under a minute of training") < printed.index("start supervised seed 0")
    written = doc.read_text()
    assert "stale table" not in written and written.endswith("kept\n") and "Recommendation: " in written
    assert f"Produced by `semiseg compare {own_folder} --recipes unimatch --iters 2 --seeds 0,1 --out {out}" in written
    assert "| unimatch | 2 |" in printed and "- unimatch: " in printed and "Recommendation: " in printed
    assert "| pred% | background | defect |" in printed and "| true% (labeled) |" in printed
    page = (out / "report.html").read_text()
    assert "unimatch" in page and "supervised" in page and (out / "verdict.md").read_text().strip() in printed
    assert "<p>Recommendation: " in page and "<th>pred%</th>" in page  # the page says what the command printed
    assert run(["compare", str(own_folder), "--recipes", "unimatch", "--seeds", "0,1", "--iters", "2",
                "--out", str(out)]) == 0  # finished runs are not trained again
    again = capsys.readouterr().out
    assert "4 finished, 0 to go" in again and "estimated" not in again  # nothing to time when nothing is left
    # another length into the same folder: before, the 2-step runs were taken as finished and tabulated
    with pytest.raises(SemisegError, match=rf"run supervised seed 0: {out}/supervised/seed0 holds a run of another "
                                           r"config \(train.iters: 2, now 3\); give another --out"):
        run(["compare", str(own_folder), "--recipes", "unimatch", "--seeds", "0,1", "--iters", "3", "--out", str(out)])
    assert "estimated" not in capsys.readouterr().out  # refused before anything is timed or trained
    assert "train.iters=2" in (out / "suite.yaml").read_text()  # the page's suite is still the runs' own


def test_compare_makes_the_proposals_a_refining_recipe_needs(own_folder, tmp_path, capsys):
    """A recipe that refines against mask proposals (dssn-iom) on data without a store: compare makes one in its
    folder first, from the config's proposals section, and that recipe's runs read it; supervised-only does not."""
    import yaml

    out = tmp_path / "cmp"
    assert run(["compare", str(own_folder), "data.proposal_store=", "--recipes", "dssn-iom,supervised", "--seeds", "0",
                "--iters", "2", "--out", str(out)]) == 0
    store = out / "proposals"
    assert len((store / "proposals.jsonl").read_text().splitlines()) == 8  # one line per unlabeled image
    printed = capsys.readouterr().out
    assert "comparing supervised-only with dssn-iom on " in printed  # supervised-only is named once
    assert f"dssn-iom refines its pseudo-labels against mask proposals: making them in {store}" in printed
    assert printed.index("making them in") < printed.index("start supervised seed 0")
    config = lambda name: yaml.safe_load((out / name / "seed0" / "config.yaml").read_text())  # noqa: E731
    assert config("dssn-iom")["data"]["proposal_store"] == str(store)
    assert config("supervised")["data"]["proposal_store"] == ""
    assert run(["compare", str(own_folder), "data.proposal_store=", "--recipes", "dssn-iom,supervised", "--seeds", "0",
                "--iters", "2", "--out", str(out)]) == 0  # finished: the store is not made again
    assert "making them" not in capsys.readouterr().out


@pytest.mark.slow
def test_compare_trains_each_run_as_a_torchrun_group(own_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "cmp"
    assert run(["compare", str(own_folder), "--recipes", "fixmatch", "--seeds", "0", "--iters", "2",
                "--nproc-per-node", "2", "--out", str(out)]) == 0
    for name in ("supervised", "fixmatch"):
        assert "world size 2" in (out / name / "seed0" / "train.log").read_text()
    assert "- fixmatch: " in capsys.readouterr().out


def test_compare_refuses_an_unknown_recipe_and_bad_seeds_before_any_run(own_folder, tmp_path):
    import pytest

    from semiseg.errors import SemisegError

    with pytest.raises(SemisegError, match="--recipes: unknown recipe 'fixmatc'; valid: csl, dssn,"):
        run(["compare", str(own_folder), "--recipes", "fixmatc", "--out", str(tmp_path / "c")])
    with pytest.raises(SemisegError, match="--seeds 0,one: comma-separated integers"):
        run(["compare", str(own_folder), "--seeds", "0,one", "--out", str(tmp_path / "c")])
    bad = {("--jobs", "0"): "--jobs 0: a number of at least 1",
           ("--nproc-per-node", "0"): "--nproc-per-node 0: a number of at least 1",
           ("--iters", "0"): "--iters 0: a number of at least 1",
           ("--recipes", ""): "--recipes is empty",
           ("--seeds", "0,0"): "--seeds: 0 given twice",
           ("--recipes", "unimatch,unimatch"): "--recipes: unimatch given twice",
           ("--recipes", "supervised"): "--recipes supervised: supervised-only is the baseline every comparison",
           ("--doc", str(tmp_path / "nowhere" / "x.md")): "--doc .*: its folder .*nowhere does not exist"}
    for (flag, value), message in bad.items():
        with pytest.raises(SemisegError, match=message):
            run(["compare", str(own_folder), flag, value, "--out", str(tmp_path / "c")])
    (tmp_path / "file").write_text("")
    with pytest.raises(SemisegError, match="--out .*file is a file: name a folder"):
        run(["compare", str(own_folder), "--out", str(tmp_path / "file")])
    assert not (tmp_path / "c").exists()


@pytest.mark.slow
def test_the_comparison_page_renders_in_chromium(own_folder, tmp_path):
    """The page opened in a real browser (Debian's chromium, headless): the DOM it builds holds the verdicts
    and the tables, and the screenshot is not blank."""
    import shutil
    import subprocess

    import numpy as np
    from PIL import Image

    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no Chromium here (apt-get install chromium)")
    out = tmp_path / "cmp"
    assert run(["compare", str(own_folder), "--recipes", "fixmatch", "--seeds", "0,1", "--iters", "2",
                "--out", str(out)]) == 0
    flags = ["--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}"]
    url = (out / "report.html").resolve().as_uri()
    dom = subprocess.run([browser, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    assert "Recommendation: " in dom and "- fixmatch: " in dom and "<svg" in dom
    assert dom.count("<table>") >= 2 and "<th>pred%</th>" in dom
    shot = tmp_path / "page.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=1200,1600", url],
                   capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape == (1600, 1200) and pixels.std() > 10  # text, tables and charts drawn, not a blank page
