"""`make demo` is the first thing a newcomer runs: its suite's configs load, and what it predicts with is a
checkpoint its suite writes (a renamed run would otherwise fail only after the whole training)."""
import re
from pathlib import Path

from semiseg.bench.quality import read_suite
from semiseg.configure import load_config

ROOT = Path(__file__).resolve().parents[1]


def demo_recipe() -> str:
    text = (ROOT / "Makefile").read_text()
    return text[text.index("\ndemo:"):].split("\n\n")[0]


def test_demo_suite_loads_and_predict_reads_a_checkpoint_it_writes():
    recipe = demo_recipe()
    suite_path, out = re.search(r"bench quality (\S+) --out (\S+)", recipe).groups()
    suite = read_suite(ROOT / suite_path)
    names = [r["name"] for r in suite["runs"]]
    assert suite["baseline"] in names and len(names) == 2  # the baseline and the recommended recipe
    for r in suite["runs"]:
        load_config(str(ROOT / r["config"]), [*suite.get("overrides", []), *r.get("overrides", [])])
    ckpt = re.search(r"predict (\S+)", recipe).group(1)
    assert ckpt in {f"{out}/{n}/seed{s}/best.pth" for n in names for s in suite["seeds"]}
    assert f"semiseg report {out}" in recipe
