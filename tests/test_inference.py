"""predict, semiseg.load, eval and export from a checkpoint alone."""
import numpy as np
import pytest
from PIL import Image

import semiseg
from semiseg.cli import run
from semiseg.engine.trainer import train
from semiseg.errors import SemisegError

from conftest import REPO, tiny_cfg


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


def test_a_prediction_that_fails_mid_write_keeps_the_earlier_one(ckpt, tiny_scenes, tmp_path, monkeypatch):
    """The PNGs were written in place: a full disk (or Ctrl-C) mid-write left a truncated file under the final
    name, over the earlier good one. Each is now written beside it and renamed; a failure names the file."""
    import errno

    image = str(tiny_scenes / "images" / "val_00000.png")
    assert run(["predict", str(ckpt), "--input", image, "--output", str(tmp_path)]) == 0
    before = {p: p.read_bytes() for p in tmp_path.rglob("*.png")}
    real_save = Image.Image.save

    def full_disk(self, fp, format=None, **params):
        real_save(self, fp, format or "PNG", **params)  # the whole file, then the disk is full
        if hasattr(fp, "truncate"):
            fp.truncate(40)
        else:
            with open(fp, "r+b") as f:
                f.truncate(40)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full_disk)
    with pytest.raises(SemisegError, match=f"cannot write {tmp_path / 'index' / 'val_00000.png'}: No space left"):
        run(["predict", str(ckpt), "--input", image, "--output", str(tmp_path)])
    assert {p: p.read_bytes() for p in tmp_path.rglob("*.png")} == before
    assert not [p for p in tmp_path.rglob(".*tmp*")]


def test_an_unreadable_image_among_many_says_how_many_were_written(ckpt, tiny_scenes, tmp_path):
    """predict stopped at an unreadable file with no word of what it had written, and a first file that failed left
    empty index/, color/ and overlay/ folders behind."""
    import shutil

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        shutil.copy(tiny_scenes / "images" / "val_00000.png", folder / name)
    (folder / "c.png").write_text("not an image")
    with pytest.raises(SemisegError, match=f"c.png cannot be read.*2 of 3 images were written to {tmp_path / 'o'}"):
        run(["predict", str(ckpt), "--input", str(folder), "--output", str(tmp_path / "o")])
    assert sorted(p.name for p in (tmp_path / "o" / "index").iterdir()) == ["a.png", "b.png"]
    with pytest.raises(SemisegError, match="0 of 1 images"):
        run(["predict", str(ckpt), "--input", str(folder / "c.png"), "--output", str(tmp_path / "none")])
    assert not (tmp_path / "none").exists()


def test_a_checkpoint_without_its_settings_is_one_line(ckpt, tiny_scenes, tmp_path):
    """A checkpoint whose 'config' entry is gone (or no mapping) was a KeyError traceback in predict, eval, export."""
    import torch

    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    for name, cfg in (("none.pth", None), ("text.pth", "x")):
        bad = tmp_path / name
        torch.save({k: v for k, v in state.items() if k != "config"} | ({} if cfg is None else {"config": cfg}), bad)
        for argv in (["predict", str(bad), "--input", str(tiny_scenes / "images" / "val_00000.png"), "--output",
                      str(tmp_path / "o")], ["eval", str(bad)],
                     ["export", str(bad), "--output", str(tmp_path / "m.onnx")]):
            with pytest.raises(SemisegError, match=f"checkpoint {bad} holds no settings"):
                run(argv)
    with pytest.raises(SemisegError, match=f"checkpoint {tmp_path} is a folder"):
        run(["eval", str(tmp_path)])


def test_eval_command_prints_the_table(ckpt, capsys):
    assert run(["eval", str(ckpt), "--mode", "slide"]) == 0
    out = capsys.readouterr().out
    assert "student (slide)" in out and "mIoU" in out and "background" in out


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_of_the_scenes_model_runs_at_any_size(tiny_scenes, tmp_path, fmt, monkeypatch):
    """The scenes model (EfficientNet-Lite0, TF SAME padding that depends on the input's parity) at the
    export size and at sizes it was not exported at, odd and non-square ones included."""
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnx")
    import torch

    from semiseg import export
    from semiseg.configure import load_config
    from semiseg.tasks.semantic.predict import SemanticPredictor as Predictor
    from semiseg.models import build_model

    cfg = load_config(REPO / "configs/scenes/supervised.yaml", ["model.pretrained=", "model.head_channels=32"])
    torch.manual_seed(0)
    predictor = Predictor(build_model(cfg.model, 6), cfg, [str(i) for i in range(6)], [[0, 0, 0]] * 6)
    sizes = [(96, 96), (128, 128), (43, 64), (100, 37)]
    monkeypatch.setattr(export, "check_sizes", lambda size: sizes)
    diffs = export.export_model(predictor, fmt, tmp_path / f"m.{fmt}", (96, 96))
    assert set(diffs) == set(sizes) and max(diffs.values()) < 1e-4, diffs
    assert len(export.check_sizes((96, 96))) == 4 and len({h % 2 for h, _ in export.check_sizes((96, 96))}) == 2


def test_an_export_that_drifts_at_another_size_is_refused(ckpt, tmp_path, monkeypatch):
    import torch

    from semiseg import export

    predictor = semiseg.load(str(ckpt))
    real = torch.jit.load  # a loaded export that is wrong away from the export size, as shapes baked in were
    monkeypatch.setattr(torch.jit, "load", lambda path: (lambda m: lambda x: m(x) + (x.shape[-1] != 32))(real(path)))
    with pytest.raises(SemisegError, match="differs from the model by .* on a .* input"):
        export.export_model(predictor, "torchscript", tmp_path / "m.pt", (32, 32))
    assert not (tmp_path / "m.pt").exists()
    # an earlier export under that name is kept: the new one is written beside it and renamed only once checked
    # (the refusal removed the earlier file, and a kill mid-write left a torn one under the name)
    (tmp_path / "m.pt").write_bytes(b"earlier")
    with pytest.raises(SemisegError, match="differs from the model by"):
        export.export_model(predictor, "torchscript", tmp_path / "m.pt", (32, 32))
    assert (tmp_path / "m.pt").read_bytes() == b"earlier" and sorted(tmp_path.iterdir()) == [tmp_path / "m.pt"]
