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
from typing import List

import numpy as np
from PIL import Image, ImageDraw

from semiseg.data.io import read_image
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
                    split: str) -> List[RefSample]:
    """Every sentence of every ref of ``split`` as one sample."""
    refs = read_refs_pickle(refs_path)
    try:
        coco = json.loads(Path(instances_path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SemisegError(f"instances file {instances_path} cannot be read: {e}") from None
    images = {im["id"]: im for im in coco["images"]}
    anns = {a["id"]: a for a in coco["annotations"]}
    out = []
    for ref in refs:
        if ref["split"] != split:
            continue
        im, ann = images[ref["image_id"]], anns[ref["ann_id"]]
        fn = lambda a=ann, i=im: polygon_mask(a["segmentation"], i["height"], i["width"])  # noqa: E731
        out += [RefSample(Path(image_root) / im["file_name"], s["sent"], ref["ref_id"], fn) for s in ref["sentences"]]
    if not out:
        raise SemisegError(f"refs file {refs_path} has no refs in split {split!r}")
    return out


def referring_scene_samples(root: str | Path, ids_file: str) -> List[RefSample]:
    root = Path(root)
    refs = {}
    for line in (root / "referring" / "refs.jsonl").read_text().splitlines():
        r = json.loads(line)
        refs[r["ref_id"]] = r
    ids = [int(x) for x in (root / "referring" / ids_file).read_text().split()]
    out = []
    for i in ids:
        r = refs[i]
        fn = lambda r=r: np.asarray(Image.open(root / r["instances"])) == r["instance_id"]  # noqa: E731
        out.append(RefSample(root / r["image"], r["sentence"], i, fn))
    return out


def load_sample(s: RefSample):
    return read_image(s.image), s.mask_fn()
