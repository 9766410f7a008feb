"""Referring expressions, RES metrics and the RefCOCO-format loader."""
import json
import pickle
import re

import numpy as np
import pytest
import torch
from PIL import Image

from semiseg.errors import SemisegError
from semiseg.res.datasets import load_sample, read_refs_pickle, refcoco_samples, referring_scene_samples
from semiseg.res.metrics import res_metrics
from semiseg.res.referring import ORDINALS, generate_referring


def centre(i):
    x0, y0, x1, y1 = i["bbox"]
    return (x0 + x1) / 2, (y0 + y1) / 2


def resolve(sentence, scene, names):
    """An independent reading of the templates' documented meaning -> the instances the sentence denotes."""
    by_name = {n: k for k, n in enumerate(names)}
    m = re.fullmatch(r"the (\w+) ([\w-]+)", sentence)
    if m and m.group(1) in ("leftmost", "rightmost", "uppermost", "lowest", "largest", "smallest"):
        peers = [i for i in scene if i["class"] == by_name[m.group(2)]]
        key = {"leftmost": lambda i: -centre(i)[0], "rightmost": lambda i: centre(i)[0],
               "uppermost": lambda i: -centre(i)[1], "lowest": lambda i: centre(i)[1],
               "largest": lambda i: i["pixels"], "smallest": lambda i: -i["pixels"]}[m.group(1)]
        best = max(key(i) for i in peers)
        return [i for i in peers if key(i) == best]
    m = re.fullmatch(r"the (\w+) ([\w-]+) from the left", sentence)
    if m:
        peers = sorted((i for i in scene if i["class"] == by_name[m.group(2)]), key=lambda i: centre(i)[0])
        return [peers[ORDINALS.index(m.group(1))]]
    m = re.fullmatch(r"the ([\w-]+) (left of|right of|above|below) the ([\w-]+)", sentence)
    if m:
        rel = {"left of": lambda a, b: centre(a)[0] < centre(b)[0] - 4, "right of": lambda a, b: centre(a)[0] > centre(b)[0] + 4,
               "above": lambda a, b: centre(a)[1] < centre(b)[1] - 4, "below": lambda a, b: centre(a)[1] > centre(b)[1] + 4}[m.group(2)]
        return [i for i in scene if i["class"] == by_name[m.group(1)]
                and any(rel(i, o) for o in scene if o["class"] == by_name[m.group(3)] and o is not i)]
    m = re.fullmatch(r"the ([\w-]+)", sentence)
    assert m, sentence
    return [i for i in scene if i["class"] == by_name[m.group(1)]]


def test_every_expression_selects_exactly_its_instance(tiny_scenes):
    counts = generate_referring(tiny_scenes, seed=0)
    names = json.loads((tiny_scenes / "meta.json").read_text())["class_names"]
    scenes = {f"images/{r['name']}": r for r in map(json.loads, (tiny_scenes / "scenes.jsonl").read_text().splitlines())}
    refs = [json.loads(line) for line in (tiny_scenes / "referring/refs.jsonl").read_text().splitlines()]
    assert len(refs) == counts["refs"] > 20
    kinds = set()
    for r in refs:
        scene = [i for i in scenes[r["image"]]["instances"] if i["pixels"] >= 30]
        hits = resolve(r["sentence"], scene, names)
        assert [i["id"] for i in hits] == [r["instance_id"]], r
        kinds.add(r["sentence"].split()[1] if len(r["sentence"].split()) == 3 else len(r["sentence"].split()))
    assert len(kinds) >= 3  # several template families are in use
    # the target mask is the instance
    s = referring_scene_samples(tiny_scenes, "splits/val.txt")[0]
    img, mask = load_sample(s)
    assert mask.dtype == bool and mask.shape == img.shape[:2] and mask.any()


def test_splits_are_by_image_and_deterministic(tiny_scenes):
    generate_referring(tiny_scenes, seed=0)
    first = (tiny_scenes / "referring/refs.jsonl").read_bytes()
    generate_referring(tiny_scenes, seed=0)
    assert (tiny_scenes / "referring/refs.jsonl").read_bytes() == first
    refs = {r["ref_id"]: r for r in map(json.loads, first.decode().splitlines())}
    lab = [refs[int(i)]["image"] for i in (tiny_scenes / "referring/splits/10pct/labeled.txt").read_text().split()]
    unl = [refs[int(i)]["image"] for i in (tiny_scenes / "referring/splits/10pct/unlabeled.txt").read_text().split()]
    assert lab and unl and not set(lab) & set(unl)  # every referent of a labeled image is labeled


def test_res_metrics_on_known_masks():
    a = torch.zeros(3, 4, 4, dtype=torch.bool)
    t = torch.zeros(3, 4, 4, dtype=torch.bool)
    a[0, :2], t[0, :2] = True, True  # IoU 1 (8/8)
    a[1, :2], t[1, :1] = True, True  # IoU 0.5 (4/8)
    a[2, :1], t[2, 2:] = True, True  # IoU 0 (0/12)
    m = res_metrics([(a, t)])
    assert m["oIoU"] == pytest.approx(100 * 12 / 28) and m["mIoU"] == pytest.approx(50.0)
    assert m["P@0.5"] == pytest.approx(100 / 3) and m["P@0.9"] == pytest.approx(100 / 3)


def test_refcoco_format_fixture_loads(tmp_path):
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "COCO_1.jpg")
    coco = {"images": [{"id": 1, "file_name": "COCO_1.jpg", "height": 20, "width": 30}],
            "annotations": [{"id": 7, "image_id": 1, "category_id": 1,
                             "segmentation": [[2, 2, 12, 2, 12, 10, 2, 10]]}]}
    (tmp_path / "instances.json").write_text(json.dumps(coco))
    refs = [{"ref_id": 0, "ann_id": 7, "image_id": 1, "split": "train",
             "sentences": [{"sent": "the dark box"}, {"sent": "box on the left"}]},
            {"ref_id": 1, "ann_id": 7, "image_id": 1, "split": "val", "sentences": [{"sent": "it"}]}]
    (tmp_path / "refs(unc).p").write_bytes(pickle.dumps(refs))
    samples = refcoco_samples(tmp_path / "refs(unc).p", tmp_path / "instances.json", tmp_path, "train")
    assert [s.sentence for s in samples] == ["the dark box", "box on the left"]
    img, mask = load_sample(samples[0])
    assert img.shape == (20, 30, 3) and mask.shape == (20, 30) and mask[5, 5] and not mask[15, 20]
    assert 70 <= mask.sum() <= 110  # the 10 x 8 polygon


def test_refs_pickle_with_code_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "refs.p").write_bytes(pickle.dumps([Payload()]))
    with pytest.raises(SemisegError, match="not a plain refs pickle"):
        read_refs_pickle(tmp_path / "refs.p")
