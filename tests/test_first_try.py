"""Real data on the first try: binary data, a schedule in epochs, options anywhere on the command line."""
import numpy as np
import pytest
import torch
from PIL import Image

from semiseg.configure import load_config
from semiseg.errors import SemisegError
from semiseg.losses import consistency

from conftest import REPO, write_folder, write_list, write_pair


def test_dssn_consistency_is_smooth_at_two_classes():
    torch.manual_seed(0)
    a = torch.randn(2, 2, 8, 8, requires_grad=True)
    b = torch.randn(2, 2, 8, 8)
    b[:, 1] = b[:, 0] + 1e-7  # ties: where the standardised form's clamped std exploded
    consistency(a, b).backward()
    g = a.grad.abs()
    assert torch.isfinite(g).all() and g.max() < 1.0 and (g > 0).float().mean() > 0.9
    a6 = torch.randn(2, 6, 8, 8)  # more classes: the authors' standardised form, shift and scale invariant
    assert torch.allclose(consistency(a6, 3 * a6 + 1), torch.zeros(()), atol=1e-6)


@pytest.fixture
def binary_folder(tmp_path):
    """A practitioner's binary folder: 4 labeled images (0/1 masks), 8 unlabeled without masks."""
    return write_folder(tmp_path / "defects")


def test_hidden_labels_on_data_without_unlabeled_masks_is_refused(binary_folder):
    from semiseg.tasks import build_task

    cfg = load_config(REPO / "configs/scenes/unimatch.yaml", ["data.dataset=folder", f"data.root={binary_folder}",
                                                       "data.class_names=[good, defect]", "data.num_workers=0"])
    assert cfg.data.hidden_labels  # inherited from the scenes config
    with pytest.raises(SemisegError, match="data.hidden_labels is on, but 8 of the 8 unlabeled samples"):
        build_task(cfg).train_batches(1, torch.device("cpu"))


def test_csl_says_its_separation_is_a_confidence_split_at_two_classes(binary_folder, capsys):
    from semiseg.engine.trainer import Trainer

    cfg = load_config(None, ["method.name=csl", "data.dataset=folder", f"data.root={binary_folder}",
                             "data.class_names=[good, defect]", "data.num_workers=0", "data.crop_size=32",
                             "model.width=0.125", "model.head_channels=16", "data.batch_size=2", "train.iters=1",
                             "train.amp=none", "train.report=false"])
    Trainer(cfg, work_dir=str(binary_folder / "run")).run()
    assert "note: csl selector with 2 classes" in capsys.readouterr().out


def test_a_command_line_iters_wins_over_a_files_epochs(tmp_path):
    voc = REPO / "configs/voc/unimatch_r101-deeplabv3p_4xb2_voc-732.yaml"
    assert load_config(voc).train.epochs > 0
    cfg = load_config(voc, ["train.iters=2"])
    assert cfg.train.iters == 2 and cfg.train.epochs == 0
    path = tmp_path / "both.yaml"
    path.write_text("train:\n  iters: 5\n  epochs: 3\n")
    with pytest.raises(SemisegError, match=f"{path}: sets both train.iters and train.epochs"):
        load_config(path)


def test_overrides_are_accepted_anywhere_on_the_command_line():
    from semiseg.cli import parse

    args = parse(["eval", "x.pth", "--mode", "slide", "eval.max_images=8"])
    assert args.overrides == ["eval.max_images=8"] and args.mode == "slide"
    args = parse(["train", "c.yaml", "--resume", "train.iters=40"])
    assert args.resume == "auto" and args.overrides == ["train.iters=40"]
    args = parse(["train", "c.yaml", "a.b=1", "--force", "c.d=2"])
    assert args.overrides == ["a.b=1", "c.d=2"] and args.force
    with pytest.raises(SystemExit):
        parse(["eval", "x.pth", "--bogus"])


def test_data_check_sees_what_loading_sees_on_cityscapes_label_ids(tmp_path):
    """labelIds in city folders: mapped to trainIds as loading maps them (7 road -> 0, 26 car -> 13); only
    the labeled list is counted; a misspelled split is a problem, not 'no problems found'."""
    from semiseg.data.check import check_layout
    from semiseg.data.presets import resolve_layout

    root = tmp_path / "cityscapes"
    ids = np.full((32, 64), 7, np.uint8)
    ids[:, 40:] = 26
    names = []
    for i, split in enumerate(["train", "train", "val"]):
        stem = f"{split}/aachen/aachen_{i:06d}_000019"
        write_pair(root, f"leftImg8bit/{stem}_leftImg8bit.png", f"gtFine/{stem}_gtFine_labelIds.png", size=(32, 64),
                   mask_values=ids)
        names.append(f"leftImg8bit/{stem}_leftImg8bit.png gtFine/{stem}_gtFine_labelIds.png")
    write_list(root / "splits/1_2/labeled.txt", names[:1])
    write_list(root / "splits/1_2/unlabeled.txt", names[1:2])
    write_list(root / "splits/val.txt", names[2:])
    cfg = load_config(None, ["data.dataset=cityscapes", f"data.root={root}", "data.split=1_2"])
    report = check_layout(resolve_layout(cfg.data))
    assert report.ok, report.problems
    assert report.pixels[0] == 32 * 40 and report.pixels[13] == 32 * 24 and report.pixels.sum() == 32 * 64
    from semiseg.cli import run

    assert run(["data", "check", "data.dataset=cityscapes", f"data.root={root}", "data.split=1_16"]) == 1


def test_a_missing_weights_file_says_which_file_and_the_alternatives():
    from semiseg.models import build_model

    cfg = load_config(REPO / "configs/voc/unimatch_r101-deeplabv3p_4xb2_voc-732.yaml",
                      ["model.pretrained=nope/resnet101.pth"])
    with pytest.raises(SemisegError, match="(?s)nope/resnet101.pth does not exist.*working directory.*deep-stem.*"
                                           "model.stem=standard.*model.pretrained= trains from scratch"):
        build_model(cfg.model, 21)


def test_data_split_pairs_cityscapes_city_folders_and_predict_writes_label_ids(tmp_path):
    from PIL import Image

    from semiseg.cli import run
    from semiseg.data.splits import read_split
    from semiseg.engine.trainer import train
    from semiseg.inference import load

    root = tmp_path / "cityscapes"
    ids = np.full((32, 64), 7, np.uint8)
    ids[:, 40:] = 26
    for city in ("aachen", "bremen"):
        for i in range(3):
            stem = f"{city}/{city}_{i:06d}_000019"
            write_pair(root, f"leftImg8bit/train/{stem}_leftImg8bit.png", f"gtFine/train/{stem}_gtFine_labelIds.png",
                       size=(32, 64), mask_values=ids)
            write_pair(root, f"gtFine/train/{stem}_gtFine_color.png", None, size=(32, 64))  # not a mask
    assert run(["data", "split", "--root", str(root), "--images", "leftImg8bit/train", "--masks", "gtFine/train",
                "--ratio", "0.5", "--out", str(root / "splits/1_2")]) == 0
    pairs = read_split(root / "splits/1_2/labeled.txt", require_mask=True)
    as_image = lambda m: m.replace("gtFine", "leftImg8bit", 1).replace("_gtFine_labelIds", "_leftImg8bit")  # noqa: E731
    assert len(pairs) == 3 and all(s.mask.endswith("_gtFine_labelIds.png") and as_image(s.mask) == s.image
                                   for s in pairs)
    write_list(root / "splits/val.txt", [f"{s.image} {s.mask}" for s in pairs[:1]])
    cfg = load_config(None, ["data.dataset=cityscapes", f"data.root={root}", "data.split=1_2", "model.width=0.125",
                             "model.head_channels=16", "data.crop_size=32", "data.batch_size=2", "data.num_workers=0",
                             "train.iters=1", "train.amp=none", "train.report=false"])
    train(cfg, work_dir=str(tmp_path / "run"))
    predictor = load(tmp_path / "run" / "latest.pth")
    img = root / pairs[0].image
    predictor.predict_files([img], tmp_path / "ids", options={"label_ids": True})
    predictor.predict_files([img], tmp_path / "train_ids")
    name = img.stem + ".png"
    label_ids = np.asarray(Image.open(tmp_path / "ids" / "index" / name))
    train_ids = np.asarray(Image.open(tmp_path / "train_ids" / "index" / name))
    from semiseg.data.presets import CITYSCAPES_ID_TO_TRAINID

    assert all(CITYSCAPES_ID_TO_TRAINID[int(a)] == int(b) for a, b in zip(label_ids.ravel(), train_ids.ravel()))


def test_data_check_says_when_unlabeled_images_are_far_larger(tmp_path):
    from semiseg.data.check import check_layout
    from semiseg.data.presets import resolve_layout

    root = tmp_path / "f"
    for i in range(2):
        write_pair(root, f"images/l{i}.png", f"masks/l{i}.png", size=(40, 60), classes=2, seed=i)
        write_pair(root, f"unlabeled/u{i}.png", None, size=(300, 400), seed=5 + i)
    cfg = load_config(None, ["data.dataset=folder", f"data.root={root}", "data.class_names=[bg, fg]"])
    text = check_layout(resolve_layout(cfg.data)).format()
    assert "labeled median 60 (min 60, max 60), unlabeled median 400" in text
    assert "unlabeled images are 6.7x larger" in text and "data.resize" in text


def test_data_check_counts_the_labeled_list_alone_on_voc(voc_root):
    from semiseg.data.check import check_layout
    from semiseg.data.presets import resolve_layout

    write_list(voc_root / "splits/4/unlabeled.txt",  # unlabeled lines with masks, as UniMatch's lists have
               [f"JPEGImages/2007_{i:06d}.jpg SegmentationClass/2007_{i:06d}.png" for i in range(4, 10)])
    cfg = load_config(None, ["data.dataset=voc", f"data.root={voc_root}", "data.split=4"])
    report = check_layout(resolve_layout(cfg.data))
    assert report.pixels.sum() == 4 * 40 * 48  # the 4 labeled masks, not the 6 unlabeled or 2 val ones


def test_coco_has_a_reference_config():
    cfg = load_config(REPO / "configs/coco/unimatch_r101-deeplabv3p_4xb2_coco-1_512.yaml")
    assert cfg.data.dataset == "coco" and cfg.data.split == "1_512" and cfg.train.epochs == 30


def test_every_cli_option_says_what_it_does_and_its_default():
    import argparse

    from semiseg.cli import build_parser

    def parsers(p, path):
        yield path, p
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from parsers(sub, f"{path} {name}")

    seen, verbs = 0, dict(parsers(build_parser(), "semiseg"))
    for path, p in verbs.items():
        for action in p._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            seen += 1
            assert action.help, f"{path}: {action.option_strings or action.dest} has no help"
    assert seen > 60
    text = verbs["semiseg data scenes"].format_help()
    assert "training scenes (the splits are drawn from them) (default: 1024)" in " ".join(text.split())


def test_a_folder_of_images_and_a_few_masks_is_enough(tmp_path, capsys):
    """A newcomer's folder: images/ and masks/ for some of them, no unlabeled/ and no val/. The images without
    a mask are the unlabeled ones, every 4th labeled image is held out for validation, and training says so."""
    from semiseg.cli import run
    from semiseg.data.presets import resolve_layout

    root = tmp_path / "mine"
    for i in range(12):
        write_pair(root, f"images/a{i:02d}.png", f"masks/a{i:02d}.png" if i < 8 else None, size=(40, 40),
                   classes=2, seed=i)
    cfg = load_config(None, ["data.dataset=folder", f"data.root={root}", "data.class_names=[background, defect]",
                             "data.crop_size=32", "data.batch_size=2", "data.num_workers=0"])
    layout = resolve_layout(cfg.data)
    assert [s.image for s in layout.val] == ["images/a03.png", "images/a07.png"]
    assert [s.image for s in layout.labeled] == [f"images/a{i:02d}.png" for i in (0, 1, 2, 4, 5, 6)]
    assert all(s.mask for s in layout.labeled + layout.val)
    assert [(s.image, s.mask) for s in layout.unlabeled] == [(f"images/a{i:02d}.png", None) for i in range(8, 12)]
    work = tmp_path / "run"
    assert run(["train", "--work-dir", str(work), *cfg_args(root), "method.name=fixmatch", "train.iters=1"]) == 0
    log = capsys.readouterr().out
    assert "no unlabeled/ folder: the 4 images of" in log and "2 of the 8 labeled images (every 4th" in log
    (root / "unlabeled").mkdir()  # where the user keeps unlabeled images apart, a missing mask stays an error
    with pytest.raises(SemisegError, match=r"4 image\(s\) without a mask"):
        resolve_layout(cfg.data)


def test_a_folder_whose_images_all_have_masks_says_where_unlabeled_images_go(tmp_path):
    from semiseg.cli import run

    root = tmp_path / "mine"
    for i in range(6):
        write_pair(root, f"images/a{i}.png", f"masks/a{i}.png", size=(40, 40), classes=2, seed=i)
    with pytest.raises(SemisegError, match=r"method fixmatch needs unlabeled data: no unlabeled/ folder in .*mine and "
                                           r"every image of images/ has a mask \(put the unlabeled images in "
                                           r"unlabeled/, or in images/ without a mask\)"):
        run(["train", "--work-dir", str(tmp_path / "run"), *cfg_args(root), "method.name=fixmatch"])


def cfg_args(root):
    return ["data.dataset=folder", f"data.root={root}", "data.class_names=[background, defect]", "data.crop_size=32",
            "data.batch_size=2", "data.num_workers=0", "model.backbone=resnet18", "model.width=0.125",
            "model.head_channels=16", "model.low_level_channels=8", "train.amp=none", "train.report=false",
            "train.eval_interval=1"]


def _check_and_train(root, tmp_path):
    """What `data check` lists and the one line `train` ends with (its exit status), on the same folder."""
    from semiseg.cli import main

    codes = []
    for argv in (["data", "check"], ["train", "--work-dir", str(tmp_path / "run"), "method.name=fixmatch",
                                     "data.batch_size=1"]):
        with pytest.raises(SystemExit) as e:
            main([*argv, *cfg_args(root)])
        codes.append(e.value.code)
    return tuple(codes)


def test_a_folder_whose_masks_pair_with_no_image_says_so_instead_of_training_on_none(tmp_path, capsys):
    # images in sub-folders, masks flat: before, every image became unlabeled without a word
    root = tmp_path / "mine"
    for i in range(6):
        write_pair(root, f"images/site{i % 2}/a{i}.png", f"masks/a{i}.png" if i < 4 else None, size=(40, 40),
                   classes=2, seed=i)
    assert _check_and_train(root, tmp_path) == (1, 2)
    out = capsys.readouterr()
    line = (f"folder {root / 'masks'}: 4 mask(s) pair with no image of {root / 'images'}, e.g. ['a0', 'a1', 'a2']; "
            "a mask pairs with the image at the same path under images/, e.g. masks/site0/a0.png for "
            "images/site0/a0.png")
    assert f"  - {line}" in out.out  # data check lists it
    assert out.err.strip().splitlines()[-1] == f"error: {line}"  # train refuses in that one line


def test_a_folder_without_masks_or_with_one_labeled_image_says_what_is_missing(tmp_path, capsys):
    root = tmp_path / "bare"
    for i in range(4):
        write_pair(root, f"images/a{i}.png", None, size=(40, 40), seed=i)
    assert _check_and_train(root, tmp_path) == (1, 2)
    out = capsys.readouterr()
    line = (f"folder {root}: none of the 4 images of images/ has a mask in masks/ (a PNG of class ids at the "
            "same path); label some of them to train")
    assert f"  - {line}" in out.out and out.err.strip().splitlines()[-1] == f"error: {line}"
    from semiseg.data.presets import resolve_layout  # what needs no labels (semiseg proposals) still reads it

    assert len(resolve_layout(load_config(None, cfg_args(root)).data).unlabeled) == 4
    write_pair(root, "images/a0.png", "masks/a0.png", size=(40, 40), classes=2, seed=0)
    assert _check_and_train(root, tmp_path) == (1, 2)  # before: the check passed, then train asked for a val split
    out = capsys.readouterr()
    line = (f"folder {root}: 1 labeled image and no val/ folder: label at least 2 (every 4th is held out for "
            "validation) or add val/images + val/masks")
    assert f"  - {line}" in out.out and out.err.strip().splitlines()[-1] == f"error: {line}"


def test_hidden_files_are_skipped_and_two_files_of_one_name_are_refused(tmp_path):
    from semiseg.data.presets import resolve_layout

    root = tmp_path / "mine"
    for i in range(4):
        write_pair(root, f"images/a{i}.png", f"masks/a{i}.png" if i < 3 else None, size=(40, 40), classes=2, seed=i)
    (root / "images" / "._a0.png").write_bytes(b"\0\5\26\7")  # a copy's AppleDouble file: not an image
    (root / "masks" / "._a0.png").write_bytes(b"\0\5\26\7")
    write_pair(root, "images/.ipynb_checkpoints/a1-checkpoint.png", None, size=(40, 40))
    layout = resolve_layout(load_config(None, cfg_args(root)).data)
    assert [s.image for s in layout.unlabeled] == ["images/a3.png"]  # before: ._a0.png and the checkpoint too
    assert sorted(s.image for s in layout.labeled + layout.val) == [f"images/a{i}.png" for i in range(3)]
    write_pair(root, "images/a1.jpg", None, size=(40, 40))  # a second a1: before, one of the two vanished
    with pytest.raises(SemisegError, match=rf"folder {root / 'images'}: two files named a1 \(a1.jpg, a1.png\); "
                                           "keep one"):
        resolve_layout(load_config(None, cfg_args(root)).data)


def test_stray_val_masks_and_jpeg_masks_are_named(tmp_path, capsys):
    from semiseg.cli import main

    root = tmp_path / "mine"
    for i in range(6):
        write_pair(root, f"images/a{i}.png", f"masks/a{i}.png" if i < 4 else None, size=(40, 40), classes=2, seed=i)
    (root / "val/masks").mkdir(parents=True)  # masks for validation, but no val/images
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(root / "val/masks/v0.png")
    (root / "masks/a0.png").unlink()
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(root / "masks/a0.jpg")  # lossy: ids change at edges
    with pytest.raises(SystemExit):
        main(["data", "check", *cfg_args(root)])
    out = capsys.readouterr().out
    assert f"  - folder {root / 'val'}: val/masks without val/images; put the validation images in val/images" in out
    assert (f"  - {root / 'masks/a0.jpg'}: a JPEG mask: its lossy compression changes class ids at edges; "
            "save masks as PNG") in out


def test_a_folder_without_images_says_where_they_go(tmp_path, capsys):
    from semiseg.cli import main

    root = tmp_path / "mine"
    write_pair(root, "unlabeled/u0.png", None, size=(40, 40))
    with pytest.raises(SystemExit):
        main(["train", "--work-dir", str(tmp_path / "run"), *cfg_args(root)])
    assert capsys.readouterr().err == (f"error: folder {root}: no images/ folder; put the labeled images in images/ "
                                       "and their masks in masks/ (the unlabeled ones in unlabeled/ or in images/ "
                                       "without a mask)\n")  # before: advice about split files


def test_one_labeled_image_is_named_before_the_batch_size(tmp_path, capsys):
    from semiseg.cli import main

    root = tmp_path / "one"
    for i in range(3):
        write_pair(root, f"images/a{i}.png", "masks/a0.png" if i == 0 else None, size=(40, 40), classes=2, seed=i)
    with pytest.raises(SystemExit):
        main(["train", "--work-dir", str(tmp_path / "run"), *cfg_args(root)])  # supervised: 1 image, batch 2
    assert "1 labeled image and no val/ folder" in capsys.readouterr().err  # before: lower data.batch_size
