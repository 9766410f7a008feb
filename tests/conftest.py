"""Shared fixtures: tiny datasets written into tmp_path in the layouts users have."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]  # configs/ and docs/ are read from here, wherever pytest runs

# CI runs the tests alone on 2 cores; next to a running job, SEMISEG_TEST_THREADS=1 avoids OpenMP
# threads spin-waiting on each other (oversubscription slows both sides by 10x here)
torch.set_num_threads(int(os.environ.get("SEMISEG_TEST_THREADS", "2")))


def write_pair(root: Path, img_rel: str, mask_rel: str | None, size=(40, 48), classes: int = 3, seed: int = 0,
               mask_values: np.ndarray | None = None) -> None:
    rng = np.random.default_rng(seed)
    h, w = size
    (root / img_rel).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / img_rel)
    if mask_rel:
        (root / mask_rel).parent.mkdir(parents=True, exist_ok=True)
        m = mask_values if mask_values is not None else rng.integers(0, classes, (h, w)).astype(np.uint8)
        Image.fromarray(m.astype(np.uint8)).save(root / mask_rel)


def write_folder(root: Path, size=(40, 40)) -> Path:
    """A practitioner's binary folder: 4 labeled images (0/1 masks) in images/ + masks/, 8 unlabeled ones without
    masks, 2 validation pairs in val/."""
    for i in range(4):
        write_pair(root, f"images/l{i}.png", f"masks/l{i}.png", size=size, classes=2, seed=i)
    for i in range(8):
        write_pair(root, f"unlabeled/u{i}.png", None, size=size, seed=10 + i)
    for i in range(2):
        write_pair(root, f"val/images/v{i}.png", f"val/masks/v{i}.png", size=size, classes=2, seed=20 + i)
    return root


def write_list(path: Path, lines: List[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def voc_root(tmp_path: Path) -> Path:
    """VOC layout: JPEGImages + SegmentationClass, UniMatch split files (unlabeled lines without masks)."""
    root = tmp_path / "voc"
    names = [f"2007_{i:06d}" for i in range(12)]
    for i, n in enumerate(names):
        write_pair(root, f"JPEGImages/{n}.jpg", f"SegmentationClass/{n}.png", classes=21, seed=i)
    write_list(root / "splits/4/labeled.txt", [f"JPEGImages/{n}.jpg SegmentationClass/{n}.png" for n in names[:4]])
    write_list(root / "splits/4/unlabeled.txt", [f"JPEGImages/{n}.jpg" for n in names[4:10]])
    write_list(root / "splits/val.txt", [f"JPEGImages/{n}.jpg SegmentationClass/{n}.png" for n in names[10:]])
    return root


@pytest.fixture(scope="session")
def tiny_scenes(tmp_path_factory) -> Path:
    """A small scenes benchmark (digits or fashion, whichever is installed) shared by the engine tests."""
    from semiseg.data.scenes import ScenesConfig, generate

    root = tmp_path_factory.mktemp("scenes")
    generate(root, ScenesConfig(canvas=32, n_train=64, n_val=16, items="auto", item_scale=[0.6, 1.0]))
    return root


TINY = ["model.backbone=resnet18", "model.width=0.125", "model.head_channels=16", "model.low_level_channels=8",
        "data.crop_size=32", "data.batch_size=4", "data.num_workers=0", "train.amp=none", "train.log_interval=1",
        "eval.batch_size=8", "train.optimizer=sgd", "train.lr=0.01"]


def tiny_cfg(root, *extra: str):
    """A model and schedule small enough for a CPU test step in well under a second."""
    from semiseg.configure import load_config

    return load_config(None, TINY + [f"data.root={root}", *extra])


SHORT = ["train.iters=2", "train.eval_interval=2", "train.report=false"]


def short(root, *extra: str):
    """tiny_cfg for two steps, evaluated at the end, without the HTML report."""
    return tiny_cfg(root, *SHORT, *extra)


@pytest.fixture(scope="session")
def tiny_store(tiny_scenes, tmp_path_factory) -> Path:
    """Superpixel proposals for the tiny scenes' 1/16 unlabeled split."""
    from semiseg.data.io import read_image
    from semiseg.data.splits import read_split
    from semiseg.pseudo.proposals import SuperpixelProposals
    from semiseg.pseudo.store import ProposalStore

    out = tmp_path_factory.mktemp("store")
    store, gen = ProposalStore(out), SuperpixelProposals(min_area=4)
    with open(store.lines, "a") as fh:
        for s in read_split(tiny_scenes / "splits/1_16/unlabeled.txt", require_mask=False):
            store.add(s.image, gen(read_image(tiny_scenes / s.image)), fh)
    return out


# ---------------------------------------------------------------- runs in their own processes (kills, signals)
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def train_cmd(root, work, *extra):
    return [sys.executable, "-m", "semiseg", "train", str(root / "c.yaml"), *TINY, "train.threads=1",
            "train.deterministic=true", "train.seed=1", *extra, "--work-dir", str(work)]


def write_cfg(root, data):
    (root / "c.yaml").write_text(f"data:\n  root: {data}\n")


def wait_for(pred, timeout=120.0):
    t = time.time()
    while not pred():
        if time.time() - t > timeout:
            raise TimeoutError
        time.sleep(0.2)


def steps_logged(work):
    path = work / "metrics.jsonl"
    if not path.is_file():
        return 0
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]
    return max((r["step"] for r in rows if r["kind"] == "train"), default=0)


def built_method(cfg):
    """The configured method on its task's model, and the task's first training batch (seeded)."""
    from semiseg.losses import build_criterion
    from semiseg.methods import METHODS
    from semiseg.tasks import build_task

    torch.manual_seed(0)
    task = build_task(cfg)
    model = task.build_model()
    n = len(task.class_names)
    method = METHODS.get(cfg.method.name)(cfg.method, model, build_criterion(cfg.train, 255, n), n)
    batches = task.train_batches(method.unlabeled_streams, torch.device("cpu"))
    return method, model, next(batches)


def make_method(name, root, store, *extra):
    """A semantic method on the tiny scenes (1/16 split, superpixel proposals)."""
    return built_method(tiny_cfg(root, f"method.name={name}", f"data.proposal_store={store}", *extra))


@pytest.fixture(scope="session")
def res_scenes(tiny_scenes, tmp_path_factory):
    """The tiny scenes with their referring expressions and superpixel proposals of every training image."""
    from semiseg.data.io import read_image
    from semiseg.pseudo.proposals import SuperpixelProposals
    from semiseg.pseudo.store import ProposalStore
    from semiseg.tasks.referring.referring import generate_referring

    generate_referring(tiny_scenes, seed=0)
    props = tmp_path_factory.mktemp("res_props")
    store = ProposalStore(props)
    with open(store.lines, "a") as fh:
        for img in sorted((tiny_scenes / "images").glob("train_*.png")):
            store.add(f"images/{img.name}", SuperpixelProposals(min_area=4)(read_image(img)), fh)
    return tiny_scenes, props


RES_TINY = ["task=res", "model.backbone=resnet18", "model.width=0.25", "model.pretrained=", "data.crop_size=32",
            "data.batch_size=4", "data.num_workers=0", "train.amp=none", "train.log_interval=1",
            "train.optimizer=adamw", "train.lr=0.001", "train.lr_multi=1", "train.class_weights=[0.9,1.1]",
            "eval.batch_size=16"]


def res_cfg(res_scenes, *overrides):
    from semiseg.configure import load_config

    root, props = res_scenes
    return load_config(None, [*RES_TINY, f"data.root={root}", "data.split=10pct", f"data.proposal_store={props}",
                              *overrides])


@pytest.fixture(scope="session")
def own_folder(tmp_path_factory):
    """A binary folder data set (4 labeled, 8 unlabeled, 2 validation images), its config and a proposal store."""
    root = write_folder(tmp_path_factory.mktemp("mine"))
    cfg = root / "mine.yaml"
    import yaml

    cfg.write_text(yaml.safe_dump({
        "data": {"dataset": "folder", "root": str(root), "class_names": ["background", "defect"], "crop_size": 32,
                 "batch_size": 2, "num_workers": 0, "proposal_store": str(root / "proposals")},
        "model": {"backbone": "resnet18", "width": 0.125, "head_channels": 16, "low_level_channels": 8},
        "train": {"iters": 2, "eval_interval": 2, "amp": "none", "report": False, "log_interval": 1}}))
    from semiseg.cli import run

    assert run(["proposals", str(cfg), "--out", str(root / "proposals")]) == 0
    return cfg
