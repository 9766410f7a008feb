"""IOM, CPI and PWA on constructed masks with known answers."""
import math

import pytest
import torch

from semiseg.pseudo.refiners import build_refiner, pwa_weight


def scene(h=10, w=10):
    """Teacher: class 1 on columns 2..5 of every row (a 10 x 4 block), background elsewhere, confident."""
    probs = torch.zeros(1, 2, h, w)
    probs[0, 1, :, 2:6] = 0.9
    probs[0, 0] = 1 - probs[0, 1]
    probs[0, 0, :, 2:6] = 0.1
    return probs, torch.zeros(1, h, w, dtype=torch.bool)


def mask(h, w, rows, cols):
    m = torch.zeros(h, w, dtype=torch.bool)
    m[rows, cols] = True
    return m


def test_pwa_weight_values():
    assert pwa_weight(torch.tensor(0.5)).item() == pytest.approx(1.3 - 1 / math.sqrt(2 * math.pi * 0.1), abs=1e-6)
    assert pwa_weight(torch.tensor(0.5)).item() == pytest.approx(0.0384, abs=1e-3)
    assert pwa_weight(torch.tensor(0.0)).item() == pytest.approx(0.9386, abs=1e-3)
    assert pwa_weight(torch.tensor(1.0)).item() == pytest.approx(pwa_weight(torch.tensor(0.0)).item())


def test_iom_replaces_the_mask_with_the_best_proposal_above_half_iou():
    probs, ign = scene()
    good = mask(10, 10, slice(None), slice(2, 7))  # 10x5 block: IoU with the 10x4 teacher mask = 40/50 = 0.8
    worse = mask(10, 10, slice(0, 5), slice(2, 6))  # IoU 20/40 = 0.5: not > 0.5
    pl, w = build_refiner({"name": "iom"})(probs, [torch.stack([worse, good])], ign)
    assert torch.equal(pl[0] == 1, good)  # class 1 now exactly the proposal: column 6 joined
    assert (w[0][good] == 1).all()


def test_iom_falls_back_to_pwa_when_no_proposal_passes_and_counts_it():
    probs, ign = scene()
    half = mask(10, 10, slice(0, 5), slice(2, 6))  # IoU exactly 0.5 with class 1; tiny with background
    refiner = build_refiner({"name": "iom"})
    pl, w = refiner(probs, [half[None]], ign)
    assert torch.equal(pl, probs.argmax(1))  # teacher labels kept
    assert torch.allclose(w[0, :, 2:6], pwa_weight(torch.tensor(0.9)).expand(10, 4))
    assert refiner.miss_rate == 1.0  # both class masks fell back


def test_iom_ties_take_the_first_proposal():
    probs, ign = scene()
    a = mask(10, 10, slice(None), slice(1, 6))  # IoU 40/50
    b = mask(10, 10, slice(None), slice(2, 7))  # IoU 40/50 too
    pl, _ = build_refiner({"name": "iom"})(probs, [torch.stack([a, b])], ign)
    assert torch.equal(pl[0] == 1, a)


def test_cpi_unites_parts_that_cover_or_lie_inside():
    probs, ign = scene()
    top = mask(10, 10, slice(0, 5), slice(2, 6))  # 20 px, fully inside the class-1 mask (r2 = 1)
    bottom = mask(10, 10, slice(5, 10), slice(2, 7))  # 25 px, 20 inside (r2 = 0.8)
    stray = mask(10, 10, slice(0, 10), slice(0, 3))  # 30 px, 10 inside (r1 = 0.25, r2 = 0.33): rejected
    pl, w = build_refiner({"name": "cpi"})(probs, [torch.stack([top, bottom, stray])], ign)
    assert torch.equal(pl[0] == 1, top | bottom)


def test_conflicts_go_to_the_more_confident_class_and_removed_pixels_get_no_weight():
    probs, ign = scene()
    probs[0, 1, :, 2:6] = 0.6
    probs[0, 0, :, 2:6] = 0.4
    bg_prop = ~mask(10, 10, slice(None), slice(2, 4))  # background + columns 4, 5: IoU 60/80 with background
    fg_prop = mask(10, 10, slice(None), slice(2, 5))  # class 1 without column 5: IoU 30/40
    pl, w = build_refiner({"name": "iom"})(probs, [torch.stack([bg_prop, fg_prop])], ign)
    assert (pl[0, :, 4] == 1).all()  # both refined masks claim column 4: class 1 is more confident there
    assert (pl[0, :, 5] == 0).all()  # column 5: only the refined background claims it
    assert (pl[0, :, 2:5] == 1).all() and (w[0] == 1).all()
    # a refinement that removes pixels no other mask claims: weight 0 there
    probs, ign = scene()
    shrunk = mask(10, 10, slice(None), slice(2, 5))  # IoU 30/40 = 0.75 with class 1; IoU 0 with background
    pl, w = build_refiner({"name": "iom"})(probs, [shrunk[None]], ign)
    # class 1 refined to columns 2-4; background has no match and keeps its own teacher mask (PWA)
    assert (w[0, :, 5] == 0).all() and (pl[0, :, 5] == 1).all()
    assert torch.allclose(w[0, :, 0], pwa_weight(torch.tensor(1.0)).expand(10))


def test_binary_refinement_for_a_single_referent():
    from semiseg.pseudo.refiners import refine_binary

    p = torch.zeros(10, 10)
    p[:, 2:6] = 0.8  # teacher's referent: columns 2-5
    good = mask(10, 10, slice(None), slice(2, 7))
    pl, w, refined = refine_binary(p, good[None], "iom")
    assert refined and torch.equal(pl.bool(), good) and (w == 1).all()
    pl, w, refined = refine_binary(p, mask(10, 10, slice(0, 3), slice(0, 3))[None], "iom")  # IoU 4/45
    assert not refined and torch.equal(pl.bool(), p > 0.5) and torch.allclose(w, pwa_weight(p))
    top, bottom = mask(10, 10, slice(0, 5), slice(2, 6)), mask(10, 10, slice(5, 10), slice(2, 6))
    pl, _, refined = refine_binary(p, torch.stack([top, bottom]), "cpi")  # two parts, each inside
    assert refined and torch.equal(pl.bool(), top | bottom)
    assert not refine_binary(p, torch.zeros(0, 10, 10, dtype=torch.bool))[2]  # no proposals at all
