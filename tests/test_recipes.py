"""Named recipes: each registered recipe trains on a folder of the user's own images from
`semiseg train CONFIG recipe=NAME` (two steps), its overrides applied between the file and the command line."""
import subprocess
import sys

import pytest
import yaml

from semiseg.cli import run
from semiseg.configure import load_config
from semiseg.errors import SemisegError
from semiseg.recipes import RECIPES

from conftest import ENV, REPO


@pytest.mark.parametrize("name", RECIPES.names())
def test_every_recipe_trains_on_a_folder_of_ones_own_images(name, own_folder, tmp_path):
    work = tmp_path / "run"
    assert run(["train", str(own_folder), f"recipe={name}", "--work-dir", str(work)]) == 0
    saved = yaml.safe_load((work / "config.yaml").read_text())
    assert saved["recipe"] == name
    for override in RECIPES.get(name).overrides:  # each of the recipe's settings reached the run
        key, value = override.split("=", 1)
        section, _, leaf = key.partition(".")
        got = saved[section][leaf]
        assert got == yaml.safe_load(value) or (isinstance(got, dict) and got["name"] == yaml.safe_load(value)["name"])
    assert "loss" in (work / "metrics_train.csv").read_text().splitlines()[0]


def test_a_users_override_wins_over_the_recipe_and_the_recipe_over_the_file(own_folder):
    cfg = load_config(own_folder, ["recipe=dssn-horizon", "method.ema_horizon=0.05"])
    assert cfg.method.name == "dssn" and cfg.method.ema_horizon == 0.05
    assert load_config(own_folder, ["recipe=dssn-horizon"]).method.ema_horizon == 0.033


def test_an_empty_mapping_removes_the_recipes_component(own_folder):
    """`method.refiner={}` after a recipe with IOM trains without a refiner (it kept the recipe's IOM)."""
    cfg = load_config(own_folder, ["recipe=dssn-horizon-iom-paste", "method.refiner={}"])
    assert dict(cfg.method.refiner) == {} and cfg.method.paste_p == 0.5
    kept = load_config(own_folder, ["recipe=dssn-horizon-iom-paste", "method.refiner={iou_thresh: 0.6}"])
    assert dict(kept.method.refiner) == {"name": "iom", "iou_thresh": 0.6}  # options refine the recipe's spec


def test_an_unknown_recipe_is_one_line_listing_the_names(own_folder):
    with pytest.raises(SemisegError,
                       match="command line override: bad value for 'recipe': 'dssn-fast'; valid: csl, dssn,"):
        load_config(own_folder, ["recipe=dssn-fast"])
    out = subprocess.run([sys.executable, "-m", "semiseg", "train", str(own_folder), "recipe=dssn-fast"],
                         capture_output=True, text=True, env=ENV, cwd=REPO)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "valid: csl" in out.stderr


def test_recipes_lists_every_recipe():
    out = subprocess.run([sys.executable, "-m", "semiseg", "recipes"], capture_output=True, text=True, env=ENV)
    assert out.returncode == 0 and all(f"\n{n}\n" in "\n" + out.stdout for n in RECIPES.names())


def test_a_reader_that_leaves_early_is_no_error():
    """`semiseg ... | head`: a verb printing more than the pipe holds meets a closed pipe; no traceback, exit 0."""
    talkative = ("import semiseg.commands.recipes as r, semiseg.cli as c; "
                 "r.run = lambda args: [print('x' * 100) for _ in range(20000)] and 0; c.main(['recipes'])")
    shell = subprocess.run(f"set -o pipefail; {sys.executable} -c \"{talkative}\" | head -1", shell=True,
                           capture_output=True, text=True, env=ENV, executable="/bin/bash")
    assert shell.stdout == "x" * 100 + "\n" and shell.stderr == "" and shell.returncode == 0


@pytest.mark.parametrize("recipe,noted", [("fixmatch", True), ("dssn", True), ("dssn-horizon-clean", False),
                                          ("unimatch", False)])
def test_on_two_class_data_fixmatch_and_dssn_as_authored_say_what_was_measured(recipe, noted, own_folder, tmp_path,
                                                                             capsys):
    assert run(["train", str(own_folder), f"recipe={recipe}", "train.iters=1", "--work-dir", str(tmp_path / "w")]) == 0
    said = "as authored fell below supervised-only on every seed" in capsys.readouterr().out
    assert said == noted


def test_the_align_recipe_is_the_measured_runs_config():
    """dssn-horizon-iom-paste-align resolves to the config of the runs that measured it (scenes-align-fp)."""
    named = load_config(REPO / "configs/scenes/dssn.yaml", ["recipe=dssn-horizon-iom-paste-align"])
    measured = load_config(REPO / "configs/scenes/dssn.yaml", ["recipe=dssn-horizon-iom-paste",
                                                               "method.distribution_alignment=true",
                                                               "method.align_fp=true"])
    assert named.method == measured.method and named.method["align_fp"] and named.method["distribution_alignment"]
