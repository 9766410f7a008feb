"""Proposal generators, the RLE store and the loader's geometry for proposals."""
import json

import numpy as np
import pytest
import torch

from semiseg.cli import run
from semiseg.configure import load_config
from semiseg.tasks.semantic.dataset import SegDataset
from semiseg.tasks import build_task
from semiseg.data.presets import resolve_layout
from semiseg.errors import SemisegError
from semiseg.pseudo.proposals import SamProposals, SuperpixelProposals
from semiseg.pseudo.store import ProposalStore, rle_decode, rle_encode


def test_rle_round_trip():
    rng = np.random.default_rng(0)
    for m in [rng.random((7, 9)) > 0.5, np.ones((3, 4), bool), np.zeros((3, 4), bool)]:
        assert np.array_equal(rle_decode(rle_encode(m), *m.shape), m)
    assert rle_encode(np.array([[True, True, False]])) == [0, 2, 1]


def test_superpixel_proposals_follow_an_object():
    img = np.zeros((48, 48, 3), np.uint8)
    img[10:30, 12:36] = (220, 40, 40)
    masks = SuperpixelProposals()(img)
    obj = np.zeros((48, 48), bool)
    obj[10:30, 12:36] = True
    iou = (masks & obj).sum((1, 2)) / (masks | obj).sum((1, 2))
    assert masks.dtype == bool and masks.shape[1:] == (48, 48) and iou.max() > 0.9


class FakeAutomaticMaskGenerator:
    """segment_anything.SamAutomaticMaskGenerator's output format: a list of dicts."""

    def generate(self, image):
        h, w = image.shape[:2]
        small, big = np.zeros((h, w), bool), np.zeros((h, w), bool)
        small[:4, :4] = True
        big[:, : w // 2] = True
        return [{"segmentation": small, "area": 16, "predicted_iou": 0.9, "stability_score": 0.96,
                 "bbox": [0, 0, 4, 4]},
                {"segmentation": big, "area": int(big.sum()), "predicted_iou": 0.95, "stability_score": 0.97,
                 "bbox": [0, 0, w // 2, h]}]


def test_sam_adapter_reads_the_automatic_generator_format():
    masks = SamProposals(generator=FakeAutomaticMaskGenerator(), min_area=10)(np.zeros((8, 10, 3), np.uint8))
    assert masks.shape == (2, 8, 10) and masks[0].sum() == 40 and masks[1].sum() == 16  # largest first


def test_sam_without_package_or_checkpoint_says_what_to_do(tmp_path):
    with pytest.raises(SemisegError, match="semiseg\\[sam\\]|checkpoint"):
        SamProposals(checkpoint=str(tmp_path / "sam_vit_h.pth"))


def test_store_resumes_after_a_torn_line_and_checks_the_split(tiny_scenes, tmp_path):
    out = tmp_path / "store"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data:\n  root: {tiny_scenes}\n")
    assert run(["proposals", str(cfg), "--out", str(out), "--limit", "5"]) == 0
    lines = (out / "proposals.jsonl").read_text().splitlines(keepends=True)
    (out / "proposals.jsonl").write_text("".join(lines[:3]) + lines[3][: len(lines[3]) // 2])  # killed mid-write
    store = ProposalStore(out)
    assert len(store.records) == 3
    layout = resolve_layout(load_config(str(cfg)).data)
    images = [s.image for s in layout.unlabeled]
    with pytest.raises(SemisegError, match=f"covers 3 of the {len(images)} images"):
        store.verify(images, "unlabeled.txt")
    assert run(["proposals", str(cfg), "--out", str(out)]) == 0  # resume: computes only the missing ones
    store = ProposalStore(out)
    store.verify(images, "unlabeled.txt")
    assert json.loads((out / "index.json").read_text())["complete"] is True
    assert (out / "proposals.jsonl").read_text().count("\n") == len(images)


def test_a_store_made_with_other_generator_options_is_refused_not_relabelled(tiny_scenes, tmp_path):
    """Resuming a store with other options would mix two generators' masks under the new one's name."""
    out = tmp_path / "store"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data:\n  root: {tiny_scenes}\n")
    assert run(["proposals", str(cfg), "--out", str(out), "--limit", "2"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(SemisegError, match=rf"{out} holds proposals made with \{{'name': 'superpixel'\}}; the config "
                                           r"says \{'name': 'superpixel', 'min_area': 5\}: give another --out"):
        run(["proposals", str(cfg), "proposals={name: superpixel, min_area: 5}", "--out", str(out)])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_proposals_get_the_same_geometry_as_the_image(tiny_scenes, tmp_path):
    """Proposals made from the class mask itself must still match the mask after rescale/crop/flip."""
    cfg = load_config(None, [f"data.root={tiny_scenes}", "data.crop_size=32", "data.num_workers=0"])
    layout = resolve_layout(cfg.data)
    store = ProposalStore(tmp_path)
    from PIL import Image

    with open(store.lines, "a") as fh:
        for s in layout.unlabeled:
            m = np.asarray(Image.open(tiny_scenes / s.mask))
            store.add(s.image, np.stack([m == c for c in np.unique(m)]), fh)
    ds = SegDataset(layout.unlabeled, layout, cfg.data, "train_u", with_hidden=True, proposals=store)
    for i in range(8):
        item = ds[(i, 3)]
        hidden, props = item["hidden"], item["props"]
        for p in props:  # each proposal is one class region of the transformed hidden mask
            values = hidden[p].unique()
            assert len(values) <= 1, values
    cfg.data.proposal_store = str(tmp_path)
    batch = next(build_task(load_config(None, [f"data.root={tiny_scenes}", "data.crop_size=32", "data.num_workers=0",
                                               f"data.proposal_store={tmp_path}", "method.name=fixmatch"]))
                 .train_batches(1, torch.device("cpu")))
    assert isinstance(batch["u_props"], list) and batch["u_props"][0].dtype == torch.bool


def test_the_oracle_proposals_are_the_true_instances_and_background(tiny_scenes):
    from semiseg.data.io import read_mask
    from semiseg.pseudo.proposals import build_proposals

    oracle = build_proposals({"name": "instances"})
    name = sorted((tiny_scenes / "instances").iterdir())[0].name
    masks = oracle(tiny_scenes / "images" / name)
    ids = read_mask(tiny_scenes / "instances" / name)
    assert len(masks) == len(np.unique(ids)) >= 2  # background and at least one item
    assert (masks.sum(0) == 1).all()  # a partition: every pixel in exactly one proposal
    for m, v in zip(masks, np.unique(ids)):
        assert (m == (ids == v)).all()
