"""Nothing lost without a word, and every bad file gets one line naming it (reliability, items 3-6)."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import semiseg
from semiseg.cli import run
from semiseg.configure import load_config
from semiseg.data.check import check_layout
from semiseg.data.presets import resolve_layout
from semiseg.data.splits import Sample, write_split
from semiseg.engine.checkpoint import load_checkpoint
from semiseg.engine.trainer import Trainer, train
from semiseg.errors import SemisegError

from conftest import TINY, short, write_list, write_pair


def test_a_new_run_never_replaces_another_runs_checkpoints(tiny_scenes, tmp_path):
    train(short(tiny_scenes), work_dir=str(tmp_path))
    best = load_checkpoint(tmp_path / "best.pth")
    rows = (tmp_path / "metrics.jsonl").read_text()
    with pytest.raises(SemisegError, match="holds a run .*--resume.*--force"):
        Trainer(short(tiny_scenes, "train.seed=5"), work_dir=str(tmp_path))
    assert torch.equal(load_checkpoint(tmp_path / "best.pth")["model"]["classifier.weight"],
                       best["model"]["classifier.weight"])
    assert (tmp_path / "metrics.jsonl").read_text() == rows  # nothing appended
    train(short(tiny_scenes, "train.seed=5"), work_dir=str(tmp_path), force=True)  # asked for: a fresh history
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "train"]
    assert steps == [1, 2]


def test_predict_writes_one_file_per_input_even_with_equal_stems(tiny_scenes, tmp_path):
    work = tmp_path / "run"
    train(short(tiny_scenes), work_dir=str(work))
    photos = tmp_path / "photos"
    photos.mkdir()
    rgb = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(photos / "pic.jpg")
    Image.fromarray(rgb).save(photos / "pic.png")
    Image.fromarray(rgb).save(photos / "other.png")
    assert run(["predict", str(work / "best.pth"), "--input", str(photos), "--output", str(tmp_path / "out")]) == 0
    written = sorted(p.name for p in (tmp_path / "out" / "index").iterdir())
    assert written == ["other.png", "pic.jpg.png", "pic.png.png"]  # only the equal stems take their suffix


def test_a_corrupt_validation_image_stops_before_the_first_step_or_is_dropped(tiny_scenes, tmp_path):
    import shutil

    root = tmp_path / "scenes"
    shutil.copytree(tiny_scenes, root)
    first_val = (root / "splits" / "val.txt").read_text().split()[0]
    data = (root / first_val).read_bytes()
    (root / first_val).write_bytes(data[: len(data) // 2])  # torn in the middle
    with pytest.raises(SemisegError, match=f"(?s)1 of the 16 samples of .*val.txt cannot be used.*{first_val}"):
        Trainer(short(root), work_dir=str(tmp_path / "stop"))
    assert not (tmp_path / "stop" / "latest.pth").exists()
    trainer = Trainer(short(root, "data.on_error=skip"), work_dir=str(tmp_path / "skip"))
    assert len(trainer.val_loader.dataset) == 15
    trainer.run()


def test_checkpoint_errors_name_the_file(tiny_scenes, tmp_path):
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(SemisegError, match=f"checkpoint {empty} is empty"):
        load_checkpoint(empty)
    torn = tmp_path / "torn.pth"
    torch.save({"model": {"w": torch.zeros(3)}}, torn)
    torn.write_bytes(torn.read_bytes()[:40])
    with pytest.raises(SemisegError, match=f"checkpoint {torn} cannot be loaded.*\\S"):
        load_checkpoint(torn)
    work = tmp_path / "r18"
    train(short(tiny_scenes), work_dir=str(work))
    other = ["model.backbone=resnet34"]
    with pytest.raises(SemisegError, match=f"checkpoint {work / 'best.pth'}: its model weights do not fit"):
        Trainer(short(tiny_scenes, *other), work_dir=str(tmp_path / "a"), load_from=str(work / "best.pth"))
    with pytest.raises(SemisegError, match=f"checkpoint {work / 'latest.pth'}: its model weights do not fit"):
        Trainer(short(tiny_scenes, *other), work_dir=str(work), resume="auto")


def test_python_api_takes_pil_images_of_any_mode_and_says_what_an_array_must_be(tiny_scenes, tmp_path):
    work = tmp_path / "run"
    train(short(tiny_scenes), work_dir=str(work))
    predictor = semiseg.load(str(work / "best.pth"))
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8))
    ref = predictor.predict(np.asarray(rgb))
    for mode in ("L", "RGBA", "P"):
        img = rgb.convert(mode)
        path = tmp_path / f"x_{mode}.png"
        img.save(path)
        assert np.array_equal(predictor.predict(img), predictor.predict(path)), mode
    assert np.array_equal(predictor.predict(rgb.convert("RGBA")), ref)
    with pytest.raises(SemisegError, match="uint8 pixel values 0-255, got an array of float64"):
        predictor.predict(np.asarray(rgb) / 255.0)


def folder_with_problems(root):
    """Three problems at once: a JPEG torn in the middle, an image without a mask, a 0/255 mask."""
    for i in range(4):
        write_pair(root, f"images/im{i}.jpg", f"masks/im{i}.png", size=(64, 64), classes=2, seed=i)
    data = (root / "images/im0.jpg").read_bytes()
    (root / "images/im0.jpg").write_bytes(data[: len(data) // 2])  # header intact, pixels torn
    (root / "masks/im1.png").unlink()
    write_pair(root, "unlabeled/u0.png", None, size=(64, 64))  # unlabeled images apart: a missing mask is an error
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) % 2 * 255).astype(np.uint8)).save(root / "masks/im2.png")
    return root


def test_data_check_decodes_every_image_and_lists_every_problem(tmp_path):
    root = folder_with_problems(tmp_path / "f")
    cfg = load_config(None, ["data.dataset=folder", f"data.root={root}", "data.class_names=[bg, fg]"])
    report = check_layout(resolve_layout(cfg.data, lenient=True))
    text = "\n".join(report.problems)
    assert "im0.jpg: unreadable image" in text  # verify() alone passed it
    assert "im1.jpg: labeled sample without a mask" in text
    assert "im2.png: binary mask saved as 0/255" in text
    with pytest.raises(SemisegError, match="without a mask"):  # training itself stays strict
        resolve_layout(cfg.data)


def test_labeled_and_unlabeled_overlap_is_reported(voc_root):
    lab = (voc_root / "splits/4/labeled.txt").read_text().splitlines()
    write_list(voc_root / "splits/4/unlabeled.txt", [lab[0].split()[0], "JPEGImages/2007_000005.jpg"])
    cfg = load_config(None, ["data.dataset=voc", f"data.root={voc_root}", "data.split=4"])
    report = check_layout(resolve_layout(cfg.data))
    assert any("1 image(s) are in both the labeled and the unlabeled list" in p for p in report.problems)


def test_training_refuses_or_warns_on_binary_0_255_masks(tmp_path, capfd):
    from semiseg.tasks import build_task

    root = tmp_path / "f"
    for i in range(4):
        write_pair(root, f"images/im{i}.png", f"masks/im{i}.png", size=(40, 40), classes=2, seed=i,
                   mask_values=(np.eye(40) * 255).astype(np.uint8))
    cfg = load_config(None, TINY + ["data.dataset=folder", f"data.root={root}", "data.class_names=[bg, fg]",
                                    "data.val=", "data.batch_size=2", "train.iters=1"])
    # no val/ folder: im3 is held out for validation, im0-im2 are the labeled images
    with pytest.raises(SemisegError, match="3 of the 3 labeled masks hold only 0 and 255"):  # all: refused
        build_task(cfg).train_batches(0, torch.device("cpu"))
    write_pair(root, "images/im0.png", "masks/im0.png", size=(40, 40), classes=2, seed=0)  # some: a warning
    build_task(cfg).train_batches(0, torch.device("cpu"))
    assert "2 of the 3 labeled masks hold only 0 and 255" in capfd.readouterr().err


def test_split_files_refuse_names_their_reader_cannot_read(tmp_path):
    with pytest.raises(SemisegError, match="whitespace.*my photo.jpg"):
        write_split(tmp_path / "l.txt", [Sample("images/my photo.jpg", "masks/my photo.png")])
    assert not (tmp_path / "l.txt").exists()
    cmd = [sys.executable, "-m", "semiseg", "data", "split", "--root", str(tmp_path), "--images", "nope",
           "--ratio", "0.5", "--out", str(tmp_path / "s")]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "does not exist" in out.stderr
