"""Dataset presets: class names, palettes, where the split files live, label mapping on load.

A preset only fills in what the user left empty in ``data``; explicit split files, class names and
palettes always win. ``folder`` builds its lists from images/, masks/ and unlabeled/ (and val/).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from semiseg.data.io import IMAGE_EXTS  # the files predict --input takes too: one list
from semiseg.data.splits import Sample, read_split
from semiseg.errors import SemisegError


def voc_palette(n: int = 256) -> List[List[int]]:
    """The PASCAL VOC colour map (bit-interleaved class id); also a good default for any dataset."""
    pal = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal.append([r, g, b])
    return pal


VOC_CLASSES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]
CITYSCAPES_CLASSES = [
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
]
CITYSCAPES_PALETTE = [
    [128, 64, 128], [244, 35, 232], [70, 70, 70], [102, 102, 156], [190, 153, 153], [153, 153, 153],
    [250, 170, 30], [220, 220, 0], [107, 142, 35], [152, 251, 152], [70, 130, 180], [220, 20, 60],
    [255, 0, 0], [0, 0, 142], [0, 0, 70], [0, 60, 100], [0, 80, 100], [0, 0, 230], [119, 11, 32],
]
# labelIds -> trainIds (cityscapesScripts' labels.py); everything else is 255
CITYSCAPES_ID_TO_TRAINID: Dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
    27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}
COCO_CLASSES = ["background"] + (
    "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant stop_sign "
    "parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack umbrella handbag "
    "tie suitcase frisbee skis snowboard sports_ball kite baseball_bat baseball_glove skateboard surfboard "
    "tennis_racket bottle wine_glass cup fork knife spoon bowl banana apple sandwich orange broccoli carrot "
    "hot_dog pizza donut cake chair couch potted_plant bed dining_table toilet tv laptop mouse remote "
    "keyboard cell_phone microwave oven toaster sink refrigerator book clock vase scissors teddy_bear "
    "hair_drier toothbrush"
).split()


def cityscapes_label_ids_to_train_ids(mask: np.ndarray) -> np.ndarray:
    lut = np.full(256, 255, np.uint8)
    for k, v in CITYSCAPES_ID_TO_TRAINID.items():
        lut[k] = v
    return lut[mask]


@dataclass
class Layout:
    """What a preset resolves to: sample lists, class metadata and an optional per-mask label map."""

    root: Path
    class_names: List[str]
    palette: List[List[int]]
    labeled: Optional[List[Sample]] = None
    unlabeled: Optional[List[Sample]] = None
    val: Optional[List[Sample]] = None
    sources: Dict[str, str] = field(default_factory=dict)  # list name -> where it came from (for messages)
    notes: List[str] = field(default_factory=list)  # lists the folder layout made up, said once at train start
    problems: List[str] = field(default_factory=list)  # a folder's pairing problems, for ``data check`` to list
    why: Dict[str, str] = field(default_factory=dict)  # a list the folder could not make, and why (said where used)

    def map_mask(self, mask: np.ndarray, mask_path: str) -> np.ndarray:
        # Cityscapes users often have only labelIds; map them on load instead of asking for a converter run
        if "labelIds" in Path(mask_path).name and "labelTrainIds" not in Path(mask_path).name:
            return cityscapes_label_ids_to_train_ids(mask)
        return mask


CITYSCAPES_SUFFIXES = ("_leftImg8bit", "_gtFine_labelTrainIds", "_gtFine_labelIds")


def _stem_map(folder: Path) -> Dict[str, Path]:
    """Images under ``folder`` (sub-folders included: Cityscapes keeps one per city) keyed by their path
    without extension and without Cityscapes' file suffixes, so ``x_leftImg8bit.png`` pairs with
    ``x_gtFine_labelIds.png``. Of Cityscapes' masks the train ids are used where they were made, else the
    label ids (mapped on load); its colour and instance images are not masks."""
    if not folder.is_dir():
        return {}
    # hidden files and folders (a copy's ._x.png, .ipynb_checkpoints/) are no one's images
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    for kind in ("_gtFine_labelTrainIds", "_gtFine_labelIds"):
        if any(p.stem.endswith(kind) for p in files):
            files = [p for p in files if p.stem.endswith(kind)]
            break
    out: Dict[str, Path] = {}
    for p in files:
        stem = p.stem
        for suffix in CITYSCAPES_SUFFIXES:
            stem = stem.removesuffix(suffix)
        key = str(p.relative_to(folder).with_name(stem))
        if key in out:  # a.png and a.jpg: which one is meant is the user's to say
            raise SemisegError(f"folder {folder}: two files named {key} ({out[key].name}, {p.name}); keep one")
        out[key] = p
    return out


def _problem(message: str, problems: Optional[List[str]]) -> None:
    """Strict (``problems`` None): refuse in one line; lenient: keep it for ``data check``'s list."""
    if problems is None:
        raise SemisegError(message)
    problems.append(message)


def _missing(layout: Layout, kind: str, why: str, lenient: bool) -> None:
    """A list the folder cannot make: training says ``why`` where it needs the list (commands that do not, such
    as ``semiseg proposals`` on unlabeled images, go on); ``data check`` lists it."""
    layout.why[kind] = why
    if lenient:
        layout.problems.append(why)


def folder_samples(images: Path, masks: Optional[Path], root: Path, lenient: bool = False,
                   problems: Optional[List[str]] = None) -> List[Sample]:
    """Pair images and masks by file stem; a labeled image without a mask is an error (``lenient``: a
    sample without a mask, for ``data check`` to list with every other problem). A mask that pairs with no
    image is an error (into ``problems`` when given): it is a labeled image lost, and often all of them."""
    imgs = _stem_map(images)
    if masks is None:
        return [Sample(str(p.relative_to(root))) for p in imgs.values()]
    msks = _stem_map(masks)
    orphans = sorted(set(msks) - set(imgs))
    if orphans:
        example = next(iter(imgs), "x")
        _problem(f"folder {masks}: {len(orphans)} mask(s) pair with no image of {images}, e.g. {orphans[:3]}; a mask "
                 f"pairs with the image at the same path under {images.name}/, e.g. {masks.name}/{example}.png for "
                 f"{imgs[example].relative_to(images.parent) if example in imgs else images.name + '/x.jpg'}",
                 problems)
    missing = sorted(set(imgs) - set(msks))
    if missing and not lenient:
        raise SemisegError(f"folder {images}: {len(missing)} image(s) without a mask in {masks}, e.g. {missing[:3]}")
    return [Sample(str(p.relative_to(root)), str(msks[s].relative_to(root)) if s in msks else None)
            for s, p in imgs.items()]


PRESETS = {
    "scenes": dict(class_names=[], palette=[]),  # read from the generated meta.json
    "voc": dict(class_names=VOC_CLASSES, palette=voc_palette(21)),
    "cityscapes": dict(class_names=CITYSCAPES_CLASSES, palette=CITYSCAPES_PALETTE),
    "coco": dict(class_names=COCO_CLASSES, palette=voc_palette(81)),
    "folder": dict(class_names=[], palette=[]),
}


def resolve_layout(data, lenient: bool = False) -> Layout:
    """Turn the ``data`` config section into sample lists and class metadata (``lenient``: see
    :func:`folder_samples`)."""
    if data.dataset not in PRESETS:
        raise SemisegError(f"unknown data.dataset {data.dataset!r}; valid: {', '.join(PRESETS)}")
    root = Path(data.root)
    if root.is_file():
        raise SemisegError(f"data.root {root} is a file, not a folder: give the folder that holds the data")
    if not root.is_dir():
        raise SemisegError(f"data.root {root} does not exist (for the scenes benchmark run `semiseg data scenes`)")
    preset = PRESETS[data.dataset]
    names, palette = list(data.class_names) or list(preset["class_names"]), list(map(list, data.palette))
    if data.dataset == "scenes" and not names:
        meta = root / "meta.json"
        if not meta.is_file():
            raise SemisegError(f"{meta} is missing; regenerate the benchmark with `semiseg data scenes --out {root}`")
        m = json.loads(meta.read_text())
        names, palette = m["class_names"], palette or m["palette"]
    num_classes = data.num_classes or len(names)
    if not num_classes:
        raise SemisegError(f"data.dataset={data.dataset}: set data.num_classes or data.class_names")
    names = names or [f"class_{i}" for i in range(num_classes)]
    if len(names) != num_classes:
        raise SemisegError(f"data.class_names has {len(names)} names but data.num_classes is {num_classes}")
    palette = palette or preset["palette"] or voc_palette(num_classes)
    layout = Layout(root, names, [list(p) for p in palette[:num_classes]])

    split_dir = root / "splits" / data.split
    defaults = {"labeled": split_dir / "labeled.txt", "unlabeled": split_dir / "unlabeled.txt",
                "val": root / "splits" / "val.txt"}
    for kind in ("labeled", "unlabeled", "val"):
        explicit = getattr(data, kind)
        path = None if not explicit else Path(explicit) if Path(explicit).is_absolute() else root / explicit
        if path is None and data.dataset != "folder":
            path = defaults[kind]
        if path is not None and (explicit or path.is_file()):
            setattr(layout, kind, read_split(path, require_mask=kind != "unlabeled"))
            layout.sources[kind] = str(path)
    if data.dataset == "folder":
        _fill_folder(layout, root, lenient)
    return layout


def _fill_folder(layout: Layout, root: Path, lenient: bool) -> None:
    """A folder data set's lists. Without ``unlabeled/``, the images of ``images/`` that have no mask are
    the unlabeled ones; without ``val/``, every 4th labeled image (in file-name order) is held out for
    validation. A practitioner's first folder is often just images and a few masks."""
    images = root / "images"
    split_by_mask = layout.unlabeled is None and not (root / "unlabeled").is_dir()
    from_images = layout.labeled is None and images.is_dir()
    problems = layout.problems if lenient else None
    if layout.labeled is None and not images.is_dir():
        _missing(layout, "labeled", f"folder {root}: no images/ folder; put the labeled images in images/ and their "
                 "masks in masks/ (the unlabeled ones in unlabeled/ or in images/ without a mask)", lenient)
    if from_images:
        samples = folder_samples(images, root / "masks", root, lenient or split_by_mask, problems)
        if samples and all(s.mask is None for s in samples):
            _missing(layout, "labeled", f"folder {root}: none of the {len(samples)} images of images/ has a mask in "
                     "masks/ (a PNG of class ids at the same path); label some of them to train", lenient)
        if split_by_mask and any(s.mask is None for s in samples):
            layout.unlabeled = [s for s in samples if s.mask is None]
            layout.sources["unlabeled"] = f"{images} (its images without a mask)"
            layout.notes.append(f"no unlabeled/ folder: the {len(layout.unlabeled)} images of {images} without a "
                                "mask are the unlabeled ones")
            samples = [s for s in samples if s.mask is not None]
        layout.labeled = samples
        if samples:  # none: said above, not again as an empty list
            layout.sources["labeled"] = str(images)
    if layout.unlabeled is None and (root / "unlabeled").is_dir():
        layout.unlabeled = folder_samples(root / "unlabeled", None, root)
        layout.sources["unlabeled"] = str(root / "unlabeled")
    if layout.val is None and (root / "val" / "masks").is_dir() and not (root / "val" / "images").is_dir():
        _missing(layout, "val", f"folder {root / 'val'}: val/masks without val/images; put the validation images "
                 "in val/images", lenient)
    elif layout.val is None and (root / "val" / "images").is_dir():
        layout.val = folder_samples(root / "val" / "images", root / "val" / "masks", root, lenient, problems)
        layout.sources["val"] = str(root / "val" / "images")
    elif layout.val is None and from_images and len(layout.labeled) == 1:
        _missing(layout, "val", f"folder {root}: 1 labeled image and no val/ folder: label at least 2 (every 4th is "
                 "held out for validation) or add val/images + val/masks", lenient)
    elif layout.val is None and from_images and len(layout.labeled) >= 2:
        n = len(layout.labeled)
        held = set(range(3, n, 4)) or {n - 1}
        layout.val = [s for i, s in enumerate(layout.labeled) if i in held]
        layout.labeled = [s for i, s in enumerate(layout.labeled) if i not in held]
        layout.sources["val"] = f"{images} (every 4th labeled image, held out; val/images + val/masks choose them)"
        layout.notes.append(f"no val/ folder: {len(layout.val)} of the {n} labeled images (every 4th by file name) "
                            f"{'is' if len(layout.val) == 1 else 'are'} held out for validation; val/images + "
                            "val/masks choose them")
