"""Speed options: each changes how a step runs, never what it computes (same weights, same outputs and
gradients up to rounding), and each is shown to take its own path."""
import copy

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("dinov2")

from semiseg.configure import load_config  # noqa: E402
from semiseg.engine.trainer import set_backend_flags  # noqa: E402
from semiseg.errors import SemisegError  # noqa: E402
from semiseg.models import build_model  # noqa: E402
from semiseg.models.dinov2 import DINOv2Encoder  # noqa: E402


def encoder_pair(**options):
    """The tiny encoder as the package runs it, and with ``options``, on the same weights."""
    torch.manual_seed(0)
    plain = DINOv2Encoder("tiny", attention="explicit")
    other = DINOv2Encoder("tiny", **options)
    other.load_state_dict(plain.state_dict())
    assert list(other.state_dict()) == list(plain.state_dict())  # the options add and rename nothing
    return plain, other


def outputs_and_grads(encoder, x):
    encoder.zero_grad()
    feats = encoder(x)
    sum(f.square().mean() for f in feats).backward()
    # the mask token and final norm take no part in the four levels: no gradient, with or without an option
    return [f.detach() for f in feats], {n: p.grad.clone() for n, p in encoder.named_parameters() if p.grad is not None}


def assert_same_step(a, b, x):
    fa, ga = outputs_and_grads(a, x)
    fb, gb = outputs_and_grads(b, x)
    assert ga.keys() == gb.keys() and len(ga) > 40
    for u, v in zip(fa, fb):
        assert torch.allclose(u, v, atol=1e-5)
    for name in ga:
        assert torch.allclose(ga[name], gb[name], atol=1e-5, rtol=1e-4), name


def test_sdpa_attention_computes_the_packages_attention_through_the_fused_call(monkeypatch):
    explicit, sdpa = encoder_pair(attention="sdpa")
    calls = []
    fused = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or fused(*a, **k))
    x = torch.randn(2, 3, 42, 56)
    assert_same_step(explicit.train(), sdpa.train(), x)
    assert len(calls) == len(sdpa.vit.blocks)  # one fused call per block, none from the explicit encoder
    teacher = copy.deepcopy(sdpa)  # an EMA teacher is a deep copy: its blocks run their own weights
    assert teacher.vit.blocks[0].attn.forward.__self__ is teacher.vit.blocks[0].attn


def test_auto_attention_fuses_long_sequences_on_a_cpu_and_keeps_short_ones_explicit(monkeypatch):
    import semiseg.models.dinov2 as dinov2

    explicit, auto = encoder_pair(attention="auto")
    calls = []
    fused = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or fused(*a, **k))
    short = torch.randn(1, 3, 42, 42)  # 9 tokens + 1 class token: under the threshold, the explicit softmax
    assert_same_step(explicit.train(), auto.train(), short)
    assert calls == []
    monkeypatch.setattr(dinov2, "CPU_FUSED_FROM_TOKENS", 10)  # the same input counts as long now: fused
    assert_same_step(explicit, auto, short)
    assert len(calls) == len(auto.vit.blocks)


def test_activation_checkpointing_keeps_the_gradients_and_saves_fewer_activations(monkeypatch):
    plain, ckpt = encoder_pair(attention="explicit", grad_checkpoint=True)
    x = torch.randn(2, 3, 56, 56)
    assert_same_step(plain.train(), ckpt.train(), x)

    def saved_bytes(encoder):
        total = [0]

        def pack(t):
            total[0] += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            sum(f.sum() for f in encoder(x))
        return total[0]

    kept, recomputed = saved_bytes(plain), saved_bytes(ckpt)
    assert recomputed < 0.5 * kept, (kept, recomputed)
    with torch.no_grad():  # evaluation does not checkpoint: nothing to recompute
        for u, v in zip(plain.eval()(x), ckpt.eval()(x)):
            assert torch.allclose(u, v, atol=1e-5)


def test_grad_checkpoint_on_a_cnn_is_refused_in_one_line():
    cfg = load_config(None, ["model.backbone=resnet18", "model.grad_checkpoint=true"])
    with pytest.raises(SemisegError, match="model.grad_checkpoint recomputes the ViT blocks of a dinov2_\\* encoder; "
                                           "model.backbone=resnet18 has none"):
        build_model(cfg.model, 3)


def test_cuda_backend_flags_follow_the_deterministic_switch():
    saved = (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        set_backend_flags(torch.device("cuda"), deterministic=False)
        assert (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32,
                torch.backends.cudnn.allow_tf32) == (True, True, True)
        set_backend_flags(torch.device("cuda"), deterministic=True)
        assert (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32,
                torch.backends.cudnn.allow_tf32) == (False, False, False)
        set_backend_flags(torch.device("cpu"), deterministic=False)  # nothing to set on a CPU
        assert torch.backends.cudnn.benchmark is False
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.slow
def test_compiled_student_trains_as_the_eager_one(tiny_scenes, tmp_path):
    """train.compile: the student's forward compiled in place (the checkpoint keys unchanged); three FixMatch
    steps give the eager run's losses and weights up to rounding."""
    from conftest import short

    from semiseg.engine.trainer import Trainer

    runs = {}
    for compiled in (False, True):
        cfg = short(tiny_scenes, "train.iters=3", "method.name=fixmatch", f"train.compile={str(compiled).lower()}")
        trainer = Trainer(cfg, work_dir=tmp_path / str(compiled))
        assert (trainer.model._compiled_call_impl is not None) == compiled
        losses = [float(trainer.train_step()["loss"]) for _ in range(3)]
        runs[compiled] = (losses, trainer.model.state_dict())
        trainer.log.close()
    assert runs[True][1].keys() == runs[False][1].keys()
    assert runs[True][0] == pytest.approx(runs[False][0], rel=1e-4, abs=1e-5)
    for k, v in runs[False][1].items():
        assert torch.allclose(runs[True][1][k].float(), v.float(), atol=1e-4), k
