"""``semiseg data check`` finds each trap in a fixture made for it."""
import numpy as np
import pytest
from PIL import Image

from semiseg.cli import run
from semiseg.configure import load_config
from semiseg.data.check import check_layout
from semiseg.data.presets import resolve_layout

from conftest import write_list, write_pair


def classes(trap: str) -> int:
    """0/255 masks are a trap of binary data sets only (at 3 classes they are class 0 and the ignore label)."""
    return 2 if trap == "binary255" else 3


def make(tmp_path, trap):
    root = tmp_path / trap
    lines = []
    for i in range(3):
        write_pair(root, f"images/{i}.png", f"masks/{i}.png", classes=classes(trap), seed=i)
        lines.append(f"images/{i}.png masks/{i}.png")
    unl = ["images/u0.png"]
    write_pair(root, "images/u0.png", None)
    if trap == "binary255":
        Image.fromarray((np.arange(40 * 48).reshape(40, 48) % 2 * 255).astype(np.uint8)).save(root / "masks/0.png")
    elif trap == "rgb":
        Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(root / "masks/0.png")
    elif trap == "range":
        Image.fromarray(np.full((40, 48), 9, np.uint8)).save(root / "masks/0.png")
    elif trap == "size":
        Image.fromarray(np.zeros((20, 20), np.uint8)).save(root / "masks/0.png")
    elif trap == "missing":
        (root / "images/1.png").unlink()
    elif trap == "duplicate":
        unl.append("images/2.png")
    write_list(root / "l.txt", lines)
    write_list(root / "u.txt", unl)
    return root


@pytest.mark.parametrize("trap,finding", [
    ("clean", None),
    ("binary255", "binary mask saved as 0/255"),
    ("rgb", "RGB mask"),
    ("range", r"label values \[9\] outside \[0, 3\)"),
    ("size", "mask is 20x20 but its image is 48x40"),
    ("missing", "images/1.png: image file missing"),
    ("duplicate", "in both the labeled and the unlabeled list"),
])
def test_check_finds_each_trap(tmp_path, trap, finding):
    root = make(tmp_path, trap)
    cfg = load_config(None, ["data.dataset=folder", f"data.root={root}", "data.labeled=l.txt",
                             "data.unlabeled=u.txt", f"data.num_classes={classes(trap)}"])
    report = check_layout(resolve_layout(cfg.data))
    if finding is None:
        assert report.ok, report.problems
        assert report.pixels[:3].sum() == 3 * 40 * 48  # every labeled pixel is counted in the histogram
    else:
        assert not report.ok
        assert any(__import__("re").search(finding, p) for p in report.problems), report.problems


def test_check_command_exit_code(tmp_path, capsys):
    root = make(tmp_path, "range")
    code = run(["data", "check", "data.dataset=folder", f"data.root={root}", "data.labeled=l.txt",
                "data.num_classes=3"])
    out = capsys.readouterr().out
    assert code == 1 and "1 problem(s)" in out and "background" not in out and "class_0" in out
