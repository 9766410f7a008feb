"""The reader and the user-facing edges: high bit depth, EXIF orientation, 0/255 masks of
multi-class data, DINOv2 export, one-line CLI errors, split files with a BOM, the predict API's inputs,
and ONNX files that carry their preprocessing."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import semiseg
from semiseg.cli import main, run
from semiseg.configure import load_config
from semiseg.data.check import check_layout
from semiseg.data.io import read_image
from semiseg.data.presets import resolve_layout
from semiseg.errors import SemisegError

from conftest import short, write_pair

ORIENTATION = 0x0112  # the EXIF tag


@pytest.fixture(scope="module")
def ckpt(tiny_scenes, tmp_path_factory):
    """A tiny scenes checkpoint whose images are resized (long side 40) before the network, as predict does."""
    work = tmp_path_factory.mktemp("run3")
    from semiseg.engine.trainer import train

    train(short(tiny_scenes, "data.resize=40"), work_dir=str(work))
    return str(work / "best.pth")


def cli_error(argv, capsys) -> str:
    """The CLI's answer to a user error: exit 2 and one line on stderr."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, (exit_.value.code, err)
    return err


# 1. high bit depth

def test_a_16_bit_gray_png_reads_as_value_over_257(ckpt, tmp_path):
    from semiseg.data.io import as_rgb

    values = np.array([[1542, 49087, 0], [65535, 128, 129]], np.uint16)  # 128/257 rounds to 0, 129/257 to 1
    big = np.kron(values, np.ones((8, 8), np.uint16))
    path = tmp_path / "gray16.png"
    Image.fromarray(big).save(path)
    assert Image.open(path).mode in ("I;16", "I")
    img = read_image(path)
    assert img.shape == (16, 24, 3) and img.dtype == np.uint8
    assert img[::8, ::8, 0].tolist() == [[6, 191, 0], [255, 0, 1]]
    assert np.array_equal(img, np.repeat(np.rint(big / 257).astype(np.uint8)[..., None], 3, axis=2))
    for other, scaled in ((big.astype(np.int32), img),  # mode I: 16-bit data in 32 bits
                          (np.full((4, 4), 0.5, np.float32), np.full((4, 4, 3), 128, np.uint8)),  # F in [0, 1]
                          (np.full((4, 4), 300.0, np.float32), np.full((4, 4, 3), 255, np.uint8))):  # F above 1
        Image.fromarray(other).save(tmp_path / "other.tif")
        assert np.array_equal(read_image(tmp_path / "other.tif"), scaled)
    predictor = semiseg.load(ckpt)
    assert np.array_equal(as_rgb(path), img) and np.array_equal(as_rgb(Image.open(path)), img)
    assert np.array_equal(predictor.predict(path), predictor.predict(img))


# 2. EXIF orientation

def exif_jpeg(path, seed: int = 0) -> np.ndarray:
    """A JPEG stored 120x60 (W x H) with EXIF orientation 6 (shown rotated 90 degrees clockwise, 60x120);
    returns the stored pixels as decoded."""
    stored = np.zeros((60, 120, 3), np.uint8)
    stored[:, :40] = 250  # a bright left third: after the rotation, the top third
    stored += np.random.default_rng(seed).integers(0, 5, stored.shape, dtype=np.uint8)
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    Image.fromarray(stored).save(path, exif=exif.tobytes(), quality=95)
    with Image.open(path) as im:
        assert im.size == (120, 60) and im.getexif()[ORIENTATION] == 6
        return np.asarray(im.convert("RGB"))


def test_exif_orientation_is_applied_by_the_reader_predict_and_data_check(ckpt, tmp_path):
    decoded = exif_jpeg(tmp_path / "phone.jpg")
    img = read_image(tmp_path / "phone.jpg")
    assert img.shape == (120, 60, 3)
    assert np.array_equal(img, np.rot90(decoded, k=-1)) and img[:40].mean() > 200 and img[40:].mean() < 10
    predictor = semiseg.load(ckpt)
    assert predictor.predict(tmp_path / "phone.jpg").shape == (120, 60)
    assert run(["predict", ckpt, "--input", str(tmp_path / "phone.jpg"), "--output", str(tmp_path / "out")]) == 0
    assert Image.open(tmp_path / "out" / "index" / "phone.png").size == (60, 120)

    root = tmp_path / "folder"
    (root / "images").mkdir(parents=True)
    exif_jpeg(root / "images" / "p.jpg")
    (root / "masks").mkdir()
    Image.fromarray((np.arange(120)[:, None] < 40).repeat(60, 1).astype(np.uint8)).save(root / "masks" / "p.png")
    cfg = load_config(None, ["data.dataset=folder", f"data.root={root}", "data.class_names=[bg, fg]"])
    report = check_layout(resolve_layout(cfg.data))
    assert report.problems == [] and report.sizes["labeled"] == [120]


# 7. 0/255 masks are a trap of binary data sets only

def test_data_check_takes_0_and_255_as_class_0_and_ignore_on_multi_class_data(voc_root, tmp_path, capsys):
    from semiseg.data.io import is_binary_255
    from semiseg.tasks.semantic.dataset import check_binary_masks

    border = np.zeros((40, 48), np.uint8)
    border[:3], border[-3:] = 255, 255  # background and VOC's void border, nothing else
    for mask in voc_root.glob("SegmentationClass/*.png"):
        Image.fromarray(border).save(mask)
    code = run(["data", "check", "data.dataset=voc", f"data.root={voc_root}", "data.split=4"])
    out = capsys.readouterr().out
    assert code == 0 and "no problems found" in out and "0/255" not in out
    cfg = load_config(None, ["data.dataset=voc", f"data.root={voc_root}", "data.split=4"])
    check_binary_masks(resolve_layout(cfg.data))  # training does not refuse them either
    assert not is_binary_255([0, 255], 21) and not is_binary_255([0, 255], 19) and is_binary_255([0, 255], 2)

    root = tmp_path / "binary"
    for i in range(2):
        write_pair(root, f"images/im{i}.png", f"masks/im{i}.png", classes=2, seed=i, mask_values=border)
    cfg = load_config(None, ["data.dataset=folder", f"data.root={root}", "data.class_names=[bg, fg]"])
    problems = check_layout(resolve_layout(cfg.data)).problems
    assert len(problems) == 2 and all("binary mask saved as 0/255" in p for p in problems)


# 12. DINOv2 + DPT export

def test_a_dinov2_dpt_model_exports_to_onnx_and_torchscript(tmp_path, monkeypatch):
    pytest.importorskip("dinov2")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from semiseg import export
    from semiseg.tasks.semantic.predict import SemanticPredictor as Predictor
    from semiseg.models import build_model

    cfg = load_config(None, ["model.arch=dpt", "model.backbone=dinov2_tiny", "data.crop_size=56"])
    torch.manual_seed(0)
    predictor = Predictor(build_model(cfg.model, 3), cfg, ["a", "b", "c"], [[0, 0, 0]] * 3)
    sizes = export.check_sizes((56, 56)) + [(35, 21)]  # 2.5 and 1.5 patches: ties, rounded to even as in eager
    monkeypatch.setattr(export, "check_sizes", lambda size: sizes)
    for fmt in ("torchscript", "onnx"):
        diffs = export.export_model(predictor, fmt, tmp_path / f"m.{fmt}", (56, 56))
        assert set(diffs) == set(sizes) and max(diffs.values()) < 1e-4, (fmt, diffs)


def test_the_traceable_position_embedding_resize_is_the_packages():
    pytest.importorskip("dinov2")
    from semiseg.models.dinov2 import DINOv2Encoder, patch_count, traceable_pos_encoding

    assert [patch_count(n) for n in (1, 7, 21, 35, 36, 518)] == [1, 1, 2, 2, 3, 37]
    assert [int(patch_count(torch.tensor(n))) for n in (1, 7, 21, 35, 36, 518)] == [1, 1, 2, 2, 3, 37]
    torch.manual_seed(0)
    vit = DINOv2Encoder("tiny").vit
    for h, w in [(518, 518), (56, 56), (518, 532), (70, 42), (28, 700)]:  # 518: the table's own grid, unchanged
        ref = vit.interpolate_pos_encoding(torch.zeros(1, (h // 14) * (w // 14) + 1, 64), h, w)
        ours = traceable_pos_encoding(vit.pos_embed, torch.zeros(1), torch.tensor(h), torch.tensor(w))
        assert ours.shape == ref.shape and torch.allclose(ours, ref, atol=1e-5), (h, w)


# 13. one line and exit 2, not a traceback or an empty page

def test_report_export_and_predict_refuse_bad_folders_and_devices_in_one_line(ckpt, tmp_path, capsys):
    missing = tmp_path / "nope"
    assert cli_error(["report", str(missing)], capsys) == f"error: report folder {missing} does not exist\n"
    (tmp_path / "empty").mkdir()
    assert "holds no run" in cli_error(["report", str(tmp_path / "empty")], capsys)
    assert not (tmp_path / "empty" / "report.html").exists()

    (tmp_path / "afile").write_text("x")
    err = cli_error(["predict", ckpt, "--input", str(tmp_path / "afile"), "--output", str(tmp_path / "afile")], capsys)
    assert err == f"error: --output {tmp_path / 'afile'} is a file; it must be a folder (predict writes index/, " \
                  "color/ and overlay/ into it)\n"

    # export --output creates its folder, as predict creates its --output folder
    out = tmp_path / "new" / "sub" / "m.pt"
    with pytest.raises(SystemExit) as exit_:
        main(["export", ckpt, "--format", "torchscript", "--output", str(out)])
    assert exit_.value.code == 0 and out.is_file()
    err = cli_error(["export", ckpt, "--format", "torchscript", "--output", str(tmp_path / "afile" / "m.pt")], capsys)
    assert f"cannot create the folder {tmp_path / 'afile'}" in err

    write_pair(tmp_path, "pic.png", None)
    if not torch.cuda.is_available():
        err = cli_error(["predict", ckpt, "--input", str(tmp_path / "pic.png"), "--output", str(tmp_path / "o"),
                         "--device", "cuda"], capsys)
        assert err == "error: device cuda: CUDA is not available here; this machine has: cpu\n"
    err = cli_error(["predict", ckpt, "--input", str(tmp_path / "pic.png"), "--output", str(tmp_path / "o"),
                     "--device", "mps"], capsys)
    assert err.startswith("error: device mps: semiseg runs on cpu or cuda; this machine has: cpu")


# 15. split files with a byte-order mark

def test_a_split_file_with_a_bom_reads_its_first_path(tmp_path):
    from semiseg.data.splits import read_split
    from semiseg.tasks.referring.sources import read_ids

    root = tmp_path / "bom"
    for i in range(2):
        write_pair(root, f"images/{i}.png", f"masks/{i}.png", classes=3, seed=i)
    (root / "l.txt").write_text("\ufeffimages/0.png masks/0.png\r\nimages/1.png masks/1.png\r\n", encoding="utf-8")
    assert [s.image for s in read_split(root / "l.txt", require_mask=True)] == ["images/0.png", "images/1.png"]
    cfg = load_config(None, ["data.dataset=folder", f"data.root={root}", "data.labeled=l.txt", "data.num_classes=3"])
    report = check_layout(resolve_layout(cfg.data))
    assert report.problems == [] and report.images == {"labeled": 2}
    (root / "ids.txt").write_text("\ufeff12\n7\n", encoding="utf-8")
    assert read_ids(root / "ids.txt") == {12, 7}


# 16. the predict API's inputs

def test_predict_refuses_empty_arrays_and_lists_and_folders_find_gifs(ckpt, tmp_path):
    from semiseg.data.io import expand_inputs

    predictor = semiseg.load(ckpt)
    with pytest.raises(SemisegError, match=r"^predict got an empty image of shape \(0, 0, 3\)$"):
        predictor.predict(np.zeros((0, 0, 3), np.uint8))
    with pytest.raises(SemisegError, match=r"^predict got an empty image of shape \(0, 7\)$"):
        predictor.predict(np.zeros((0, 7), np.uint8))
    write_pair(tmp_path / "in", "a.png", None, size=(20, 30))
    Image.open(tmp_path / "in" / "a.png").save(tmp_path / "in" / "b.gif")
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    with pytest.raises(SemisegError, match=r"predict takes one image, got a list of 2; loop over them"):
        predictor.predict([tmp_path / "in" / "a.png", tmp_path / "in" / "b.gif"])
    found = [tmp_path / "in" / "a.png", tmp_path / "in" / "b.gif"]
    assert expand_inputs(str(tmp_path / "in")) == found and expand_inputs(str(tmp_path / "in" / "*")) == found
    assert predictor.predict(tmp_path / "in" / "b.gif").shape == (20, 30)


# 17. an ONNX file carries its preprocessing

def test_an_onnx_export_carries_its_preprocessing_and_gives_predicts_masks(ckpt, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from semiseg.export import onnx_input, onnx_mask

    out = tmp_path / "m.onnx"
    assert run(["export", ckpt, "--format", "onnx", "--output", str(out)]) == 0
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    predictor = semiseg.load(ckpt)
    assert meta["resize"] == "40" and meta["crop_size"] == "32" and meta["pixel_scale"] == "0-1"
    assert json.loads(meta["mean"]) == [0.485, 0.456, 0.406] and json.loads(meta["std"]) == [0.229, 0.224, 0.225]
    assert json.loads(meta["class_names"]) == predictor.class_names and meta["semiseg_version"] == semiseg.__version__
    assert json.loads(meta["palette"]) == predictor.palette
    img = np.random.default_rng(3).integers(0, 255, (50, 70, 3), dtype=np.uint8)  # not the training size
    x = onnx_input(img, meta)
    assert x.shape == (1, 3, 29, 40) and x.dtype == np.float32
    mask = onnx_mask(sess.run(None, {"image": x})[0], img.shape[:2])
    ref = predictor.predict(img)
    assert mask.shape == ref.shape == (50, 70)
    assert (mask == ref).mean() >= 0.999, (mask != ref).sum()
