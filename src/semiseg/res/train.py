"""``semiseg res train CONFIG``: referring segmentation, supervised or with the SemiRES recipe.

    burn-in (burn_in steps):  L = L_sup                       (teacher copied from the student at its end)
    then (method semires):    L = sup_weight * L_sup + L_u    (IOM script: sup_weight 10; CPI script: 1)

L_sup: CE with class weights [0.9, 1.1] (background, referent), as SemiRES. The EMA teacher (0.9996,
eval mode, no_grad) predicts the weak view (resize; no flip: sentences say left and right); its mask is
refined by IOM or CPI against the image's proposals, PWA weights where nothing matches. The strong view
(colour jitter in [0.75, 1.25], hue 0.25, p 0.5) learns it. L_u averages the refined samples' CE (class
weights) and the PWA samples' weighted CE, each group a mean over its pixels, as the authors' code.
``method: supervised`` trains on the labeled referents only; ``teacher_student`` skips refinement (every
sample is a PWA sample). Evaluation on the teacher: oIoU (model selection), mIoU, precision@0.5-0.9.
"""
from __future__ import annotations

import json
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from PIL import Image

from semiseg.config import ModelConfig, _check_keys, _deep_merge, parse_overrides, read_yaml
from semiseg.data.augment import SEMIRES_STRONG, strong_photometric
from semiseg.engine.checkpoint import save_checkpoint
from semiseg.engine.optim import poly_lr, set_lr
from semiseg.engine.precision import cpu_has_native_bf16
from semiseg.errors import SemisegError
from semiseg.methods.base import IMAGENET
from semiseg.methods.teacher import EMATeacher
from semiseg.models import build_backbone
from semiseg.pseudo.refiners import refine_binary
from semiseg.res.datasets import load_sample, res_splits
from semiseg.res.metrics import ResMetrics
from semiseg.res.model import ReferringSegmenter
from semiseg.res.text import build_text_encoder

MEAN, STD = IMAGENET


@dataclass
class ResConfig:
    work_dir: str = "runs/res/default"
    dataset: str = "scenes"  # scenes (`semiseg data referring` on a scenes benchmark) | refcoco (+, G-Ref)
    root: str = "data/scenes"
    ratio: str = "10pct"  # the split folder: 1pct | 5pct | 10pct labeled images
    refs: str = ""  # refcoco: the refs pickle, e.g. refcoco/refs(unc).p (relative to root)
    instances: str = ""  # refcoco: COCO's instances JSON, e.g. refcoco/instances.json
    images: str = ""  # refcoco: the COCO train2014 image folder, e.g. train2014
    val_split: str = "val"  # refcoco: the refs split evaluated (val, testA, testB; G-Ref: val, test)
    proposal_store: str = ""  # a folder written by `semiseg proposals` over the training images (method semires)
    method: str = "semires"  # supervised | teacher_student | semires
    refiner: str = "iom"  # iom | cpi
    text: str = "builtin"  # builtin | minilm
    model: ModelConfig = field(default_factory=lambda: ModelConfig(backbone="efficientnet_lite0", pretrained="imagenet"))
    size: int = 96
    batch_size: int = 8
    iters: int = 1500
    burn_in: int = 500
    lr: float = 1e-3
    text_lr: float = 0.0  # learning rate of the text encoder (0 = lr); a pretrained one wants far less (SemiRES: 5e-5)
    weight_decay: float = 0.01
    ema_momentum: float = 0.9996
    sup_weight: float = 10.0
    seed: int = 0
    eval_interval: int = 500
    amp: bool = True  # bf16 autocast on CPUs with native bf16, as the main engine
    threads: int = 0  # torch intra-op threads (0 = torch's choice)


def semires_ce(logits: torch.Tensor, target: torch.Tensor, class_w: torch.Tensor) -> torch.Tensor:
    """SemiRES's CE: per-pixel CE times its class weight, then a plain mean over pixels (not PyTorch's
    weighted mean, which divides by the sum of the weights: a scale change of about 6% here)."""
    return F.cross_entropy(logits, target, weight=class_w, reduction="none").mean()


def load_res_config(path, overrides) -> ResConfig:
    user = _deep_merge(read_yaml(path) if path else {}, parse_overrides(overrides))
    _check_keys(user, ResConfig(), str(path or "overrides"))
    cfg = OmegaConf.merge(OmegaConf.structured(ResConfig), user)
    if cfg.lr <= 0:  # the text encoder's rate is a multiple of it (lr_scale)
        raise SemisegError(f"{path or 'overrides'}: lr must be positive, got {cfg.lr}")
    return cfg


def _tensor(img: np.ndarray, size: int) -> torch.Tensor:
    x = torch.from_numpy(np.array(Image.fromarray(img).resize((size, size), Image.BILINEAR))).permute(2, 0, 1)
    return ((x.float() / 255) - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)


def _nearest(masks: np.ndarray, size: int) -> torch.Tensor:
    """(K, H, W) masks -> (K, size, size) by one nearest resize, shared by referent masks and proposals so
    that both land on the same pixels."""
    if not len(masks):
        return torch.zeros(0, size, size)
    stack = torch.from_numpy(np.ascontiguousarray(masks)).unsqueeze(1).float()
    return F.interpolate(stack, size=(size, size), mode="nearest-exact")[:, 0]


class ResTrainer:
    def __init__(self, cfg: ResConfig) -> None:
        self.cfg = c = cfg
        if c.threads:
            torch.set_num_threads(c.threads)
        torch.manual_seed(c.seed)
        self.rng = random.Random(c.seed)
        self.labeled, self.unlabeled, self.val = res_splits(c.dataset, c.root, c.ratio, c.refs, c.instances,
                                                            c.images, c.val_split)
        self.store = None
        if c.method == "semires":
            from semiseg.pseudo.store import ProposalStore

            if not c.proposal_store:
                raise SemisegError("method semires needs proposals: `semiseg proposals` over the training images, "
                                   "then proposal_store=DIR")
            self.store = ProposalStore(c.proposal_store)
            self.store.verify(sorted({str(s.image.relative_to(Path(c.root))) for s in self.unlabeled}), "the unlabeled refs")
        self.sentences = sorted({s.sentence for s in self.labeled + self.unlabeled})  # rebuilds the vocabulary
        sentences = self.sentences
        self.model = ReferringSegmenter(build_backbone(c.model), build_text_encoder(c.text, sentences))
        self.teacher = EMATeacher(self.model, c.ema_momentum)
        text = list(self.model.text.parameters())
        ids = {id(p) for p in text}
        rest = [p for p in self.model.parameters() if id(p) not in ids]
        text_scale = c.text_lr / c.lr if c.text_lr else 1.0  # the engine's group convention: lr = schedule x lr_scale
        self.opt = torch.optim.AdamW([{"params": rest, "lr": c.lr, "lr_scale": 1.0},
                                      {"params": text, "lr": c.lr * text_scale, "lr_scale": text_scale}],
                                     weight_decay=c.weight_decay)
        self.class_w = torch.tensor([0.9, 1.1])

    def autocast(self):
        fast = self.cfg.amp and cpu_has_native_bf16()  # emulated bf16 is several times slower than fp32
        return torch.autocast("cpu", dtype=torch.bfloat16) if fast else nullcontext()

    def batch(self, samples, with_props: bool = False) -> Dict[str, object]:
        chosen = [samples[self.rng.randrange(len(samples))] for _ in range(self.cfg.batch_size)]
        size, root = self.cfg.size, Path(self.cfg.root)  # plain values: OmegaConf lookups are slow per sample
        imgs, masks, props = [], [], []
        for s in chosen:
            img, m = load_sample(s)
            imgs.append(_tensor(img, size))
            masks.append(_nearest(m[None], size)[0].long())
            if with_props:
                props.append(_nearest(self.store.get(str(s.image.relative_to(root))), size).bool())
        return {"x": torch.stack(imgs), "y": torch.stack(masks), "text": [s.sentence for s in chosen], "props": props}

    def unsup_loss(self, b: Dict[str, object]) -> Dict[str, torch.Tensor]:
        with torch.no_grad(), self.autocast():
            self.teacher.eval()
            p_fg = self.teacher(b["x"], b["text"]).float().softmax(1)[:, 1]
        pls, ws, refined = [], [], []
        for i in range(p_fg.shape[0]):
            if self.cfg.method == "semires":
                pl, w, ok = refine_binary(p_fg[i], b["props"][i], self.cfg.refiner)
            else:
                pl, w, ok = refine_binary(p_fg[i], torch.zeros(0, *p_fg.shape[1:], dtype=torch.bool))
            pls.append(pl), ws.append(w), refined.append(ok)
        pl, w, refined = torch.stack(pls), torch.stack(ws), torch.tensor(refined)
        strong = strong_photometric(b["x"], MEAN, STD, **SEMIRES_STRONG)
        with self.autocast():
            pred = self.model(strong, b["text"]).float()
        groups = []
        if refined.any():
            groups.append(semires_ce(pred[refined], pl[refined], self.class_w))
        if (~refined).any():
            groups.append((F.cross_entropy(pred[~refined], pl[~refined], reduction="none") * w[~refined]).mean())
        return {"loss_u": sum(groups) / len(groups), "miss_rate": (~refined).float().mean()}

    def evaluate(self, net) -> Dict[str, float]:
        net.eval()
        m = ResMetrics()
        with torch.no_grad(), self.autocast():
            for i in range(0, len(self.val), 32):
                chunk = self.val[i : i + 32]
                pairs = [load_sample(s) for s in chunk]
                x = torch.stack([_tensor(img, self.cfg.size) for img, _ in pairs])
                logits = net(x, [s.sentence for s in chunk]).float()
                for (_, mask), lg in zip(pairs, logits):
                    up = F.interpolate(lg[None], size=mask.shape, mode="bilinear", align_corners=False)
                    m.update(up.argmax(1).bool(), torch.from_numpy(mask)[None])
        return m.compute()

    def run(self) -> Dict[str, float]:
        c, work = self.cfg, Path(self.cfg.work_dir)
        work.mkdir(parents=True, exist_ok=True)
        (work / "config.yaml").write_text(OmegaConf.to_yaml(c))
        log = open(work / "metrics.jsonl", "w")  # no resume here: a rerun starts over
        final: Dict[str, float] = {}
        started = time.perf_counter()
        for step in range(c.iters):
            set_lr(self.opt, poly_lr(c.lr, step, c.iters, 0.9))
            self.model.train()
            b = self.batch(self.labeled)
            with self.autocast():
                logits = self.model(b["x"], b["text"]).float()
            loss_sup = semires_ce(logits, b["y"], self.class_w)
            out = {"loss_sup": loss_sup}
            loss = loss_sup
            if c.method != "supervised" and step >= c.burn_in:
                out.update(self.unsup_loss(self.batch(self.unlabeled, with_props=self.store is not None)))
                loss = c.sup_weight * loss_sup + out["loss_u"]
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.teacher.follow(self.model, step, copy_until=c.burn_in)
            if (step + 1) % c.eval_interval == 0 or step + 1 == c.iters:
                s_per_step = (time.perf_counter() - started) / (step + 1)  # wall clock, earlier evaluations included
                net = self.model if c.method == "supervised" else self.teacher
                final = {f"eval_{k}": v for k, v in self.evaluate(net).items()}
                row = {"step": step + 1, **{k: float(v.detach()) for k, v in out.items()}, **final,
                       "s_per_step": s_per_step}
                log.write(json.dumps(row) + "\n")
                log.flush()
                print(json.dumps(row), flush=True)
        save_checkpoint(work / "latest.pth", {"model": self.model.state_dict(), "method": {"teacher":
                        self.teacher.module.state_dict()}, "config": OmegaConf.to_container(OmegaConf.structured(c)),
                        "sentences": self.sentences, "task": "res"})
        return final


__all__: List[str] = ["ResConfig", "ResTrainer", "load_res_config"]
