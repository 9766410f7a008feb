"""Binary data, the field's most common ask: every semi-supervised method learns at two classes under bf16
autocast, where DSSN's standardised consistency exploded at ties (it stayed at half of supervised-only).
On this fixture's 120 steps the methods land below supervised-only (the second test shows part of why), and
the seed alone moves them by up to 17 points (DSSN 65.5-82.2 on seeds 0-2): the test guards learning, not a
gain. The failure it guards against left DSSN at half of supervised-only; 3/4 catches it and not the seed."""
import numpy as np
import pytest
from PIL import Image

from semiseg.configure import load_config
from semiseg.engine.trainer import train


def blobs(root, folder, n, seed, masks=True):
    """Bright blobs of random size on textured backgrounds; the mask is the blob (0/1)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:48, :48]
    for i in range(n):
        cy, cx, r = rng.integers(12, 36), rng.integers(12, 36), rng.integers(5, 12)
        fg = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
        img = rng.integers(0, 120, (48, 48, 3)).astype(np.uint8)
        img[fg] = np.clip(img[fg] + rng.integers(80, 130), 0, 255)
        (root / folder / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / folder / "images" / f"{i}.png")
        if masks:
            (root / folder / "masks").mkdir(parents=True, exist_ok=True)
            Image.fromarray(fg.astype(np.uint8)).save(root / folder / "masks" / f"{i}.png")


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    root = tmp_path_factory.mktemp("binary")
    blobs(root, ".", 8, 0)
    blobs(root, "unl", 64, 1, masks=False)
    (root / "unlabeled").mkdir()
    for p in (root / "unl" / "images").iterdir():
        p.rename(root / "unlabeled" / p.name)
    blobs(root, "val", 32, 2)
    return root


def miou(root, work, method, *extra):
    cfg = load_config(None, ["data.dataset=folder", f"data.root={root}", "data.class_names=[background, blob]",
                             "data.crop_size=48", "data.batch_size=4", "data.num_workers=0", "model.width=0.25",
                             "model.head_channels=32", "model.low_level_channels=16", "train.iters=120",
                             "train.eval_interval=120", "train.amp=bf16", "train.optimizer=adamw", "train.lr=0.002",
                             "train.lr_multi=1", "train.report=false", "train.log_interval=40",
                             f"method.name={method}", *extra])
    return train(cfg, work_dir=str(work))["mIoU"]


@pytest.mark.slow
def test_every_method_learns_binary_data_under_bf16(binary, tmp_path):
    base = miou(binary, tmp_path / "supervised", "supervised")
    scores = {m: miou(binary, tmp_path / m, m) for m in ("fixmatch", "unimatch", "csl", "dssn")}
    print("binary mIoU:", {"supervised": round(base, 2), **{k: round(v, 2) for k, v in scores.items()}})
    assert base > 50
    for name, score in scores.items():
        assert score > 0.75 * base, (name, score, base)


@pytest.mark.slow
def test_running_stats_clean_gives_back_what_the_strong_views_cost_batchnorm(binary, tmp_path):
    """The strong views' forwards move BatchNorm's running statistics away from clean images; on this
    fixture that costs the foreground most. Leaving them out (CSL's way, ``method.running_stats=clean``)
    lifts FixMatch and UniMatch on every seed here (by 1.7 to 7.7 points at 120 steps)."""
    for method in ("fixmatch", "unimatch"):
        runs = {mode: [miou(binary, tmp_path / f"{method}-{mode}-{s}", method, f"method.running_stats={mode}",
                            f"train.seed={s}") for s in range(3)] for mode in ("all", "clean")}
        gains = [c - a for a, c in zip(runs["all"], runs["clean"])]
        print(method, {k: [round(v, 2) for v in vs] for k, vs in runs.items()}, "gain", [round(g, 2) for g in gains])
        assert sum(gains) / len(gains) > 0, (method, runs)
