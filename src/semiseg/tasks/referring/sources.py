"""RES samples: (image, sentence, binary target mask), from referring scenes or RefCOCO-format files.

RefCOCO / RefCOCO+ / G-Ref (the files LAVT and SemiRES use): ``refs(<split_by>).p`` (a pickled list of
refs: ref_id, ann_id, image_id, split, sentences[{sent}]), ``instances.json`` (COCO: images with
file_name, annotations with segmentation polygons or RLE), and the COCO images folder. The pickle is
read with an unpickler that admits only plain containers, so a hostile file cannot run code.
"""
from __future__ import annotations

import io
import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Set, Tuple

import numpy as np
from PIL import Image, ImageDraw

from semiseg.data.io import read_image
from semiseg.data.splits import draw_split
from semiseg.errors import SemisegError


@dataclass
class RefSample:
    image: Path
    sentence: str
    ref_id: int
    mask_fn: object  # () -> (H, W) bool


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):  # refs files hold only lists, dicts, str, int, float
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a refs file")


def read_refs_pickle(path: str | Path) -> list:
    path = Path(path)
    if not path.is_file():
        raise SemisegError(f"refs file {path} does not exist")
    try:
        return _SafeUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
        raise SemisegError(f"refs file {path} is not a plain refs pickle: {e}") from None


def polygon_mask(segmentation, h: int, w: int) -> np.ndarray:
    if isinstance(segmentation, dict):  # uncompressed COCO RLE (column-major counts)
        counts = segmentation["counts"]
        if isinstance(counts, str):
            raise SemisegError("compressed COCO RLE masks need pycocotools; convert them or use polygons")
        flat = np.repeat(np.arange(len(counts)) % 2 == 1, counts)
        return flat.reshape(w, h).T
    img = Image.new("L", (w, h), 0)
    for poly in segmentation:
        ImageDraw.Draw(img).polygon([(poly[i], poly[i + 1]) for i in range(0, len(poly), 2)], fill=1)
    return np.asarray(img, bool)


def refcoco_samples(refs_path: str | Path, instances_path: str | Path, image_root: str | Path,
                    split: str, ref_ids: Optional[Set[int]] = None) -> List[RefSample]:
    """Every sentence of every ref of ``split`` (and, given ``ref_ids``, only of those refs) as one sample."""
    return refcoco_subsets(refs_path, instances_path, image_root, [(split, ref_ids)])[0]


def refcoco_subsets(refs_path: str | Path, instances_path: str | Path, image_root: str | Path,
                    wanted: Sequence[Tuple[str, Optional[Set[int]]]]) -> List[List[RefSample]]:
    """``refcoco_samples`` for several (split, ref ids) at once, reading the refs pickle and the instances
    JSON (tens of MB for RefCOCO) once."""
    refs = read_refs_pickle(refs_path)
    try:
        coco = json.loads(Path(instances_path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SemisegError(f"instances file {instances_path} cannot be read: {e}") from None
    images = {im["id"]: im for im in coco["images"]}
    anns = {a["id"]: a for a in coco["annotations"]}
    subsets = []
    for split, ref_ids in wanted:
        out = []
        for ref in refs:
            if ref["split"] != split or (ref_ids is not None and ref["ref_id"] not in ref_ids):
                continue
            if ref["image_id"] not in images or ref["ann_id"] not in anns:
                raise SemisegError(f"refs file {refs_path}: ref {ref['ref_id']} points to image {ref['image_id']} / "
                                   f"annotation {ref['ann_id']}, which {instances_path} does not hold (a refs file "
                                   "of another data set?)")
            im, ann = images[ref["image_id"]], anns[ref["ann_id"]]
            fn = lambda a=ann, i=im: polygon_mask(a["segmentation"], i["height"], i["width"])  # noqa: E731
            out += [RefSample(Path(image_root) / im["file_name"], s["sent"], ref["ref_id"], fn)
                    for s in ref["sentences"]]
        if not out:
            raise SemisegError(f"refs file {refs_path} has no refs in split {split!r}")
        subsets.append(out)
    return subsets


def referring_scene_samples(root: str | Path, ids_file: str) -> List[RefSample]:
    root = Path(root)
    refs = {}
    for line in (root / "referring" / "refs.jsonl").read_text().splitlines():
        r = json.loads(line)
        refs[r["ref_id"]] = r
    ids = [int(x) for x in (root / "referring" / ids_file).read_text(encoding="utf-8-sig").split()]  # BOM: splits.py
    out = []
    for i in ids:
        r = refs[i]
        fn = lambda r=r: np.asarray(Image.open(root / r["instances"])) == r["instance_id"]  # noqa: E731
        out.append(RefSample(root / r["image"], r["sentence"], i, fn))
    return out


def load_sample(s: RefSample):
    return read_image(s.image), s.mask_fn()


def read_ids(path: Path) -> Set[int]:
    if not path.is_file():
        raise SemisegError(f"split file {path} does not exist: draw one with `semiseg data split --refs ...`")
    try:
        return {int(x) for x in path.read_text(encoding="utf-8-sig").split()}  # a BOM is no digit (splits.py)
    except ValueError:
        raise SemisegError(f"split file {path} must hold one ref id per line") from None


def draw_ref_split(refs_path: str | Path, seed: int = 0, count: int = 0, ratio: float = 0.0,
                   split: str = "train") -> Tuple[List[int], List[int], int]:
    """SemiRES's protocol: a share of the training *images* is labeled, and with an image every referent on
    it; the other training refs are unlabeled. Returns (labeled ref ids, unlabeled ref ids, labeled images)."""
    refs = [r for r in read_refs_pickle(refs_path) if r["split"] == split]
    chosen, _ = draw_split(sorted({r["image_id"] for r in refs}), seed, count, ratio)  # the draw, over images
    chosen = set(chosen)
    labeled = sorted(r["ref_id"] for r in refs if r["image_id"] in chosen)
    unlabeled = sorted(r["ref_id"] for r in refs if r["image_id"] not in chosen)
    return labeled, unlabeled, len(chosen)


def res_splits(dataset: str, root: str | Path, ratio: str, refs: str = "", instances: str = "", images: str = "",
               val_split: str = "val") -> Tuple[List[RefSample], List[RefSample], List[RefSample]]:
    """(labeled, unlabeled, val) samples of a RES data set. ``scenes``: the referring scenes
    (``semiseg data referring``), split ids under ``referring/splits/<ratio>/``. ``refcoco`` (RefCOCO, RefCOCO+
    and G-Ref share the format): ``refs`` and ``instances`` files and the ``images`` folder, relative to
    ``root``; split ids under ``splits/<ratio>/`` (``semiseg data split --refs``); val is the refs file's
    ``val_split`` (val, testA, testB, test)."""
    root = Path(root)
    if dataset == "scenes":
        ref = root / "referring"
        if not (ref / "refs.jsonl").is_file():
            raise SemisegError(f"{ref}/refs.jsonl is missing: run `semiseg data referring --root {root}`")
        return tuple(referring_scene_samples(root, f) for f in (f"splits/{ratio}/labeled.txt",
                                                                 f"splits/{ratio}/unlabeled.txt", "splits/val.txt"))
    if dataset != "refcoco":
        raise SemisegError(f"data.dataset {dataset!r} is not a referring data set; valid for task res: scenes, refcoco")
    for key, value in (("refs", refs), ("instances", instances), ("images", images)):
        if not value:
            raise SemisegError(f"dataset refcoco needs {key}= (a path relative to root {root})")
    split_dir = root / "splits" / ratio
    wanted = [("train", read_ids(split_dir / "labeled.txt")), ("train", read_ids(split_dir / "unlabeled.txt")),
              (val_split, None)]
    return tuple(refcoco_subsets(root / refs, root / instances, root / images, wanted))
