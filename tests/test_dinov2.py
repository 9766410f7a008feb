"""UniMatch V2's network: the DINOv2 encoder against the dinov2 package's model, the DPT head behind the model
contract, strict loading of released checkpoints, and every method on a tiny DINOv2-shaped encoder."""
import json

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("dinov2")

from semiseg.configure import load_config  # noqa: E402
from semiseg.errors import SemisegError  # noqa: E402
from semiseg.models import build_model  # noqa: E402
from semiseg.models.dinov2 import PATCH, SIZES, DINOv2Encoder, build_vit, to_patch_multiple  # noqa: E402

from conftest import tiny_cfg  # noqa: E402

DPT = ["model.arch=dpt", "model.backbone=dinov2_tiny"]


@pytest.mark.parametrize("size", ["tiny", "small"])
def test_encoder_levels_equal_the_packages_model(size):
    torch.manual_seed(0)
    encoder = DINOv2Encoder(size).eval()
    reference = build_vit(size).eval()
    reference.load_state_dict(encoder.vit.state_dict())
    for h, w in [(28, 28), (42, 70), (50, 33)]:  # the last is no multiple of 14: resized to 56 x 28 first
        x = torch.randn(2, 3, h, w)
        with torch.no_grad():
            ours = encoder(to_patch_multiple(x))
            theirs = reference.get_intermediate_layers(F.interpolate(x, size=(round(h / 14) * 14, round(w / 14) * 14),
                                                                     mode="bilinear", align_corners=True),
                                                       list(SIZES[size].layers), reshape=True)
        assert len(ours) == 4
        for a, b in zip(ours, theirs):
            assert a.shape == (2, encoder.embed_dim, round(h / PATCH), round(w / PATCH))
            assert torch.allclose(a, b, atol=1e-5)


def test_released_format_loads_strictly_and_a_wrong_file_is_named(tmp_path):
    torch.manual_seed(0)
    released = build_vit("tiny").state_dict()  # the released files are the plain ViT state dict
    path = tmp_path / "dinov2_tiny.pth"
    torch.save(released, path)
    cfg = load_config(None, DPT + [f"model.pretrained={path}"])
    model = build_model(cfg.model, 3)
    assert all(torch.equal(v, model.backbone.vit.state_dict()[k]) for k, v in released.items())
    wrong = tmp_path / "wrong.pth"
    torch.save({k: v for k, v in released.items() if not k.startswith("blocks.3.")}, wrong)
    cfg = load_config(None, DPT + [f"model.pretrained={wrong}"])
    with pytest.raises(SemisegError, match=f"weights file {wrong} is not a DINOv2 tiny checkpoint: .* missing keys "
                                           r"\(e.g. \['blocks.3"):
        build_model(cfg.model, 3)


def test_dpt_model_contract_at_any_size():
    torch.manual_seed(0)
    model = build_model(load_config(None, DPT).model, 5).train()
    x = torch.randn(4, 3, 50, 70)  # not multiples of 14: resized to 56 x 70 inside, logits back at 50 x 70
    assert model(x).shape == (4, 5, 50, 70)
    clean, fps = model(x, fp_branches=2)
    assert clean.shape == (4, 5, 50, 70) and len(fps) == 2 and not torch.allclose(fps[0], fps[1])
    assert model(x, comp_drop=True).shape == (4, 5, 50, 70)
    with pytest.raises(SemisegError, match="DPT head takes a DINOv2 encoder"):
        build_model(load_config(None, ["model.arch=dpt", "model.backbone=resnet18"]).model, 5)


def test_a_frozen_encoder_gets_no_gradient_and_no_optimizer_state():
    from semiseg.engine.optim import build_optimizer

    cfg = load_config(None, DPT + ["model.freeze_backbone=true", "train.optimizer=adamw"])
    model = build_model(cfg.model, 3)
    model(torch.randn(2, 3, 28, 28)).sum().backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    optimizer = build_optimizer(cfg.train, model, [(model.head_parameters(), cfg.train.lr_multi)])
    optimized = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert optimized == {id(p) for p in model.head.parameters()}


@pytest.mark.parametrize("name", ["supervised", "fixmatch", "unimatch", "unimatch_v2", "dssn", "csl", "semires"])
def test_every_method_steps_on_a_dinov2_encoder(name, tiny_scenes, tiny_store):
    from conftest import make_method

    method, model, batch = make_method(name, tiny_scenes, tiny_store, *DPT)
    out = method.training_step(batch, step=5)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())


def test_unimatch_v2_on_a_small_vit_trains_and_is_evaluated_on_the_scenes(tiny_scenes, tmp_path):
    from semiseg.engine.trainer import train

    from semiseg.engine.checkpoint import load_checkpoint

    metrics = train(tiny_cfg(tiny_scenes, "method.name=unimatch_v2", "train.iters=2", "train.eval_interval=2",
                             "train.report=false", "train.optimizer=adamw", "train.lr_multi=40", *DPT),
                    work_dir=str(tmp_path))
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [2] and evals[0]["mIoU"] == metrics["mIoU"]
    assert evals[0]["teacher_mIoU"] == metrics["teacher_mIoU"]
    ckpt = load_checkpoint(tmp_path / "latest.pth")  # the student moved, and the EMA teacher with it
    student, teacher = ckpt["model"], ckpt["method"]["teacher"]
    assert any(not torch.equal(student[k], teacher[k]) for k in student if student[k].is_floating_point())
