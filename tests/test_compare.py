"""`semiseg compare`: verdicts from paired seeds (known answers), and the command end to end on a folder."""
import math

from semiseg.bench.compare import compare_suite, default_recipes, recommendation, verdict, verdict_lines
from semiseg.cli import run


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
    suite = compare_suite("mine.yaml", ["unimatch"], [0, 1], ["train.iters=5"])
    assert suite["baseline"] == "supervised" and [r["name"] for r in suite["runs"]] == ["supervised", "unimatch"]
    assert suite["runs"][1]["overrides"] == ["recipe=unimatch"] and suite["overrides"] == ["train.iters=5"]
    assert "dssn-horizon-clean" in default_recipes(2) and "dssn-horizon-clean" not in default_recipes(5)


def test_compare_on_a_folder_prints_verdicts_a_recommendation_and_writes_its_page(own_folder, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert run(["compare", str(own_folder), "--recipes", "unimatch", "--seeds", "0,1", "--iters", "2",
                "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "comparing supervised-only with unimatch" in printed and "4 runs of 2 steps (2 seeds)" in printed
    assert "| unimatch | 2 |" in printed and "- unimatch: " in printed and "Recommendation: " in printed
    assert "| pred% | background | defect |" in printed and "| true% (labeled) |" in printed
    page = (out / "report.html").read_text()
    assert "unimatch" in page and "supervised" in page and (out / "verdict.md").read_text().strip() in printed
    assert run(["compare", str(own_folder), "--recipes", "unimatch", "--seeds", "0,1", "--iters", "2",
                "--out", str(out)]) == 0  # finished runs are not trained again
    assert "4 finished, 0 to go" in capsys.readouterr().out


def test_compare_refuses_an_unknown_recipe_and_bad_seeds_before_any_run(own_folder, tmp_path):
    import pytest

    from semiseg.errors import SemisegError

    with pytest.raises(SemisegError, match="--recipes: unknown recipe 'fixmatc'; valid: csl, dssn,"):
        run(["compare", str(own_folder), "--recipes", "fixmatc", "--out", str(tmp_path / "c")])
    with pytest.raises(SemisegError, match="--seeds 0,one: comma-separated integers"):
        run(["compare", str(own_folder), "--seeds", "0,one", "--out", str(tmp_path / "c")])
    assert not (tmp_path / "c").exists()
