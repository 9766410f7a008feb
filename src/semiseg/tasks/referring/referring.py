"""Referring scenes: turn the scenes benchmark's instance maps into (image, sentence, mask) samples.

For every visible instance, candidate expressions are built from templates over its class, its
position (leftmost/rightmost/topmost/bottommost of its class, or left/right/above/below another
object), its size (largest/smallest of its class) and order ("the second top from the left"). An
expression is kept only if exactly one instance of the scene satisfies it, so every sample is
unambiguous by construction. Deterministic for a seed. Labeled ratios are drawn by *image*, as the
SemiRES paper splits RefCOCO: all referents of a labeled image are labeled.

Written next to the scenes: ``referring/refs.jsonl`` (one line per expression: image, instance id,
class, sentence, split) and ``referring/splits/<ratio>/{labeled,unlabeled}.txt`` plus ``val.txt``
(line = ref id).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

ORDINALS = ["first", "second", "third", "fourth"]
RES_RATIOS = {"1pct": 0.01, "5pct": 0.05, "10pct": 0.10}


def _centre(inst: dict) -> Tuple[float, float]:
    x0, y0, x1, y1 = inst["bbox"]
    return (x0 + x1) / 2, (y0 + y1) / 2


def candidates(target: dict, scene: List[dict], names: List[str]) -> List[Tuple[str, Callable[[dict], bool]]]:
    """(sentence, predicate) pairs describing ``target``; the predicate says which instances fit the words."""
    cls = names[target["class"]]
    same = lambda i: i["class"] == target["class"]  # noqa: E731
    cx = _centre(target)[0]
    out: List[Tuple[str, Callable[[dict], bool]]] = [(f"the {cls}", same)]
    peers = [i for i in scene if same(i)]

    def extreme(key, sign, word, margin):
        """``word`` fits only if the target beats every other instance of its class by ``margin``."""
        others = [key(i) for i in peers if i is not target]
        if not others or all(sign * (key(target) - v) >= margin for v in others):
            out.append((f"the {word} {cls}", lambda i, t=target: i is t))

    extreme(lambda i: -_centre(i)[0], 1, "leftmost", 4)
    extreme(lambda i: _centre(i)[0], 1, "rightmost", 4)
    extreme(lambda i: -_centre(i)[1], 1, "uppermost", 4)
    extreme(lambda i: _centre(i)[1], 1, "lowest", 4)
    extreme(lambda i: np.log(i["pixels"]), 1, "largest", np.log(1.3))
    extreme(lambda i: -np.log(i["pixels"]), 1, "smallest", np.log(1.3))
    xs = sorted(_centre(i)[0] for i in peers)
    k = xs.index(cx)
    if 0 < k < len(ORDINALS) and min(abs(x - cx) for j, x in enumerate(xs) if j != k) >= 4:
        out.append((f"the {ORDINALS[k]} {cls} from the left", lambda i, t=target: i is t))
    for other in scene:
        if other is target:
            continue
        ox, oy = _centre(other)
        oname = names[other["class"]]
        for word, test in (("left of", lambda a, b: _centre(a)[0] < _centre(b)[0] - 4),
                           ("right of", lambda a, b: _centre(a)[0] > _centre(b)[0] + 4),
                           ("above", lambda a, b: _centre(a)[1] < _centre(b)[1] - 4),
                           ("below", lambda a, b: _centre(a)[1] > _centre(b)[1] + 4)):
            if test(target, other):
                # "the X left of the Y": some Y of that class must stand where the words say
                out.append((f"the {cls} {word} the {oname}",
                            lambda i, t=test, c=other["class"]: same(i) and any(t(i, o) for o in scene
                                                                               if o["class"] == c and o is not i)))
    return out


def unambiguous(target: dict, scene: List[dict], names: List[str], rng: np.random.Generator) -> Optional[str]:
    """A random expression that selects exactly ``target`` in its scene, or None if none does."""
    good = [s for s, pred in candidates(target, scene, names) if [i for i in scene if pred(i)] == [target]]
    return good[int(rng.integers(len(good)))] if good else None


def generate_referring(root: str | Path, seed: int = 0, min_pixels: int = 30) -> Dict[str, int]:
    root = Path(root)
    names = json.loads((root / "meta.json").read_text())["class_names"]
    rng = np.random.default_rng([seed, 3])
    out = root / "referring"
    refs = []
    for line in (root / "scenes.jsonl").read_text().splitlines():
        rec = json.loads(line)
        scene = [i for i in rec["instances"] if i["pixels"] >= min_pixels]
        for inst in scene:
            sentence = unambiguous(inst, scene, names, rng)
            if sentence:
                refs.append({"ref_id": len(refs), "image": f"images/{rec['name']}",
                             "instances": f"instances/{rec['name']}", "instance_id": inst["id"],
                             "class": inst["class"], "sentence": sentence, "split": rec["split"]})
    (out / "splits").mkdir(parents=True, exist_ok=True)
    (out / "refs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in refs))
    train_images = sorted({r["image"] for r in refs if r["split"] == "train"})
    order = np.random.default_rng([seed, 4]).permutation(len(train_images))
    for ratio, frac in RES_RATIOS.items():
        labeled_images = {train_images[i] for i in order[: max(1, int(round(len(train_images) * frac)))]}
        for kind, keep in (("labeled", True), ("unlabeled", False)):
            ids = [str(r["ref_id"]) for r in refs if r["split"] == "train" and (r["image"] in labeled_images) == keep]
            (out / "splits" / ratio).mkdir(parents=True, exist_ok=True)
            (out / "splits" / ratio / f"{kind}.txt").write_text("\n".join(ids) + "\n")
    (out / "splits" / "val.txt").write_text("\n".join(str(r["ref_id"]) for r in refs if r["split"] == "val") + "\n")
    return {"refs": len(refs), "train_images": len(train_images)}
