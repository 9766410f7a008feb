"""The README is a newcomer's first page: at most 120 lines, and its folder config, copied as it is, trains
on a folder of images (only the folder's place and the schedule changed, to fit a test)."""
import re

import yaml

from semiseg.cli import run

from conftest import REPO, write_folder

README = (REPO / "README.md").read_text()


def readme_config() -> str:
    section = README[README.index("## Train on your own images"):]
    return re.search(r"```yaml\n(.*?)```", section, re.S).group(1)


def test_the_readme_stays_short():
    assert len(README.splitlines()) <= 120


def test_every_code_block_of_the_docs_closes_on_a_line_of_its_own():
    # a closing fence with text after it does not close: the prose after it renders as code
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        fences = [line for line in page.read_text().splitlines() if line.lstrip().startswith("```")]
        closing = fences[1::2]
        assert len(fences) % 2 == 0 and all(f.strip() == "```" for f in closing), (page, closing)


def test_the_readme_config_trains_on_a_folder_of_images(tmp_path, capsys):
    root = write_folder(tmp_path / "mine", size=(48, 64))
    text = readme_config()
    cfg = yaml.safe_load(text)
    assert cfg["data"]["dataset"] == "folder"
    assert cfg["recipe"] == "dssn-horizon-iom-paste-align"  # what a newcomer copies
    (tmp_path / "mine.yaml").write_text(text)
    store = tmp_path / "proposals"
    fit = [f"data.root={root}", f"data.proposal_store={store}", "train.iters=2", "train.eval_interval=2",
           "data.crop_size=32", "data.batch_size=2", "data.num_workers=0", "train.report=false",
           "--work-dir", str(tmp_path / "run")]
    assert run(["data", "check", str(tmp_path / "mine.yaml"), f"data.root={root}"]) == 0
    assert run(["proposals", str(tmp_path / "mine.yaml"), f"data.root={root}", "--out", str(store)]) == 0
    assert run(["train", str(tmp_path / "mine.yaml"), *fit]) == 0
    method = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["method"]
    assert method["name"] == "dssn" and method["ema_horizon"] == 0.033 and method["refiner"] == {"name": "iom"}
    baseline = [*fit[:-1], str(tmp_path / "baseline")]  # the README's baseline: the same file, supervised-only
    assert run(["train", str(tmp_path / "mine.yaml"), "recipe=supervised", *baseline]) == 0
    assert yaml.safe_load((tmp_path / "baseline" / "config.yaml").read_text())["method"] == {"name": "supervised"}
    out = capsys.readouterr().out
    assert "IoU_defect" in (tmp_path / "run" / "metrics.jsonl").read_text() and "defect" in out
    assert run(["predict", str(tmp_path / "run" / "best.pth"), "--input", str(root / "val" / "images"),
                "--output", str(tmp_path / "preds")]) == 0
    assert sorted(p.name for p in (tmp_path / "preds" / "index").iterdir()) == ["v0.png", "v1.png"]
