"""Split files, presets, the dataset's geometry and its bad-input errors."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from semiseg.configure import load_config
from semiseg.tasks.semantic.dataset import SegDataset
from semiseg.data.presets import resolve_layout
from semiseg.data.splits import Sample, draw_split, read_split
from semiseg.data.transforms import PAD_UNLABELED
from semiseg.errors import SemisegError

from conftest import write_list, write_pair


def cfg_for(root, dataset, **over):
    args = [f"data.dataset={dataset}", f"data.root={root}", "data.crop_size=32"]
    args += [f"{k}={v}" for k, v in over.items()]
    return load_config(None, args)


def test_split_file_mask_optional_for_unlabeled_and_no_final_newline(tmp_path):
    p = tmp_path / "u.txt"
    p.write_text("a.jpg\nb.jpg b.png")  # no trailing newline, mixed columns
    assert read_split(p, require_mask=False) == [Sample("a.jpg"), Sample("b.jpg", "b.png")]
    with pytest.raises(SemisegError, match="u.txt, line 1.*needs 'image mask'"):
        read_split(p, require_mask=True)


def test_empty_and_missing_split_files_are_errors(tmp_path):
    (tmp_path / "e.txt").write_text("\n\n")
    with pytest.raises(SemisegError, match="e.txt is empty"):
        read_split(tmp_path / "e.txt", require_mask=False)
    with pytest.raises(SemisegError, match="nope.txt does not exist"):
        read_split(tmp_path / "nope.txt", require_mask=False)


def test_draw_split_is_seeded_and_disjoint():
    samples = [Sample(f"{i}.png") for i in range(100)]
    l1, u1 = draw_split(samples, seed=3, ratio=1 / 16)
    l2, _ = draw_split(samples, seed=3, ratio=1 / 16)
    assert l1 == l2 and len(l1) == 6 and len(u1) == 94
    assert not {s.image for s in l1} & {s.image for s in u1}


def test_voc_and_cityscapes_layouts_load_through_the_same_dataset(voc_root, tmp_path):
    voc = cfg_for(voc_root, "voc", **{"data.split": "4"})
    layout = resolve_layout(voc.data)
    assert len(layout.class_names) == 21 and len(layout.labeled) == 4 and len(layout.unlabeled) == 6
    item = SegDataset(layout.labeled, layout, voc.data, "train_l")[(0, 0)]
    assert item["image"].shape == (3, 32, 32) and item["mask"].shape == (32, 32)

    # Cityscapes with labelIds only: mapped to trainIds on load (7 -> road 0, 26 -> car 13, 0 -> 255)
    city = tmp_path / "city"
    ids = np.array([[7, 26], [0, 33]], np.uint8).repeat(20, 0).repeat(24, 1)
    rel_img = "leftImg8bit/train/jena/jena_000001_000019_leftImg8bit.png"
    rel_mask = "gtFine/train/jena/jena_000001_000019_gtFine_labelIds.png"
    write_pair(city, rel_img, rel_mask, mask_values=ids)
    write_list(city / "splits/1_16/labeled.txt", [f"{rel_img} {rel_mask}"])
    write_list(city / "splits/val.txt", [f"{rel_img} {rel_mask}"])
    ccfg = cfg_for(city, "cityscapes")
    clayout = resolve_layout(ccfg.data)
    val = SegDataset(clayout.val, clayout, ccfg.data, "val")[0]
    assert set(val["mask"].unique().tolist()) == {0, 13, 255, 18}
    assert SegDataset(clayout.labeled, clayout, ccfg.data, "train_l")[(0, 0)]["mask"].shape == (32, 32)


def test_folder_layout(tmp_path):
    root = tmp_path / "folder"
    for i in range(3):
        write_pair(root, f"images/{i}.png", f"masks/{i}.png", classes=2, seed=i)
        write_pair(root, f"unlabeled/u{i}.jpg", None)
    layout = resolve_layout(cfg_for(root, "folder", **{"data.class_names": "[bg,defect]"}).data)
    assert len(layout.unlabeled) == 3 and layout.labeled[0] == Sample("images/0.png", "masks/0.png")
    # no val/ folder: the last of the 3 labeled images is held out (every 4th, at least one)
    assert layout.labeled == [Sample("images/0.png", "masks/0.png"), Sample("images/1.png", "masks/1.png")]
    assert layout.val == [Sample("images/2.png", "masks/2.png")]


def test_unlabeled_padding_is_254_and_kept_apart(voc_root):
    cfg = cfg_for(voc_root, "voc", **{"data.split": "4", "data.crop_size": 128, "data.scale_range": "[0.5,0.5]"})
    layout = resolve_layout(cfg.data)
    item = SegDataset(layout.unlabeled, layout, cfg.data, "train_u")[(0, 0)]
    # a 48 px long side halved to 24 inside a 128 crop: most of the crop is padding, and only padding is ignored
    assert item["ignore"].float().mean() > 0.9 and "mask" not in item
    lab = SegDataset(layout.labeled, layout, cfg.data, "train_l")[(0, 0)]
    assert (lab["mask"] == 255).float().mean() > 0.9 and not (lab["mask"] == PAD_UNLABELED).any()


def test_augmentation_depends_only_on_seed_epoch_index(voc_root):
    cfg = cfg_for(voc_root, "voc", **{"data.split": "4"})
    layout = resolve_layout(cfg.data)
    ds = SegDataset(layout.labeled, layout, cfg.data, "train_l", seed=1)
    a, b, c = ds[(1, 0)], ds[(1, 0)], ds[(1, 1)]
    assert torch.equal(a["image"], b["image"]) and not torch.equal(a["image"], c["image"])


@pytest.mark.parametrize("trap,expected", [
    ("missing", "image file .*missing.png does not exist"),
    ("corrupt", "image file .*corrupt.jpg cannot be read"),
    ("size", "mask file .*is 10x10 but its image .* is 48x40"),
    ("range", r"label values \[7\] outside \[0, 3\)"),
    ("rgb", "is an RGB image; masks must be single-channel"),
])
def test_bad_samples_stop_with_the_file_and_the_problem(tmp_path, trap, expected):
    root = tmp_path / "bad"
    img, mask = f"images/{trap}.jpg", f"masks/{trap}.png"
    write_pair(root, img, mask, classes=3)
    if trap == "missing":
        img = "images/missing.png"
    elif trap == "corrupt":
        (root / img).write_bytes(b"not a jpeg at all")
    elif trap == "size":
        Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / mask)
    elif trap == "range":
        Image.fromarray(np.full((40, 48), 7, np.uint8)).save(root / mask)
    elif trap == "rgb":
        Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(root / mask)
    write_list(root / "list.txt", [f"{img} {mask}"])
    cfg = cfg_for(root, "folder", **{"data.labeled": "list.txt", "data.num_classes": 3})
    layout = resolve_layout(cfg.data)
    with pytest.raises(SemisegError, match=expected):
        SegDataset(layout.labeled, layout, cfg.data, "train_l")[(0, 0)]


def test_blobs_is_a_seeded_binary_folder_data_set(tmp_path):
    from semiseg.cli import run

    for out in ("a", "b"):
        assert run(["data", "blobs", "--out", str(tmp_path / out), "--labeled", "3", "--unlabeled", "5", "--val", "2",
                    "--size", "32"]) == 0
    a, b = tmp_path / "a", tmp_path / "b"
    assert (a / "unlabeled" / "0004.png").read_bytes() == (b / "unlabeled" / "0004.png").read_bytes()
    masks = np.stack([np.asarray(Image.open(p)) for p in sorted((a / "masks").glob("*.png"))])
    assert set(np.unique(masks)) == {0, 1} and 0.01 < masks.mean() < 0.5  # binary, a small foreground
    cfg = load_config(None, ["data.dataset=folder", f"data.root={a}", "data.class_names=[background, blob]",
                             "data.unlabeled=splits/hidden/unlabeled.txt"])
    layout = resolve_layout(cfg.data)
    assert (len(layout.labeled), len(layout.unlabeled), len(layout.val)) == (3, 5, 2)
    assert all(s.mask is not None and Path(s.image).stem == Path(s.mask).stem for s in layout.unlabeled)


def test_blobs_under_changing_light_are_the_same_scenes_each_in_its_own_exposure(tmp_path):
    from semiseg.data.blobs import generate_blobs

    generate_blobs(tmp_path / "plain", 2, 24, 2, 32)
    generate_blobs(tmp_path / "lit", 2, 24, 2, 32, lighting=True)
    for folder in ("masks", "unlabeled_masks", "val/masks"):  # the same scenes and masks as without the light
        for p in (tmp_path / "plain" / folder).glob("*.png"):
            assert (tmp_path / "lit" / folder / p.name).read_bytes() == p.read_bytes()
    brightness = {k: np.array([np.asarray(Image.open(p), float).mean()
                               for p in sorted((tmp_path / k / "unlabeled").glob("*.png"))]) for k in ("plain", "lit")}
    assert (brightness["lit"] < 1.15 * brightness["plain"]).all()  # a gain of at most 1.1, mostly below 1
    assert brightness["lit"].std() > 3 * brightness["plain"].std()  # each image its own exposure
