"""Selectors, CutMix, strong augmentation, the unsupervised loss and the EMA rule on hand-built tensors."""
import pytest
import torch

from semiseg.data.augment import cutmix_box, mix, strong_photometric
from semiseg.errors import SemisegError
from semiseg.losses import masked_ce
from semiseg.methods.teacher import EMATeacher
from semiseg.pseudo.selectors import build_selector, selection_stats


def probs_from(top, cls, c=3):
    """(1, C, H, W) probabilities whose argmax is ``cls`` with probability ``top`` (rest spread evenly)."""
    top, cls = torch.tensor(top)[None], torch.tensor(cls)[None]
    p = ((1 - top) / (c - 1)).unsqueeze(1).repeat(1, c, 1, 1)
    return p.scatter(1, cls.unsqueeze(1), top.unsqueeze(1))


def test_threshold_keeps_conf_at_or_above_tau_and_never_ignored():
    probs = probs_from([[0.99, 0.95], [0.94, 0.999]], [[0, 1], [2, 1]])
    ignore = torch.tensor([[[False, False], [False, True]]])
    pl, w = build_selector({"name": "threshold", "tau": 0.95})(probs, ignore)
    assert pl.tolist() == [[[0, 1], [2, 1]]]
    assert w.tolist() == [[[1.0, 1.0], [0.0, 0.0]]]  # 0.95 passes (>=), 0.94 fails, ignored is 0


def test_none_selects_every_valid_pixel():
    probs = probs_from([[0.4, 0.5]], [[1, 2]])
    pl, w = build_selector({"name": "none"})(probs, torch.tensor([[[False, True]]]))
    assert pl.tolist() == [[[1, 2]]] and w.tolist() == [[[1.0, 0.0]]]


def test_selector_options_are_checked():
    with pytest.raises(SemisegError, match="has no option.*tua"):
        build_selector({"name": "threshold", "tua": 0.9})


def test_class_share_keeps_each_class_its_labeled_share_of_the_pixels_most_confident_first():
    # 2 images x 5 pixels, one ignored: 9 valid. Class 1 is over-predicted (6 pixels), class 2 under-predicted (1).
    probs = probs_from([[0.90, 0.80, 0.95, 0.60, 0.70], [0.99, 0.50, 0.40, 0.85, 0.45]],
                       [[1, 1, 1, 1, 0], [1, 2, 1, 0, 1]])
    probs = torch.cat([probs[:, :, :1], probs[:, :, 1:]])  # (2, 3, 1, 5)
    ignore = torch.zeros(2, 1, 5, dtype=torch.bool)
    ignore[1, 0, 4] = True  # class 1 at 0.45, outside the image: neither counted nor kept
    prior = [2.0, 3.0, 4.0]  # shares 2/9, 3/9, 4/9 of 9 valid pixels: quotas 2, 3 and 1 (class 2's one pixel)
    pl, w = build_selector({"name": "class_share"})(probs, ignore, prior=prior)
    assert pl[:, 0].tolist() == [[1, 1, 1, 1, 0], [1, 2, 1, 0, 1]]
    # class 1's three most confident of its six (0.99, 0.95, 0.90); both of class 0; class 2's one pixel
    assert w[:, 0].tolist() == [[1, 0, 1, 0, 1], [1, 1, 0, 1, 0]]
    _, half = build_selector({"name": "class_share", "share": 0.5})(probs, ignore, prior=prior)
    assert half[:, 0].tolist() == [[0, 0, 1, 0, 0], [1, 1, 0, 1, 0]]  # quotas 1, 2 (1.5 to even), 1
    given = build_selector({"name": "class_share", "prior": prior})  # a config may give the shares
    assert torch.equal(given(probs, ignore)[1], w)
    # with the model's shares over the set (a method's bank), each class keeps the same fraction in any batch:
    # class 1 predicted at 3x its labeled share keeps its most confident third (2 of 6: 0.99, 0.95)
    _, w_set = build_selector({"name": "class_share"})(probs, ignore, prior=[0.2, 0.2, 0.6], predicted=[0.2, 0.6, 0.2])
    assert w_set[:, 0].tolist() == [[0, 0, 1, 0, 1], [1, 1, 0, 1, 0]]


def test_class_share_without_or_with_wrong_shares_is_refused():
    probs = probs_from([[0.9, 0.8]], [[0, 1]])
    ignore = torch.zeros(1, 1, 2, dtype=torch.bool)
    with pytest.raises(SemisegError, match="selector class_share: needs the labeled class shares"):
        build_selector({"name": "class_share"})(probs, ignore)
    with pytest.raises(SemisegError, match=r"^method.selector.prior: needs 3 finite class shares, none negative, not "
                                           r"all 0; "
                                           r"got \[0.5, 0.5\]$"):
        build_selector({"name": "class_share", "prior": [0.5, 0.5]})(probs, ignore)
    with pytest.raises(SemisegError, match=r"^method.selector.prior: .* got \['a', 'b', 'c'\]$"):
        build_selector({"name": "class_share", "prior": ["a", "b", "c"]})(probs, ignore)
    for share in (-0.5, True, float("inf")):
        with pytest.raises(SemisegError, match=rf"^method.selector.share: {share} is not a share above 0"):
            build_selector({"name": "class_share", "share": share})(probs, ignore, prior=[1, 1, 1])
    with pytest.raises(SemisegError, match=r"^method.selector.prior: needs 3 finite .* \[1.0, inf, 1.0\]$"):
        build_selector({"name": "class_share"})(probs, ignore, prior=[1, float("inf"), 1])
    with pytest.raises(SemisegError, match=r"^method.selector.predicted: needs 3 finite .* \[0.0, 0.0, 0.0\]$"):
        build_selector({"name": "class_share"})(probs, ignore, prior=[1, 1, 1], predicted=[0, 0, 0])


def test_selection_stats_per_class_and_against_hidden_labels():
    pl = torch.tensor([[[0, 0, 1, 1]]])
    w = torch.tensor([[[1.0, 0.0, 1.0, 1.0]]])
    ignore = torch.zeros(1, 1, 4, dtype=torch.bool)
    hidden = torch.tensor([[[0, 0, 1, 2]]])
    s = selection_stats(pl, w, ignore, 3, hidden)
    assert s["mask_ratio"] == pytest.approx(0.75)
    assert s["mask_ratio_c0"] == pytest.approx(0.5) and s["mask_ratio_c1"] == pytest.approx(1.0)
    assert s["sel_precision"] == pytest.approx(2 / 3)  # selected: right, right, wrong
    assert s["sel_recall"] == pytest.approx(2 / 3)  # correct: 3 pixels, 2 selected
    assert s["sel_precision_c0"] == 1.0 and s["sel_precision_c1"] == pytest.approx(0.5)
    # class 2 is never predicted: no value (NaN), not 0, so step averages skip it
    assert torch.isnan(s["mask_ratio_c2"]) and torch.isnan(s["sel_precision_c2"])
    # recall per true class, selected or not: class 2's one pixel is pseudo-labelled 1, so the class is lost
    assert [s[f"pl_recall_c{c}"].item() for c in range(3)] == [1.0, 1.0, 0.0]
    s = selection_stats(pl, w, ignore, 4, hidden)
    assert torch.isnan(s["pl_recall_c3"])  # no pixel of class 3 in the batch: no value


def test_masked_ce_divides_by_valid_not_selected_pixels():
    logits = torch.zeros(1, 2, 1, 4)  # CE = log 2 everywhere
    pl = torch.zeros(1, 1, 4, dtype=torch.long)
    w = torch.tensor([[[1.0, 0.0, 0.0, 0.0]]])
    ignore = torch.tensor([[[False, False, True, True]]])
    assert masked_ce(logits, pl, w, ignore).item() == pytest.approx(torch.log(torch.tensor(2.0)).item() / 2)


def test_cutmix_boxes_and_mixing_use_one_box_for_images_and_labels():
    torch.manual_seed(0)
    box = cutmix_box(64, 40, 50, "cpu", p=1.0)
    area = box.float().mean((1, 2))
    assert (area > 0.015).all() and (area <= 0.4).all()
    for b in box:  # one axis-aligned rectangle
        ys, xs = b.nonzero(as_tuple=True)
        assert b[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].all()
    assert not cutmix_box(8, 10, 10, "cpu", p=0.0).any()
    img_a, img_b = torch.zeros(64, 3, 40, 50), torch.ones(64, 3, 40, 50)
    lab_a, lab_b = torch.zeros(64, 40, 50, dtype=torch.long), torch.full((64, 40, 50), 7)
    img, lab = mix(img_a, img_b, box), mix(lab_a, lab_b, box)
    assert torch.equal(img[:, 0] == 1, box) and torch.equal(img[:, 2] == 1, box)
    assert torch.equal(lab == 7, box)


def test_strong_photometric_draws_per_sample_and_keeps_shape():
    torch.manual_seed(0)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    x = torch.rand(1, 3, 16, 16).repeat(32, 1, 1, 1)
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    y = strong_photometric(x, mean, std)
    assert y.shape == x.shape and torch.isfinite(y).all()
    changed = (y - x).abs().flatten(1).amax(1) > 1e-3
    assert 0 < changed.sum() < 32  # some untouched (p < 1 for each op), most changed
    assert len({round(v, 4) for v in y.mean((1, 2, 3)).tolist()}) > 16  # independent parameters


def test_ema_rate_and_update():
    student = torch.nn.BatchNorm2d(2)
    teacher = EMATeacher(student, 0.996, ramp=True)
    assert [teacher.rate(s) for s in (0, 1, 3)] == [0.0, 0.5, 0.75] and teacher.rate(10**6) == 0.996
    with torch.no_grad():
        student.weight.fill_(3.0)
        student.running_mean.fill_(1.0)
    teacher.update(student, 1)  # m = 0.5
    assert torch.allclose(teacher.module.weight, torch.full((2,), 2.0))
    assert torch.allclose(teacher.module.running_mean, torch.full((2,), 0.5))
    assert not any(p.requires_grad for p in teacher.parameters())


def test_a_multiscale_teacher_averages_its_probabilities_over_the_scales_at_the_input_size():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.AvgPool2d(4),
                              torch.nn.Upsample(scale_factor=4, mode="bilinear"))  # coarse: its output depends on scale
    sizes = []
    x = torch.randn(2, 3, 16, 16)
    one = EMATeacher(net, 0.99)
    one.module.register_forward_pre_hook(lambda m, a: sizes.append(tuple(a[0].shape[-2:])))
    one = one.probs(x)
    assert sizes == [(16, 16)] and torch.allclose(one, net(x).softmax(1))  # [1.0], as authored: unchanged
    sizes.clear()
    teacher = EMATeacher(net, 0.99, scales=[1.0, 1.5])
    teacher.module.register_forward_pre_hook(lambda m, a: sizes.append(tuple(a[0].shape[-2:])))
    probs = teacher.probs(x)
    assert sizes == [(16, 16), (24, 24)] and probs.shape == (2, 4, 16, 16)
    big = torch.nn.functional.interpolate(x, size=(24, 24), mode="bilinear", align_corners=True)
    up = torch.nn.functional.interpolate(net(big), size=(16, 16), mode="bilinear", align_corners=True)
    assert torch.allclose(probs, (net(x).softmax(1) + up.softmax(1)) / 2, atol=1e-6)
    assert not torch.allclose(probs, one, atol=1e-3)


def test_labeled_paste_draws_the_least_confident_class_and_pastes_its_true_labels_at_weight_1():
    from semiseg.methods.parts import LabeledPaste

    torch.manual_seed(0)
    y = torch.zeros(2, 8, 8, dtype=torch.long)
    y[0, :2, :3], y[1, 5:, 5:], y[1, 0, 0] = 1, 2, 255  # class 1 in image 0, class 2 in image 1, one ignored pixel
    x = torch.randn(2, 3, 8, 8)
    paste = LabeledPaste(1.0, 3)
    paste.confidence = torch.tensor([0.0, 0.999, 0.0])  # class 1 learnt, class 2 not: class 2 comes
    plan = paste.draw(x, y, 4, lambda t: t + 10)  # the perturbation reaches the pasted pixels
    mask, src, true = plan
    assert all(torch.equal(mask[i], y[1] == 2) for i in range(4))
    assert torch.equal(src, (x[1] + 10).expand(4, -1, -1, -1))
    views = paste.images(torch.zeros(4, 3, 8, 8), plan)
    assert torch.equal(views[:, :, 5:, 5:], src[:, :, 5:, 5:]) and views[:, :, :5].abs().sum() == 0
    pl, w, ign = paste.labels(torch.zeros(4, 8, 8, dtype=torch.long), torch.full((4, 8, 8), 0.3),
                              torch.ones(4, 8, 8, dtype=torch.bool), plan)
    assert (pl[:, 5:, 5:] == 2).all() and (w[:, 5:, 5:] == 1).all() and not ign[:, 5:, 5:].any()
    assert (pl[:, :5] == 0).all() and (w[:, :5] == 0.3).all() and ign[:, :5].all()  # elsewhere as they were
    logits = torch.zeros(2, 3, 8, 8)
    logits[:, 2] = 10.0  # the student is sure of class 2 wherever it is
    before = paste.confidence.clone()
    paste.observe(logits, y)
    assert paste.confidence[2] > 0.0099 and paste.confidence[0] < before[0] + 0.0001  # background: 0.99*0 + 0.01*~0
    # p = 0.5: some images get an object, the others keep their views and pseudo-labels whole
    mask, src, true = LabeledPaste(0.5, 3).draw(x, y, 64, lambda t: t)
    pasted = mask.flatten(1).any(1)
    assert 0 < int(pasted.sum()) < 64 and not true[~pasted].any()
    for i in pasted.nonzero()[:, 0].tolist():  # each pasted object is one labeled image's class, whole
        k = int(true[i].max())
        j = 0 if k == 1 else 1
        assert torch.equal(mask[i], y[j] == k) and torch.equal(src[i], x[j]) and (true[i][mask[i]] == k).all()


def _paste_bank_in_process(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from semiseg.methods.parts import LabeledPaste

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    y = torch.full((1, 4, 4), rank + 1)  # process 0 sees only class 1, process 1 only class 2
    logits = torch.zeros(1, 3, 4, 4)
    logits[:, rank + 1] = 2.0 + 2.0 * rank
    paste = LabeledPaste(1.0, 3, momentum=0.0)
    paste.observe(logits, y)
    torch.save(paste.confidence, f"{out}/bank{rank}.pt")
    dist.destroy_process_group()


def test_labeled_paste_keeps_one_bank_for_every_process_under_torchrun(tmp_path):
    """Each process sees its own labeled batch; the bank is their pooled mean, the same on every process, so
    the checkpoint's bank (rank 0's) is every process's and a resumed group draws as it would have."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(_paste_bank_in_process, args=(port, str(tmp_path)), nprocs=2)
    banks = [torch.load(tmp_path / f"bank{r}.pt") for r in range(2)]
    p1 = torch.tensor([0.0, 2.0, 0.0]).softmax(0)[1]  # the true class's probability on each process's pixels
    p2 = torch.tensor([0.0, 0.0, 4.0]).softmax(0)[2]
    assert torch.equal(banks[0], banks[1])
    assert torch.allclose(banks[0], torch.stack([torch.tensor(0.0), p1, p2]))


def test_labeled_paste_off_draws_nothing_and_leaves_the_random_stream():
    from semiseg.methods.parts import LabeledPaste

    y = torch.ones(2, 8, 8, dtype=torch.long)
    called = []
    state = torch.get_rng_state()
    assert LabeledPaste(0.0, 3).draw(torch.zeros(2, 3, 8, 8), y, 2, lambda t: called.append(1) or t) is None
    assert torch.equal(state, torch.get_rng_state()) and not called
    background_only = torch.zeros(2, 8, 8, dtype=torch.long)  # class 0 is never pasted
    assert LabeledPaste(1.0, 3).draw(torch.zeros(2, 3, 8, 8), background_only, 2, lambda t: t) is None


def test_distribution_alignment_raises_an_under_predicted_class_to_its_labeled_share():
    from semiseg.pseudo.align import align

    # two pixels; the model gives class 1 a mean of 0.2 where the labels hold it at 0.5
    probs = torch.tensor([[0.9, 0.1], [0.7, 0.3]]).T.reshape(1, 2, 1, 2)
    mean = probs.mean((0, 2, 3))
    aligned = align(probs, torch.tensor([0.5, 0.5]), mean)
    # p * prior / mean renormalised: pixel 2 is (0.7/0.8, 0.3/0.2) -> (0.875, 1.5) / 2.375: class 1 now wins
    assert torch.allclose(aligned[0, :, 0, 1], torch.tensor([0.875, 1.5]) / 2.375)
    assert aligned.argmax(1).tolist() == [[[0, 1]]] and probs.argmax(1).tolist() == [[[0, 0]]]
    assert torch.allclose(aligned.sum(1), torch.ones(1, 1, 2))
