"""CSL selection against hand-built maps and a straight per-image SVD reference."""
import math

import pytest
import torch

from semiseg.bench.csl_loop import csl_per_image as reference
from semiseg.pseudo.csl import csl_features
from semiseg.pseudo.selectors import build_selector

SELECT = build_selector({"name": "csl", "alpha": 8.0})


def random_probs(b, c, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, c, h, w, generator=g) * 3).softmax(1)


@pytest.mark.parametrize("features", ["raw", "log"])
def test_batched_equals_per_image_svd(features):
    probs = random_probs(6, 11, 16, 16)
    ignore = torch.zeros(6, 16, 16, dtype=torch.bool)
    ignore[1, :4] = True  # some padding
    ignore[3] = True  # an all-ignored image
    pl, w = build_selector({"name": "csl", "features": features})(probs, ignore)
    pl_ref, w_ref = reference(probs, ignore, features=features)
    assert torch.equal(pl, pl_ref)
    assert torch.allclose(w, w_ref, atol=1e-5)
    assert (w[3] == 0).all() and (w[1, :4] == 0).all()


def two_groups():
    """Left half confident (p_max ~ 0.97), right half unsure (p_max ~ 0.4): two separated groups."""
    c = 4
    probs = torch.full((1, c, 8, 8), 0.0)
    g = torch.Generator().manual_seed(1)
    conf = torch.cat([0.95 + 0.04 * torch.rand(8, 4, generator=g), 0.35 + 0.1 * torch.rand(8, 4, generator=g)], 1)
    probs[0, 0] = conf
    probs[0, 1:] = ((1 - conf) / (c - 1)).unsqueeze(0)
    probs[0, 1, :, 4:] += 0.1  # an uneven rest on the unsure side
    probs[0, 2, :, 4:] -= 0.1
    return probs, conf


def test_separated_groups_split_and_weights_follow_the_gaussian():
    probs, conf = two_groups()
    ignore = torch.zeros(1, 8, 8, dtype=torch.bool)
    pl, w = SELECT(probs, ignore)
    f1, d, _ = csl_features(probs.double())
    left = f1[0, :, :4].flatten()
    mu, sd = left.mean(), left.var(unbiased=True)
    # reliable centre = the confident half: every pixel above it has weight 1
    above = f1[0] > mu
    assert (w[0][above] == 1).all()
    # the unsure half lies far below the centre: weight exp(-z_c^2/8) exp(-z_d^2/8), essentially 0
    z_c = (f1[0, :, 4:] - mu) / (sd + 1e-10).sqrt()
    assert (w[0, :, 4:] < 1e-3).all() and (z_c < -5).all()
    # a pixel of the confident half below its centre gets exactly the Gaussian weight
    i = torch.nonzero(~above[:, :4])[0]
    dleft = d[0, :, :4].flatten()
    zc = (f1[0, i[0], i[1]] - mu) / (sd + 1e-10).sqrt()
    zd = (dleft.mean() - d[0, i[0], i[1]]) / (dleft.var(unbiased=True) + 1e-10).sqrt()
    expected = 1.0 if zd > 0 else math.exp(-zc**2 / 8) * math.exp(-zd**2 / 8)
    assert w[0, i[0], i[1]].item() == pytest.approx(expected, rel=1e-4)


def test_weights_fall_with_distance():
    probs, _ = two_groups()
    pl, w = SELECT(probs, torch.zeros(1, 8, 8, dtype=torch.bool))
    f1, _, _ = csl_features(probs.double())
    below = (w[0] < 1) & (f1[0] > 0.9)  # confident-half pixels below the reliable centre
    assert below.sum() >= 5
    order = f1[0][below].argsort()  # lower confidence (and, here, higher dispersion) -> lower weight
    weights = w[0][below][order]
    assert (weights.diff() >= -1e-6).all() and weights[0] < weights[-1]


def test_ignored_and_all_ignored():
    probs = random_probs(2, 3, 4, 4)
    ignore = torch.ones(2, 4, 4, dtype=torch.bool)
    ignore[0, 0, 0] = False  # a single valid pixel: its own cluster, variance 0, weight 1
    pl, w = SELECT(probs, ignore)
    assert w[1].sum() == 0 and w[0, 0, 0] == 1 and w[0].sum() == 1


def test_tmp_erases_exactly_the_reliable_pixels_inside_the_chosen_blocks(tiny_scenes, tiny_store, monkeypatch):
    import semiseg.methods.csl as csl
    from conftest import make_method

    method, _, batch = make_method("csl", tiny_scenes, tiny_store)
    u = batch["u"]
    b, _, h, w = u.shape
    blocks = torch.zeros(b, h, w, dtype=torch.bool)
    blocks[:, : h // 2] = True  # the top half is "chosen"
    drawn = {}
    monkeypatch.setattr(csl, "block_mask", lambda *a, **k: drawn.update(k) or blocks)
    monkeypatch.setattr(csl, "strong_photometric", lambda x, *a, **k: x)  # no photometric change: see the mask
    monkeypatch.setattr(method, "strong", lambda x: x)
    reliable = torch.zeros(b, h, w)
    reliable[:, :, : w // 2] = 1.0  # the left half is reliable
    torch.manual_seed(0)
    out = method.masked_view(u, reliable)
    erased = (out == 0).all(1) & (u != 0).any(1)
    masked_samples = erased.flatten(1).any(1)
    assert masked_samples.any()  # this seed draws TMP for some samples
    assert drawn["grid"] == 10  # the default: the code's 10 x 10 grid, whatever the crop
    for i in range(b):
        if masked_samples[i]:  # TMP's half: exactly the reliable pixels inside the chosen blocks
            assert torch.equal(erased[i], blocks[i] & (reliable[i] == 1))
        else:  # the other half: the plain strong view
            assert torch.equal(out[i], u[i])
