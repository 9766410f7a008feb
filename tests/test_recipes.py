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

from conftest import ENV, REPO, write_pair


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A binary folder data set (4 labeled, 8 unlabeled, 2 validation images), its config and a proposal store."""
    root = tmp_path_factory.mktemp("mine")
    for i in range(4):
        write_pair(root, f"images/l{i}.png", f"masks/l{i}.png", size=(40, 40), classes=2, seed=i)
    for i in range(8):
        write_pair(root, f"unlabeled/u{i}.png", None, size=(40, 40), seed=10 + i)
    for i in range(2):
        write_pair(root, f"val/images/v{i}.png", f"val/masks/v{i}.png", size=(40, 40), classes=2, seed=20 + i)
    cfg = root / "mine.yaml"
    cfg.write_text(yaml.safe_dump({
        "data": {"dataset": "folder", "root": str(root), "class_names": ["background", "defect"], "crop_size": 32,
                 "batch_size": 2, "num_workers": 0, "proposal_store": str(root / "proposals")},
        "model": {"backbone": "resnet18", "width": 0.125, "head_channels": 16, "low_level_channels": 8},
        "train": {"iters": 2, "eval_interval": 2, "amp": "none", "report": False, "log_interval": 1}}))
    assert run(["proposals", str(cfg), "--out", str(root / "proposals")]) == 0
    return cfg


@pytest.mark.parametrize("name", RECIPES.names())
def test_every_recipe_trains_on_a_folder_of_ones_own_images(name, folder, tmp_path):
    work = tmp_path / "run"
    assert run(["train", str(folder), f"recipe={name}", "--work-dir", str(work)]) == 0
    saved = yaml.safe_load((work / "config.yaml").read_text())
    assert saved["recipe"] == name
    for override in RECIPES.get(name).overrides:  # each of the recipe's settings reached the run
        key, value = override.split("=", 1)
        section, _, leaf = key.partition(".")
        got = saved[section][leaf]
        assert got == yaml.safe_load(value) or (isinstance(got, dict) and got["name"] == yaml.safe_load(value)["name"])
    assert "loss" in (work / "metrics_train.csv").read_text().splitlines()[0]


def test_a_users_override_wins_over_the_recipe_and_the_recipe_over_the_file(folder):
    cfg = load_config(folder, ["recipe=dssn-horizon", "method.ema_horizon=0.05"])
    assert cfg.method.name == "dssn" and cfg.method.ema_horizon == 0.05
    assert load_config(folder, ["recipe=dssn-horizon"]).method.ema_horizon == 0.033


def test_an_unknown_recipe_is_one_line_listing_the_names(folder):
    with pytest.raises(SemisegError, match="command line override: unknown recipe 'dssn-fast'; valid: csl, dssn,"):
        load_config(folder, ["recipe=dssn-fast"])
    out = subprocess.run([sys.executable, "-m", "semiseg", "train", str(folder), "recipe=dssn-fast"],
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
