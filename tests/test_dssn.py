"""DSSN's parts: CPLG selection, the dual-level consistency, the AugSeg ops."""
import pytest
import torch

from semiseg.data.augment_extra import N_OPS, _apply, _equalize, random_ops
from semiseg.losses import consistency
from semiseg.pseudo.selectors import build_selector

CPLG = build_selector({"name": "class_aware", "tau_low": 0.92, "ratio": 0.96})


def two_class(p0):
    """(B, 2, H, W) from the class-0 probability map."""
    p0 = torch.tensor(p0)
    return torch.stack([p0, 1 - p0], 1)


def test_class_with_max_at_or_below_tau_low_keeps_nothing():
    # class 1's best pixel is 0.92 exactly: not > tau_low, so no class-1 pixel survives
    probs = two_class([[[0.99, 0.97, 0.08, 0.10]]])  # class-1 probs: 0.01, 0.03, 0.92, 0.90
    pl, w = CPLG(probs, torch.zeros(1, 1, 4, dtype=torch.bool))
    assert pl.tolist() == [[[0, 0, 1, 1]]]
    assert w.tolist() == [[[1.0, 1.0, 0.0, 0.0]]]  # 0.97 > 0.96 * 0.99 = 0.9504


def test_kept_pixels_are_exactly_those_above_ratio_times_class_max():
    p0 = torch.tensor([[[0.99, 0.951, 0.950, 0.80, 0.60]]])
    pl, w = CPLG(two_class(p0.tolist()), torch.zeros(1, 1, 5, dtype=torch.bool))
    expected = ((p0 > 0.96 * 0.99) & (p0 > 0.5)).float()
    assert torch.equal(w, expected) and w.tolist() == [[[1.0, 1.0, 0.0, 0.0, 0.0]]]


def test_thresholds_are_per_image_not_per_batch():
    # image 0's class-0 max is 0.99, image 1's is 0.94: pixel 0.93 is kept in image 1 (0.93 > 0.96 * 0.94)
    probs = two_class([[[0.99, 0.93]], [[0.94, 0.93]]])
    ignore = torch.zeros(2, 1, 2, dtype=torch.bool)
    _, w = CPLG(probs, ignore)
    assert w.tolist() == [[[1.0, 0.0]], [[1.0, 1.0]]]
    _, wb = build_selector({"name": "class_aware", "per": "batch"})(probs, ignore)
    assert wb.tolist() == [[[1.0, 0.0]], [[0.0, 0.0]]]  # one max over the batch: 0.99


def test_ignored_pixels_get_no_weight():
    probs = two_class([[[0.99, 0.99]]])
    _, w = CPLG(probs, torch.tensor([[[False, True]]]))
    assert w.tolist() == [[[1.0, 0.0]]]


@pytest.mark.parametrize("kind", ["mse", "gaussian"])
def test_consistency_zero_for_identical_views_and_gradients_reach_both(kind):
    a = torch.randn(2, 5, 4, 4, requires_grad=True)
    b = torch.randn(2, 5, 4, 4, requires_grad=True)
    assert consistency(a, a.detach().clone(), kind).item() == pytest.approx(0.0, abs=1e-6)
    loss = consistency(a, b, kind)
    assert loss.item() > 0
    loss.backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0


def test_mse_consistency_ignores_a_per_pixel_shift_and_scale():
    a = torch.randn(2, 5, 4, 4)
    b = torch.randn(2, 5, 4, 4)
    shift, scale = torch.randn(2, 1, 4, 4), torch.rand(2, 1, 4, 4) + 0.5
    assert consistency(a * scale + shift, b, "mse").item() == pytest.approx(consistency(a, b, "mse").item(), rel=1e-4)


def test_mse_consistency_is_the_codes_torch_std_form_in_value_and_gradient():
    """The code standardises with ``torch.std`` (unbiased); ours takes the same root of the summed squares
    (a reduction over the class channel that is several times faster on a CPU): same loss and gradients."""
    torch.manual_seed(0)
    a, b = torch.randn(2, 6, 5, 7), torch.randn(2, 6, 5, 7, requires_grad=True)
    a[0, :, 2, 3] = 0.5  # a pixel whose logits tie (bf16 makes them common): finite, the code's gradients
    a.requires_grad_()
    a2, b2 = a.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()

    def z(x):
        return (x - x.mean(1, keepdim=True)) / x.std(1, keepdim=True).clamp(min=1e-6)  # our guard at ties

    ours, code = consistency(a, b, "mse"), (z(a2) - z(b2)).pow(2).mean()
    ours.backward()
    code.backward()
    assert ours.item() == pytest.approx(code.item(), rel=1e-6)
    assert torch.allclose(a.grad, a2.grad, atol=1e-7) and torch.allclose(b.grad, b2.grad, atol=1e-7)


def test_equalize_spreads_levels():
    x = torch.tensor([0.0, 0.1, 0.1, 0.2]).view(1, 1, 2, 2).repeat(1, 3, 1, 1)
    y = _equalize(x)
    assert y.min() == 0 and y.max() == 1 and torch.allclose(y[0, 0].flatten(), torch.tensor([0.0, 2 / 3, 2 / 3, 1.0]))


def test_every_random_op_keeps_range_and_shape():
    torch.manual_seed(0)
    x = torch.rand(4, 3, 12, 12)
    for op in range(N_OPS):
        y = _apply(op, x)
        assert y.shape == x.shape and y.min() >= -1e-5 and y.max() <= 1 + 1e-5, op
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    z = random_ops((x - 0.5) / 0.25, mean, std)
    assert z.shape == x.shape and torch.isfinite(z).all()
