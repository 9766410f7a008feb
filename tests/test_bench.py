"""The quality suite's bookkeeping: finished-run detection, the table, the doc section."""
import json

import pytest

from semiseg.bench.quality import final_eval, read_suite, table, write_section
from semiseg.errors import SemisegError


def fake_run(root, name, seed, miou, iters=10, finished=True, teacher=None):
    wd = root / name / f"seed{seed}"
    wd.mkdir(parents=True)
    (wd / "config.yaml").write_text(f"train:\n  iters: {iters}\n")
    rows = [{"kind": "train", "step": iters, "s_per_step": 0.5}]
    ev = {"kind": "eval", "step": iters if finished else iters // 2, "mIoU": miou, "IoU_bg": miou + 10, "IoU_obj": miou - 10}
    if teacher is not None:
        ev["teacher_mIoU"] = teacher
    rows.append(ev)
    (wd / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_table_means_spread_and_gap_closed(tmp_path):
    suite = {"name": "s", "seeds": [0, 1], "baseline": "sup", "full": "full",
             "runs": [{"name": "sup"}, {"name": "full"}, {"name": "m"}, {"name": "pending"}]}
    fake_run(tmp_path, "sup", 0, 40.0)
    fake_run(tmp_path, "sup", 1, 42.0)
    fake_run(tmp_path, "full", 0, 61.0)
    fake_run(tmp_path, "full", 1, 61.0)
    fake_run(tmp_path, "m", 0, 50.0, teacher=52.0)
    fake_run(tmp_path, "m", 1, 52.0, teacher=54.0)
    fake_run(tmp_path, "pending", 0, 99.0, finished=False)
    assert final_eval(tmp_path / "pending" / "seed0") is None
    text = table(suite, tmp_path)
    assert "| sup | 2 | 41.00 ± 1.41 |" in text
    assert "| m | 2 | 51.00 ± 1.41 | 53.00 ± 1.41 | +50% |" in text  # (51 - 41) / (61 - 41)
    assert "| pending | 0 | - |" in text
    assert "| m | 61.0 | 41.0 |" in text  # per-class means


def test_write_section_replaces_only_its_block(tmp_path):
    doc = tmp_path / "b.md"
    doc.write_text("intro\n<!-- semiseg:s -->\nold\n<!-- /semiseg:s -->\noutro\n")
    write_section(doc, "s", "new")
    assert doc.read_text() == "intro\n<!-- semiseg:s -->\nnew\n<!-- /semiseg:s -->\noutro\n"
    write_section(doc, "t", "other")
    assert doc.read_text().endswith("<!-- semiseg:t -->\nother\n<!-- /semiseg:t -->\n")


def test_suite_needs_unique_names(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("name: s\nruns:\n  - {name: a, config: x}\n  - {name: a, config: y}\n")
    with pytest.raises(SemisegError, match="unique name"):
        read_suite(p)
