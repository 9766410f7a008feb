"""`make gpu-check` (tools/gpu_check.py): one line and exit 0 without CUDA; every stage at toy sizes with --smoke."""
import subprocess
import sys

import pytest
import torch

from conftest import REPO


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device: the check would run")
def test_without_cuda_the_check_says_so_in_one_line_and_passes(tmp_path):
    r = subprocess.run([sys.executable, str(REPO / "tools/gpu_check.py"), "--out", str(tmp_path / "g")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("gpu-check: no CUDA device here (torch ")
    assert len(r.stdout.strip().splitlines()) == 1 and not (tmp_path / "g").exists()


@pytest.mark.slow
def test_every_stage_runs_at_toy_sizes(tiny_scenes, tmp_path):
    out = tmp_path / "g"
    r = subprocess.run([sys.executable, str(REPO / "tools/gpu_check.py"), "--smoke", "--out", str(out), "--data-root",
                        str(tiny_scenes)], capture_output=True, text=True, timeout=1800, cwd=REPO)
    report = (out / "gpu-check.md").read_text()
    assert r.returncode == 0, report[-4000:]
    assert report.count("| ok |") == 11 and "FAILED" not in report
    assert "| reference (the authors' step) |" in report and "| bf16 autocast (train.amp=bf16) |" in report
