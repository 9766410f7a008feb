"""One contract per registry: every registered name of every registry (tasks, methods of every task,
selectors, refiners, proposal generators, backbones) goes through the same test, so a new plug-in is
covered by registering it, and a registry grown without its contract case fails here."""
import copy
import functools
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from semiseg.cli import run
from semiseg.data.loaders import Batch
from semiseg.errors import SemisegError
from semiseg.methods import METHODS
from semiseg.models import backbone_names, build_model
from semiseg.pseudo.proposals import PROPOSALS, build_proposals
from semiseg.pseudo.refiners import REFINERS, build_refiner, pwa_weight
from semiseg.pseudo.selectors import SELECTORS, build_selector, wanted_shares
from semiseg.tasks import TASKS, build_task

from conftest import built_method, res_cfg, tiny_cfg


# --- tasks ----------------------------------------------------------------------------------------------------
def task_cfg(name, request, *extra):
    """A tiny configuration of each registered task (a new task adds its line here, or the contract fails)."""
    if name == "semantic":
        return tiny_cfg(request.getfixturevalue("tiny_scenes"), *extra)
    if name == "res":
        return res_cfg(request.getfixturevalue("res_scenes"), *extra)
    raise AssertionError(f"task {name!r} has no contract configuration: add it to task_cfg")


INPUTS = {"text": "the leftmost top"}  # a value for each extra input a task's predictor may read


@pytest.mark.parametrize("name", TASKS.names())
def test_task_contract(name, request, tmp_path, capsys):
    """Through the task alone: a model that learns, training that logs the task's headline score and writes a
    checkpoint naming the task; predict, eval, export, report and a suite table from that checkpoint."""
    task_cls = TASKS.get(name)
    cfg = task_cfg(name, request, "train.iters=4", "train.eval_interval=4", "train.report=false",
                   "method.name=supervised", "train.seed=1")
    task = build_task(cfg)
    assert isinstance(task, task_cls) and len(task.class_names) == len(task.palette) >= 2

    # the model learns the task's own batches: ten steps on one batch lower its loss
    torch.manual_seed(0)
    method, model, batch = built_method(cfg)
    assert set(batch) <= set(Batch.__annotations__), "a batch key the Batch type does not declare"
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for step in range(10):
        loss = method.training_step(batch, step)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.8 * losses[0], losses

    from semiseg.engine.trainer import train

    work = tmp_path / "suite" / "sup" / "seed0"
    final = train(cfg, work_dir=str(work))
    assert task_cls.key in final
    state = torch.load(work / "latest.pth", map_location="cpu", weights_only=False)
    assert state["task"] == name
    torch.manual_seed(cfg.train.seed)  # the trainer's initial weights: the same seed, the same model
    initial = build_task(cfg).build_model().state_dict()
    assert any(not torch.equal(v, state["model"][k]) for k, v in initial.items() if v.dtype.is_floating_point), \
        "training changed no weight"

    # predict: the task says what its model reads besides the image; refused without it, or with what it does not read
    from semiseg.inference import load

    predictor = load(work / "latest.pth")
    assert isinstance(predictor, task_cls.Predictor)
    img_path = sorted(Path(cfg.data.root).glob("images/val_*.png"))[0]
    extra = [f"--{k}={INPUTS[k]}" for k in predictor.inputs]
    assert run(["predict", str(work / "latest.pth"), "--input", str(img_path), "--output", str(tmp_path / "pred"),
                *extra]) == 0
    mask = np.asarray(Image.open(tmp_path / "pred" / "index" / img_path.name))
    assert mask.shape == np.asarray(Image.open(img_path)).shape[:2] and mask.max() < len(task.class_names)
    for sub in ("color", "overlay"):
        assert (tmp_path / "pred" / sub / img_path.name).is_file()
    for k in predictor.inputs:
        with pytest.raises(SemisegError, match=f"with --{k}"):
            run(["predict", str(work / "latest.pth"), "--input", str(img_path), "--output", str(tmp_path / "p2")])
    if not predictor.inputs:
        with pytest.raises(SemisegError, match="--text is not read"):
            run(["predict", str(work / "latest.pth"), "--input", str(img_path), "--output", str(tmp_path / "p2"),
                 "--text", "a sentence"])

    # eval prints the headline score; export runs at several sizes and matches eager
    capsys.readouterr()
    assert run(["eval", str(work / "latest.pth"), "eval.max_images=4"]) == 0
    assert task_cls.key in capsys.readouterr().out
    assert run(["export", str(work / "latest.pth"), "--format", "onnx"]) == 0
    assert "largest difference from eager" in capsys.readouterr().out and (work / "latest.onnx").is_file()

    # report: the headline curve and the task's own sections
    from semiseg.report.build import build_report

    page = build_report(work).read_text()
    assert f"validation {task_cls.key}" in page and 'id="images"' in page

    # a suite of this run: the task's score columns, the headline's gain over a baseline
    from semiseg.bench.tables import table

    text = table({"name": "s", "seeds": [0], "runs": [{"name": "sup"}]}, tmp_path / "suite")
    headline = task_cls.headline(final)
    cols = task_cls.table_scores(final)
    assert "| run | seeds | " + " | ".join(cols) + " | gain |" in text
    assert f"| sup | 1 | {next(iter(cols.values())):.2f} |" in text and np.isfinite(headline)


# --- methods: every method of every task ---------------------------------------------------------------------
TEACHERS = {"dssn", "unimatch_v2", "semires", "semires_res"}  # the methods whose authors keep an EMA teacher
CASES = [(name, task, ()) for name in METHODS.names() for task in METHODS.get(name).tasks] + [
    ("unimatch", "semantic", ("method.refiner={name: cpi}",)),  # a refiner after any selector
    ("csl", "semantic", ("method.selector={name: class_aware}",)),  # any selector in any method
    ("unimatch", "semantic", ("method.selector={name: csl}", "method.mix=roll")),
]
if importlib.util.find_spec("dinov2"):  # any semantic method on UniMatch V2's network (a tiny DINOv2 + DPT)
    CASES += [(name, "semantic", ("model.arch=dpt", "model.backbone=dinov2_tiny")) for name in METHODS.names()
              if "semantic" in METHODS.get(name).tasks]


def method_cfg(name, task, request, *extra):
    burn_in = ["method.burn_in_steps=1"] if "burn_in_steps" in METHODS.get(name).Config.__dataclass_fields__ else []
    store = [] if task != "semantic" else [f"data.proposal_store={request.getfixturevalue('tiny_store')}"]
    return task_cfg(task, request, f"method.name={name}", *store, *burn_in, *extra)


@pytest.mark.parametrize("name,task,extra", CASES)
def test_method_contract(name, task, extra, request):
    cfg = method_cfg(name, task, request, *extra)
    method, model, batch = built_method(cfg)
    assert set(batch) <= set(Batch.__annotations__), "a batch key the Batch type does not declare"
    assert type(method.cfg) is METHODS.get(name).Config  # its own typed settings, not the config node
    out = method.training_step(batch, step=5)  # past every warm-up: DSSN's strong-view losses are on
    assert torch.isfinite(out["loss"]) and out["loss"].requires_grad
    per_class = lambda k: k.rpartition("_c")[2].isdigit()  # noqa: E731 (NaN = no pixel of that class)
    assert all(torch.isfinite(torch.as_tensor(v)) for k, v in out.items() if not per_class(k))
    out["loss"].backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads), "no gradient reached the student"
    teacher = method.teacher
    assert (teacher is not None) == (name in TEACHERS)
    if teacher is not None:
        assert all(p.grad is None for p in teacher.parameters()), "gradient reached the teacher"
        before = copy.deepcopy(teacher.module.state_dict())
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1)
        student = model.state_dict()
        method.after_step(step=5)
        m = teacher.rate(5)
        for k, v in teacher.module.state_dict().items():
            if v.dtype.is_floating_point:  # t <- m t + (1 - m) s, parameters and buffers
                assert torch.allclose(v, m * before[k] + (1 - m) * student[k], atol=1e-6), k
    # state round trip: a teacher's state is all a method holds beyond the student
    state = method.state_dict()
    assert set(state) == ({"teacher"} if teacher is not None else set())
    other, _, _ = built_method(cfg)
    other.load_state_dict(state)
    for k, v in state.get("teacher", {}).items():
        assert torch.equal(v, other.teacher.module.state_dict()[k])
    if other.teacher is not None:  # the resume path: a teacher of another model names the file
        with pytest.raises(SemisegError, match=r"run/latest.pth: its teacher weights do not fit"):
            other.load_state_dict({"teacher": {k: v for k, v in list(state["teacher"].items())[1:]}}, "run/latest.pth")


# --- selectors: select(probs, ignore) -> (pl, weight) ---------------------------------------------------------
@pytest.mark.parametrize("name", SELECTORS.names())
def test_selector_contract(name):
    torch.manual_seed(0)
    probs = (torch.randn(2, 4, 16, 16) * 3).softmax(1)
    probs[:, :, :, 8:] = torch.nn.functional.one_hot(probs[:, :, :, 8:].argmax(1), 4).permute(0, 3, 1, 2).float()
    ignore = torch.zeros(2, 16, 16, dtype=torch.bool)
    ignore[:, :3] = True
    select = build_selector({"name": name})
    if wanted_shares(select):  # the labeled class shares, which a method passes at each call
        select = functools.partial(select, prior=[0.4, 0.2, 0.2, 0.2])
    pl, weight = select(probs, ignore)
    assert pl.shape == weight.shape == (2, 16, 16) and pl.dtype == torch.long and weight.dtype.is_floating_point
    assert weight.min() >= 0 and weight.max() <= 1 and (weight[ignore] == 0).all()
    assert torch.equal(pl[weight > 0], probs.argmax(1)[weight > 0])  # a selector keeps or drops, never relabels
    assert (weight[:, 3:, 8:] > 0).float().mean() > 0.5, "most certain pixels dropped"


# --- refiners: refine(probs, proposals, ignore) -> (pl, weight) -----------------------------------------------
@pytest.mark.parametrize("name", REFINERS.names())
def test_refiner_contract(name):
    torch.manual_seed(0)
    probs = (torch.randn(2, 3, 12, 12) * 2).softmax(1)
    ignore = torch.zeros(2, 12, 12, dtype=torch.bool)
    ignore[:, 0] = True
    refine = build_refiner({"name": name})
    # no proposal matches anything: every class falls back to the teacher's labels with PWA weights
    pl, weight = refine(probs, [torch.zeros(0, 12, 12, dtype=torch.bool)] * 2, ignore)
    conf, arg = probs.max(1)
    assert refine.miss_rate == 1.0 and torch.equal(pl, arg)
    assert torch.allclose(weight, pwa_weight(conf) * ~ignore)
    # proposals that are exactly the teacher's class regions leave its labels as they are
    props = [torch.stack([(arg[b] == k) & ~ignore[b] for k in range(3)]) for b in range(2)]
    pl, weight = refine(probs, props, ignore)
    assert torch.equal(pl[~ignore], arg[~ignore]) and (weight[ignore] == 0).all()
    assert weight.min() >= 0 and weight.max() <= 1


# --- proposal generators: propose(image) -> (K, H, W) bool ----------------------------------------------------
def proposal_case(name, tmp_path):
    """(generator spec, its input, the image's size) for each registered generator."""
    rng = np.random.default_rng(0)
    image = np.zeros((24, 32, 3), np.uint8)
    image[4:14, 6:20] = (200, 40, 40)
    image[16:22, 20:30] = (40, 200, 40)
    image += rng.integers(0, 8, image.shape, dtype=np.uint8)
    if name == "superpixel":
        return {"name": name}, image
    if name == "sam":  # the adapter around any generator with SAM's generate(); the package itself is not here
        masks = [{"segmentation": np.pad(np.ones((10, 14), bool), ((4, 10), (6, 12))), "area": 140},
                 {"segmentation": np.zeros((24, 32), bool), "area": 0}]
        fake = type("Generator", (), {"generate": lambda self, img: masks})()
        return {"name": name, "generator": fake, "min_area": 1}, image
    if name == "instances":
        (tmp_path / "images").mkdir()
        (tmp_path / "instances").mkdir()
        ids = np.zeros((24, 32), np.uint8)
        ids[4:14, 6:20], ids[16:22, 20:30] = 1, 2
        Image.fromarray(image).save(tmp_path / "images" / "a.png")
        Image.fromarray(ids).save(tmp_path / "instances" / "a.png")
        return {"name": name}, tmp_path / "images" / "a.png"
    raise AssertionError(f"proposal generator {name!r} has no contract case: add it to proposal_case")


@pytest.mark.parametrize("name", PROPOSALS.names())
def test_proposal_generator_contract(name, tmp_path):
    spec, source = proposal_case(name, tmp_path)
    masks = build_proposals(spec)(source)
    assert masks.dtype == bool and masks.ndim == 3 and masks.shape[1:] == (24, 32) and len(masks) >= 1
    assert masks.reshape(len(masks), -1).any(1).all(), "an empty proposal"
    # the object at rows 4-14, columns 6-20 is covered by one proposal to at least half (IoU)
    obj = np.zeros((24, 32), bool)
    obj[4:14, 6:20] = True
    ious = [(m & obj).sum() / (m | obj).sum() for m in masks]
    assert max(ious) >= 0.5, ious


def test_sam_without_its_package_says_how_to_get_it():
    if importlib.util.find_spec("segment_anything"):
        pytest.skip("segment-anything is installed here")
    with pytest.raises(SemisegError, match="needs the segment-anything package"):
        build_proposals({"name": "sam", "checkpoint": "sam.pth"})


# --- backbones: every model.backbone builds a model whose logits are at the input's size ----------------------
@pytest.mark.parametrize("name", backbone_names())
def test_backbone_contract(name):
    from semiseg.configure import load_config

    if name.startswith("dinov2_") and not importlib.util.find_spec("dinov2"):
        pytest.skip("the dinov2 package (model code) is not installed")
    vit = name.startswith("dinov2_")
    cfg = load_config(None, [f"model.backbone={name}", "model.pretrained=", "model.width=0.25",
                             *(["model.arch=dpt"] if vit else [])])
    torch.manual_seed(0)
    model = build_model(cfg.model, 3).eval()
    x = torch.randn(1, 3, 42, 56)
    feats = model.backbone(x) if not vit else None
    if feats is not None:  # CNN encoders: strides 4, 8, 16 and 32 with the channels they declare
        assert [f.shape[1] for f in feats] == list(model.backbone.channels)
        assert [f.shape[-1] for f in feats][0] == 56 // 4
    logits = model(x)
    assert logits.shape == (1, 3, 42, 56) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())
