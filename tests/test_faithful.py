"""The authors' behaviour, pinned on fixed tensors: one test per difference found against their code."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

from semiseg.configure import load_config
from semiseg.data import augment
from semiseg.data.augment import block_mask, color_jitter
from semiseg.models import build_model
from semiseg.models.deeplabv3plus import complementary_dropout
from semiseg.pseudo.csl import csl_features

from conftest import TINY
from conftest import make_method


def test_aspp_has_no_dropout_by_default_so_train_mode_forwards_repeat():
    cfg = load_config(None, TINY)
    torch.manual_seed(0)
    model = build_model(cfg.model, 3).train()
    assert not any(isinstance(m, torch.nn.Dropout) for m in model.modules())
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x), model(x))  # the pseudo-label forward is not thinned at random
    cfg = load_config(None, TINY + ["model.aspp_dropout=0.5"])  # torchvision's form, as a switch
    assert sum(isinstance(m, torch.nn.Dropout) for m in build_model(cfg.model, 3).modules()) == 1
    # the switch keeps the state_dict keys, so checkpoints load either way
    assert set(build_model(cfg.model, 3).state_dict()) == set(model.state_dict())


def test_csl_non_max_mean_sums_the_other_probabilities():
    # p_max rounds to 1 in float32, the others do not vanish: the code's m = sum(others) / (C - 1) > 0
    probs = torch.softmax(torch.tensor([30.0, 0.0, 0.0, 0.0]), 0).view(1, 4, 1, 1)
    assert probs[0, 0].item() == 1.0 and probs[0, 1].item() > 0
    _, r, _ = csl_features(probs)
    p = probs.double().view(4)
    others = torch.cat([p.new_zeros(1), p[1:]])  # the max channel zeroed
    m = p[1:].sum() / 3
    expected = ((others - m) ** 2).sum() / 3
    assert math.isclose(r.item(), expected.item(), rel_tol=1e-5)


# what each method's clean forward holds: the labeled + weak batch, or the labeled batch alone where a teacher
# labels the weak view (SemiRES forwards labeled and strong together unless running_stats is clean)
CLEAN_FORWARD = {"fixmatch": "x+u", "unimatch": "x+u", "dssn": "x+u", "unimatch_v2": "x", "semires": "x", "csl": "x+u"}


@pytest.mark.parametrize("name", sorted(CLEAN_FORWARD))
def test_running_stats_clean_keeps_perturbed_views_out_of_batchnorm_in_any_method(name, tiny_scenes, tiny_store):
    default = load_config(None, [f"method.name={name}"]).method.running_stats
    assert default == ("clean" if name == "csl" else "all")  # each as its authors' code does
    for mode in ("clean", "all"):
        method, model, batch = make_method(name, tiny_scenes, tiny_store, f"method.running_stats={mode}")
        reference = copy.deepcopy(model.backbone).train()
        with torch.no_grad():
            reference(torch.cat([batch["x"], batch["u"]]) if CLEAN_FORWARD[name] == "x+u" else batch["x"])
        method.training_step(batch, step=5)  # past DSSN's warm-up: its strong views are forwarded
        ref = dict(reference.named_buffers())
        same = all(torch.allclose(buf, ref[n], atol=1e-6) for n, buf in model.backbone.named_buffers())
        assert same == (mode == "clean"), (name, mode)


def test_tmp_mask_is_a_ten_by_ten_grid_on_any_crop():
    cfg = load_config(None, ["method.name=csl"]).method
    assert cfg.tmp_grid == 10 and cfg.tmp_block == 0
    torch.manual_seed(0)
    mask = block_mask(4, 96, 96, "cpu", cover=0.5, grid=10)
    rows = {tuple(r.tolist()) for r in mask[:, :, 0].T}  # distinct row patterns down the image
    assert len(rows) > 3 and all(len({tuple(mask[i, y].tolist()) for y in range(96)}) <= 10 for i in range(4))
    assert block_mask(1, 96, 96, "cpu", block=32, cover=1.0).all()  # the pixel form stays available


def test_semires_losses_are_a_plain_mean_of_class_weighted_pixel_ce():
    from semiseg.losses import build_criterion

    torch.manual_seed(0)
    logits, target = torch.randn(2, 2, 5, 5), torch.randint(0, 2, (2, 5, 5))
    w = torch.tensor([0.9, 1.1])
    expected = (F.cross_entropy(logits, target, reduction="none") * w[target]).mean()
    ce = build_criterion(load_config(None, ["train.class_weights=[0.9,1.1]"]).train, 255, 2)
    assert torch.allclose(ce(logits, target), expected)
    assert not torch.allclose(ce(logits, target), F.cross_entropy(logits, target, weight=w))
    target[0, 0] = 255  # an ignored pixel counts in neither sum
    keep = target != 255
    per_pixel = F.cross_entropy(logits, target, reduction="none", ignore_index=255)
    expected = (per_pixel * w[target.clamp(max=1)])[keep].mean()
    assert torch.allclose(ce(logits, target), expected)


def test_semires_strong_view_is_its_mild_colour_jitter_and_burn_in_is_plain_ce(tiny_scenes, tiny_store, monkeypatch):
    import semiseg.methods.parts as parts

    method, _, batch = make_method("semires", tiny_scenes, tiny_store, "method.burn_in_steps=2")
    out = method.training_step(batch, step=0)
    assert torch.allclose(out["loss"].detach(), out["loss_x"])  # not x sup_weight (10)
    seen = []
    monkeypatch.setattr(parts, "strong_photometric", lambda x, mean, std, **kw: seen.append(kw) or x)
    method.training_step(batch, step=5)
    semires_view = {"p_jitter": 0.5, "p_gray": 0.0, "p_blur": 0.0, "jitter": (0.25, 0.25, 0.25, 0.25)}
    assert seen == [semires_view]
    # the same switch in any semi-supervised method; the UniMatch family's view stays its default
    for extra, want in (((), {}), (("method.strong_view=semires",), semires_view)):
        method, _, batch = make_method("unimatch", tiny_scenes, tiny_store, "method.mix=roll", *extra)
        seen.clear()
        method.training_step(batch, step=5)
        assert seen and all(kw == want for kw in seen)


def test_dssn_teacher_uses_batch_statistics_through_the_first_epoch(tiny_scenes, tiny_store):
    method, _, batch = make_method("dssn", tiny_scenes, tiny_store)
    assert method.cfg.extra_aug  # AugSeg's ops: always on in the VOC code
    method.set_schedule(iters=100, steps_per_epoch=10)
    stats = lambda: [b.clone() for n, b in method.teacher.named_buffers() if "running_mean" in n]  # noqa: E731
    before = stats()
    method.training_step(batch, step=9)  # last step of epoch 0: train mode, running statistics move
    moved = stats()
    assert any(not torch.equal(a, b) for a, b in zip(before, moved))
    method.training_step(batch, step=10)  # epoch 1: eval mode
    assert all(torch.equal(a, b) for a, b in zip(moved, stats()))
    method, _, batch = make_method("dssn", tiny_scenes, tiny_store, "method.teacher_mode=eval")
    before = stats()
    method.training_step(batch, step=0)
    assert all(torch.equal(a, b) for a, b in zip(before, stats()))


def test_colour_jitter_draws_its_order_per_image():
    x = torch.rand(6, 3, 8, 8)
    torch.manual_seed(0)
    out = color_jitter(x)
    torch.manual_seed(0)  # the same draws, replayed: factors of each op, then one order per image
    b = x.shape[0]
    f = [torch.empty(b, 1, 1, 1).uniform_(lo, hi) for lo, hi in ((0.5, 1.5), (0.5, 1.5), (0.5, 1.5), (-0.25, 0.25))]
    orders = [torch.randperm(4).tolist() for _ in range(b)]
    assert len({tuple(o) for o in orders}) > 1
    for i in range(b):
        y = x[i : i + 1]
        for op in orders[i]:
            if op == 0:
                y = y * f[0][i]
            elif op == 1:
                mean = augment._gray(y).mean((2, 3), keepdim=True)
                y = (y - mean) * f[1][i] + mean
            elif op == 2:
                y = (y - augment._gray(y)) * f[2][i] + augment._gray(y)
            else:
                y = augment._hue_shift(y, f[3][i : i + 1])
            y = y.clamp(0, 1)
        assert torch.allclose(out[i : i + 1], y, atol=1e-5), i


def test_complementary_dropout_leaves_exactly_half_the_pairs_and_shares_one_mask():
    torch.manual_seed(0)
    c1, c4 = torch.ones(16, 4, 2, 2), torch.ones(16, 12, 1, 1)
    d1, d4 = complementary_dropout(c1, c4)
    k1, k4 = d1[:, :, 0, 0], d4[:, :, 0, 0]
    assert torch.equal(k1, k4[:, :4])  # one mask for both levels
    assert torch.equal(k4[:8] + k4[8:], torch.full((8, 12), 2.0))  # complementary
    untouched = (k4[:8] == 1).all(1)
    assert untouched.sum() == 4  # exactly half of the 8 pairs


def test_teacher_horizon_as_a_share_of_the_schedule(tiny_scenes, tiny_store):
    from semiseg.methods.teacher import teacher_horizon_note

    method, _, _ = make_method("dssn", tiny_scenes, tiny_store, "method.ema_horizon=0.02")
    method.set_schedule(iters=1500, steps_per_epoch=120)
    assert method.teacher.momentum == pytest.approx(1 - 1 / 30)
    assert method.teacher.horizon == pytest.approx(30)
    assert "warning" not in teacher_horizon_note(method.teacher.momentum, 1500)
    note = teacher_horizon_note(0.996, 1500)  # 250 steps = 16.7% of 1500: warned, with the option named
    assert "16.7%" in note and "warning" in note and "method.ema_horizon" in note
    assert "warning" not in teacher_horizon_note(0.996, 123_000)  # the authors' VOC run: 0.2%
    method, _, _ = make_method("dssn", tiny_scenes, tiny_store)
    method.set_schedule(iters=1500, steps_per_epoch=120)
    assert method.teacher.momentum == 0.996  # the authors' momentum stays the default


def test_amp_auto_uses_bf16_on_cpu_only_where_it_is_native(monkeypatch):
    from semiseg.engine import precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert precision.amp_dtype("auto", torch.device("cpu")) is None
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert precision.amp_dtype("auto", torch.device("cpu")) is torch.bfloat16


def test_unimatch_ablation_switches_keep_the_authored_weights_and_reduce_to_fixmatch(tiny_scenes, tiny_store):
    def step(name, *extra):
        method, _, batch = make_method(name, tiny_scenes, tiny_store, *extra)
        torch.manual_seed(1)  # the same boxes and strong views for both
        return method.training_step(batch, step=5)

    out = step("unimatch")
    authored = (out["loss_x"] + 0.25 * out["loss_s1"] + 0.25 * out["loss_s2"] + 0.5 * out["loss_fp"]) / 2
    assert torch.allclose(out["loss"], authored, atol=1e-6)
    no_fp = step("unimatch", "method.fp=false")
    assert "loss_fp" not in no_fp
    assert torch.allclose(no_fp["loss"], (no_fp["loss_x"] + 0.5 * (no_fp["loss_s1"] + no_fp["loss_s2"])) / 2, atol=1e-6)
    single = step("unimatch", "method.dual=false")
    assert "loss_s2" not in single
    assert torch.allclose(single["loss"], (single["loss_x"] + 0.5 * single["loss_s1"] + 0.5 * single["loss_fp"]) / 2,
                          atol=1e-6)
    neither, fixmatch = step("unimatch", "method.fp=false", "method.dual=false"), step("fixmatch")
    assert torch.allclose(neither["loss"], fixmatch["loss"], atol=1e-6)  # the same draws, the same loss
    assert neither["loss"] != out["loss"]
