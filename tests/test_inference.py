"""predict, semiseg.load, eval and export from a checkpoint alone."""
import numpy as np
import pytest
from PIL import Image

import semiseg
from semiseg.cli import run
from semiseg.engine.trainer import train
from semiseg.errors import SemisegError
from semiseg.export import export_model

from conftest import tiny_cfg


@pytest.fixture(scope="module")
def ckpt(tiny_scenes, tmp_path_factory):
    work = tmp_path_factory.mktemp("run")
    train(tiny_cfg(tiny_scenes, "train.iters=2", "train.eval_interval=2"), work_dir=str(work))
    return work / "best.pth"


def test_load_and_predict_an_array(ckpt):
    predictor = semiseg.load(str(ckpt))
    img = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    pred = predictor.predict(img)
    assert pred.shape == (50, 70) and pred.dtype == np.uint8 and pred.max() < len(predictor.class_names)
    assert predictor.predict(img, mode="slide").shape == (50, 70)


def test_predict_command_writes_index_colour_and_overlay(ckpt, tiny_scenes, tmp_path, capsys):
    code = run(["predict", str(ckpt), "--input", str(tiny_scenes / "images" / "val_0000*.png"),
                "--output", str(tmp_path)])
    assert code == 0
    for sub in ("index", "color", "overlay"):
        files = sorted((tmp_path / sub).glob("*.png"))
        assert len(files) == 10
    assert Image.open(tmp_path / "color" / "val_00000.png").mode == "RGB"
    assert "overlays in" in capsys.readouterr().out
    with pytest.raises(SemisegError, match="matches no image"):
        run(["predict", str(ckpt), "--input", str(tmp_path / "nothing*.png"), "--output", str(tmp_path)])


def test_eval_command_prints_the_table(ckpt, capsys):
    assert run(["eval", str(ckpt), "--mode", "slide"]) == 0
    out = capsys.readouterr().out
    assert "student (slide)" in out and "mIoU" in out and "background" in out


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_matches_eager(ckpt, tmp_path, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnx")
    diff = export_model(semiseg.load(str(ckpt)), fmt, tmp_path / f"m.{fmt}", (32, 32))
    assert diff < 1e-4
