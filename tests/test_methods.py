"""Method behaviour beyond the shared contract (tests/test_contracts.py): warm-ups, refinement per map, the
CutMix partner's proposals."""
import json

import pytest
import torch

from semiseg.configure import load_config

from conftest import TINY, make_method


def test_dssn_warm_up_drops_the_strong_views_and_copies_the_student(tiny_scenes, tiny_store):
    method, model, batch = make_method("dssn", tiny_scenes, tiny_store, "method.warmup_steps=2")
    assert method.training_step(batch, step=1)["loss_s1"] == 0  # inside the warm-up
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)
    method.after_step(step=1)  # keep rate 0: the teacher becomes the student
    for k, v in model.state_dict().items():
        assert torch.equal(v, method.teacher.module.state_dict()[k]), k
    out = method.training_step(batch, step=2)
    assert out["loss_s1"] > 0 and out["loss_s2"] > 0  # after it, both strong views learn


def test_dssn_burn_in_trains_on_the_labels_alone_and_copies_the_student(tiny_scenes, tiny_store):
    """Our addition, off by default: for burn_in_steps steps none of DSSN's four unlabeled losses or two
    consistencies, only the labeled loss, and the teacher a copy of the student; its own warm-up (the authors')
    drops the strong views only, so the FP branches still learn from the student's early map."""
    method, model, batch = make_method("dssn", tiny_scenes, tiny_store, "method.burn_in_steps=2")
    out = method.training_step(batch, step=1)
    with torch.no_grad():
        alone = method.criterion(model(batch["x"]), batch["y"])
    assert torch.allclose(out["loss"], alone) and torch.equal(out["loss_x"], out["loss"].detach())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)
    method.after_step(step=1)  # still burning in: the teacher becomes the student
    for k, v in model.state_dict().items():
        assert torch.equal(v, method.teacher.module.state_dict()[k]), k
    every = "method.selector={name: none}"  # every pixel labelled: an untrained model is confident nowhere
    after, _, _ = make_method("dssn", tiny_scenes, tiny_store, "method.burn_in_steps=2", every)
    out = after.training_step(batch, step=2)
    assert out["loss_fp"] > 0 and out["loss_s1"] > 0 and out["loss_s2"] > 0  # after it: every loss on
    warm, _, _ = make_method("dssn", tiny_scenes, tiny_store, "method.warmup_steps=2", every)
    assert warm.training_step(batch, step=1)["loss_fp"] > 0  # the authors' warm-up keeps the FP branches


@pytest.mark.parametrize("name,maps", [("fixmatch", 2), ("unimatch", 2), ("dssn", 3)])
def test_each_map_is_refined_once_and_logged_labels_are_the_refined_ones(name, maps, tiny_scenes, tiny_store):
    """Weak view and CutMix partner once each (DSSN also the student's weak view, for its FP branches);
    the logged selection statistics describe the refined labels, not the selection before refinement."""
    method, _, batch = make_method(name, tiny_scenes, tiny_store, "method.refiner={name: iom}")
    calls, refine = [], method.labeler.refine

    class Counting:
        miss_rate = property(lambda self: refine.miss_rate)

        def __call__(self, probs, props, ignore):
            calls.append(probs)
            return refine(probs, props, ignore)

    method.labeler.refine = Counting()
    out = method.training_step(batch, step=1)
    assert len(calls) == maps
    pl, weight = method.labeler(calls[-2] if name == "dssn" else calls[0], batch["u_ignore"], batch["u_props"])
    expected = method.stats(pl, weight, batch["u_ignore"], batch)
    assert torch.allclose(out["mask_ratio"], expected["mask_ratio"])


def test_refined_method_trains_through_the_trainer(tiny_scenes, tiny_store, tmp_path):
    """The Trainer logs whatever a step returns, including a refiner's plain-float miss rate."""
    from semiseg.engine.trainer import Trainer

    cfg = load_config(None, TINY + [f"data.root={tiny_scenes}", "method.name=unimatch", "method.refiner={name: iom}",
                                    f"data.proposal_store={tiny_store}", "train.iters=2", "train.eval_interval=2"])
    trainer = Trainer(cfg, work_dir=str(tmp_path))
    returned, step = [], trainer.method.training_step

    def recorded(batch, i):
        out = step(batch, i)
        returned.append(float(out["miss_rate"]))
        return out

    trainer.method.training_step = recorded
    try:
        trainer.run()
    finally:
        trainer.close()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["miss_rate"] for r in rows if r["kind"] == "train"] == pytest.approx(returned, abs=1e-12)
    assert len(returned) == 2 and [r["step"] for r in rows if r["kind"] == "eval"] == [2]


@pytest.mark.parametrize("mix,shift", [("roll", lambda i, n: (i - 1) % n), ("flip", lambda i, n: n - 1 - i)])
def test_in_batch_partner_images_and_proposals_match(mix, shift, tiny_scenes, tiny_store):
    method, _, batch = make_method("unimatch", tiny_scenes, tiny_store, f"method.mix={mix}",
                                   "method.refiner={name: iom}")
    u_mix, ign_mix = method.partner.images(batch)
    props = method.partner.proposals(batch)
    n = batch["u"].shape[0]
    for i in range(n):
        j = shift(i, n)
        assert torch.equal(u_mix[i], batch["u"][j]) and torch.equal(ign_mix[i], batch["u_ignore"][j])
        assert props[i] is batch["u_props"][j]


@pytest.mark.parametrize("name", ["dssn", "unimatch_v2", "semires"])
def test_teacher_scales_label_at_each_scale_and_are_refused_out_of_range(name, tiny_scenes, tiny_store):
    from semiseg.errors import SemisegError

    method, _, batch = make_method(name, tiny_scenes, tiny_store, "method.teacher_scales=[1.0, 1.5]")
    sizes = []
    method.teacher.module.register_forward_pre_hook(lambda m, a: sizes.append(a[0].shape[-1]))
    method.training_step(batch, step=3)
    side = batch["u"].shape[-1]
    assert sizes and set(sizes) == {side, round(1.5 * side)} and sizes.count(side) == sizes.count(round(1.5 * side))
    with pytest.raises(SemisegError, match=r"bad value for 'method.teacher_scales': \[1.0, 9.0\]"):
        load_config(None, [f"method.name={name}", "method.teacher_scales=[1.0, 9.0]"])


@pytest.mark.parametrize("name", ["fixmatch", "unimatch", "unimatch_v2", "dssn"])
def test_paste_puts_labeled_objects_into_every_strong_view_and_its_bank_resumes(name, tiny_scenes, tiny_store):
    method, model, batch = make_method(name, tiny_scenes, tiny_store, "method.paste_p=1.0")
    draw, plans, seen = method.paste.draw, [], []
    method.paste.draw = lambda *a: plans.append(draw(*a)) or plans[-1]
    model.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone()))
    method.training_step(batch, step=3)
    mask, src, _ = plans[0]
    n = batch["u"].shape[0]
    strong = [t for t in seen if t.shape[0] % n == 0 and not torch.equal(t[-n:], batch["u"])]
    views = torch.cat(strong)[-(2 if name != "fixmatch" else 1) * n:].split(n)  # the strong views' forward
    assert mask.any() and all(torch.equal(v.permute(1, 0, 2, 3)[:, mask], src.permute(1, 0, 2, 3)[:, mask])
                              for v in views)
    assert method.paste.confidence.sum() > 0  # the bank moved with the labeled batch
    again, _, _ = make_method(name, tiny_scenes, tiny_store, "method.paste_p=1.0")
    again.load_state_dict(method.state_dict())
    assert torch.equal(again.paste.confidence, method.paste.confidence)


def test_distribution_alignment_keeps_the_labeled_shares_and_an_ema_of_the_mean_prediction():
    from semiseg.methods.parts import DistributionAlignment
    from semiseg.pseudo.align import align

    probs = torch.tensor([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8]]).T.reshape(1, 2, 1, 3)  # class 1 predicted at 0.2
    ignore = torch.tensor([[[False, False, True]]])  # the third pixel is outside the image: not in the mean
    y = torch.tensor([[[0, 1, 255, 1]]])  # the labels hold class 1 on 2 of 3 labeled pixels
    off = DistributionAlignment(False, 2)
    assert off(y, ignore, probs)[0] is probs and not off.labeled.any()
    da = DistributionAlignment(True, 2, momentum=0.9)
    out, partner = da(y, ignore, probs, probs.flip(-1))
    assert da.labeled.tolist() == [1.0, 2.0] and torch.allclose(da.mean, torch.tensor([0.8, 0.2]))
    prior = torch.tensor([1 / 3, 2 / 3])
    assert torch.allclose(out, align(probs, prior, da.mean)) and torch.allclose(partner, out.flip(-1))
    # pixel 2: (0.7 * (1/3) / 0.8, 0.3 * (2/3) / 0.2) -> class 1 now wins; every pixel still sums to 1
    assert out.argmax(1).tolist() == [[[0, 1, 1]]] and probs.argmax(1).tolist() == [[[0, 0, 1]]]
    assert torch.allclose(out.sum(1), torch.ones(1, 1, 3))
    da(y, torch.zeros_like(ignore), probs)  # second batch, every pixel: class 1 at 0.4; EMA 0.9
    assert torch.allclose(da.mean, 0.9 * torch.tensor([0.8, 0.2]) + 0.1 * torch.tensor([0.6, 0.4]))
    assert da.labeled.tolist() == [2.0, 4.0]


@pytest.mark.parametrize("name", ["fixmatch", "unimatch", "unimatch_v2", "dssn"])
def test_distribution_alignment_feeds_the_pseudo_labels_and_its_banks_resume(name, tiny_scenes, tiny_store):
    method, _, batch = make_method(name, tiny_scenes, tiny_store, "method.distribution_alignment=true")
    bank, select, aligned, seen = method.align, method.labeler.select, [], []
    method.align = lambda *a: aligned.append(bank(*a)) or aligned[-1]
    method.labeler.select = lambda probs, ignore: seen.append(probs) or select(probs, ignore)
    method.training_step(batch, step=3)
    method.align = bank
    assert len(aligned) == 1 and any(p is aligned[0][0] for p in seen)  # labels made from the aligned weak view
    n_labeled = int((batch["y"] < method.num_classes).sum())
    assert bank.labeled.sum() == n_labeled and torch.allclose(bank.mean.sum(), torch.tensor(1.0))
    again, _, _ = make_method(name, tiny_scenes, tiny_store, "method.distribution_alignment=true")
    again.load_state_dict(method.state_dict())
    assert torch.equal(again.align.mean, bank.mean) and torch.equal(again.align.labeled, bank.labeled)


def test_dssn_align_fp_labels_its_fp_branches_from_the_student_map_aligned_by_the_same_banks(tiny_scenes, tiny_store):
    from semiseg.pseudo.align import align

    method, _, batch = make_method("dssn", tiny_scenes, tiny_store, "method.distribution_alignment=true",
                                   "method.align_fp=true")
    bank, select, given, aligned, seen = method.align, method.labeler.select, [], [], []
    method.align = lambda *a: given.append(a) or aligned.append(bank(*a)) or aligned[-1]
    method.labeler.select = lambda probs, ignore: seen.append(probs) or select(probs, ignore)
    method.training_step(batch, step=3)
    (y, ign, t_w, t_mix, s_w), = given  # one call: the teacher's two maps and the student's weak one
    assert any(p is aligned[0][2] for p in seen)  # the FP branches' labels come from the aligned student map
    assert not any(p is s_w for p in seen) and not torch.allclose(aligned[0][2], s_w)
    assert torch.allclose(aligned[0][2], align(s_w, bank.labeled.float() / bank.labeled.sum(), bank.mean))


def test_dssn_align_fp_without_distribution_alignment_is_refused(tiny_scenes, tiny_store):
    from semiseg.errors import SemisegError

    with pytest.raises(SemisegError, match="method.align_fp: needs method.distribution_alignment=true"):
        make_method("dssn", tiny_scenes, tiny_store, "method.align_fp=true")


def test_distribution_alignment_on_a_method_that_does_not_align_is_refused(tiny_scenes, tiny_store):
    from semiseg.errors import SemisegError

    with pytest.raises(SemisegError, match="method.distribution_alignment: method csl does not align"):
        make_method("csl", tiny_scenes, tiny_store, "method.distribution_alignment=true")


def test_paste_on_a_method_without_strong_views_is_refused(tiny_scenes, tiny_store):
    from semiseg.errors import SemisegError

    with pytest.raises(SemisegError, match="method.paste_p=0.5: method csl has no strong views"):
        make_method("csl", tiny_scenes, tiny_store, "method.paste_p=0.5")


@pytest.mark.parametrize("name,align", [("fixmatch", False), ("dssn", False), ("dssn", True)])
def test_class_share_takes_the_set_shares_from_the_banks_and_they_resume(name, align, tiny_scenes, tiny_store):
    """The labeled shares seen so far and the argmax shares of the maps the labels come from (aligned ones where
    alignment is on), with or without alignment; the banks resume, and a run without either keeps none."""
    from semiseg.pseudo.selectors import class_share

    extra = ("method.selector={name: class_share, share: 0.5}", f"method.distribution_alignment={str(align).lower()}")
    method, _, batch = make_method(name, tiny_scenes, tiny_store, *extra)
    bank, calls, returned = method.align, [], []
    method.align = lambda *a: returned.append((a[1], bank(*a))) or returned[-1][1]
    method.labeler.select = lambda probs, ignore, prior, predicted: calls.append((prior, predicted)) or \
        class_share(probs, ignore, prior, predicted, share=0.5)
    method.training_step(batch, step=3)
    method.align = bank
    y = batch["y"][batch["y"] < method.num_classes]
    shares = torch.bincount(y, minlength=method.num_classes).float() / y.numel()
    (ignore, maps), = returned
    labelled = maps[0].argmax(1)[~ignore]  # the first map returned: aligned where alignment is on
    argmax = torch.bincount(labelled, minlength=method.num_classes).float() / labelled.numel()
    assert calls and all(torch.allclose(p, shares) and torch.allclose(q, argmax) for p, q in calls)
    again, _, _ = make_method(name, tiny_scenes, tiny_store, *extra)
    again.load_state_dict(method.state_dict())
    for k in ("labeled", "mean", "predicted"):
        assert torch.equal(getattr(again.align, k), getattr(bank, k)), k
    older, _, _ = make_method(name, tiny_scenes, tiny_store, *extra)
    older.load_state_dict({k: v for k, v in method.state_dict().items() if k != "align_predicted"})
    assert not older.align.predicted.any()  # a checkpoint from before this bank: the first step fills it
    plain, _, _ = make_method(name, tiny_scenes, tiny_store)
    assert not any(k.startswith("align_") for k in plain.state_dict())


def test_class_share_on_a_method_that_keeps_no_labeled_shares_is_refused(tiny_scenes, tiny_store):
    from semiseg.errors import SemisegError

    with pytest.raises(SemisegError, match="method.selector class_share: takes the labeled class shares, which this "
                                           "method does not keep"):
        make_method("csl", tiny_scenes, tiny_store, "method.selector={name: class_share}")


@pytest.mark.parametrize("option,words", [("share: 0", "method.selector.share: 0 is not a share above 0"),
                                          ("prior: [1, 2]", "method.selector.prior: needs 6 finite class shares")])
def test_a_bad_class_share_option_is_refused_when_the_method_is_built(option, words, tiny_scenes, tiny_store):
    from semiseg.errors import SemisegError

    with pytest.raises(SemisegError, match=words):
        make_method("dssn", tiny_scenes, tiny_store, f"method.selector={{name: class_share, {option}}}")


def test_class_share_keeps_every_label_before_any_labeled_pixel_is_seen():
    from semiseg.methods.parts import PseudoLabeler

    labeler = PseudoLabeler({"name": "class_share"}, {}, 3, shares=lambda: {"prior": None, "predicted": None})
    probs = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]]).T.reshape(1, 3, 1, 2)
    pl, weight = labeler(probs, torch.tensor([[[False, True]]]))
    assert pl.tolist() == [[[0, 1]]] and weight.tolist() == [[[1.0, 0.0]]]
