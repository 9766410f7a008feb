"""The typed schema: defaults, choices and bounds of every key, and the readers of its layers (YAML files
with ``_base_``, ``a.b=c`` overrides). It imports nothing of the rooms it describes: loading a config
against the registries (methods, selectors, presets...) is ``semiseg.configure``'s, above them.

The ``method`` section is open here and checked against the chosen method's own ``Config`` dataclass
there, so every method validates its own knobs.
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from semiseg.errors import SemisegError


def choice(default: Any, *others: Any) -> Any:
    """A field that takes one of a fixed set of values (the default first); checked when a config loads."""
    return field(default=default, metadata={"choices": (default, *others)})


def bounded(default: Any, lo: Optional[float] = None, hi: Optional[float] = None, ordered: bool = False,
            length: Optional[int] = None, item_length: Optional[int] = None, min_length: Optional[int] = None) -> Any:
    """A finite number, or each number of a list (of lists), within [lo, hi] (None: unbounded on that side);
    ``ordered``: a list of two that does not decrease (a range); ``length``: the list's length;
    ``item_length``: each inner list's; ``min_length``: the fewest items. Checked when a config loads, like the
    choices."""
    meta = {"bounds": (lo, hi), "ordered": ordered, "length": length, "item_length": item_length,
            "min_length": min_length}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    dataset: str = "scenes"  # scenes | voc | cityscapes | coco | folder (presets in data/presets.py; checked there)
    root: str = "data/scenes"
    split: str = "1_16"  # folder under <root>/splits holding labeled.txt / unlabeled.txt
    labeled: str = ""  # explicit split files (relative to root) override the preset's
    unlabeled: str = ""
    val: str = ""
    num_classes: int = bounded(0, 0)  # 0 = the preset's
    class_names: List[str] = field(default_factory=list)
    palette: List[List[int]] = bounded([], 0, 255, item_length=3)  # an RGB triple per class
    ignore_index: int = bounded(255, 0, 255)  # masks are uint8
    resize: int = bounded(0, 0)  # resize the long side to this before any geometry (0 = keep); eval maps back
    crop_size: int = bounded(64, 1)
    scale_range: List[float] = bounded([0.5, 2.0], 1e-3, ordered=True)  # [low, high] random rescale
    flip: bool = True
    mean: List[float] = bounded([0.485, 0.456, 0.406], length=3)  # RGB, in [0, 1] units
    std: List[float] = bounded([0.229, 0.224, 0.225], 1e-8, length=3)
    batch_size: int = bounded(8, 1)  # per process, labeled; unlabeled batches have the same size
    num_workers: int = bounded(2, 0)
    proposal_store: str = ""  # a folder written by `semiseg proposals` (the masks of the unlabeled split), for refiners
    hidden_labels: bool = False  # load the unlabeled split's masks for diagnostics only (never a loss)
    on_error: str = choice("stop", "skip")  # what a corrupt sample does: stop the run, or be skipped and counted
    # task res, dataset refcoco (RefCOCO, RefCOCO+, G-Ref share the format), paths relative to root:
    refs: str = ""  # the refs pickle, e.g. refcoco/refs(unc).p
    instances: str = ""  # COCO's instances JSON, e.g. refcoco/instances.json
    images: str = ""  # the COCO train2014 image folder, e.g. train2014
    val_split: str = "val"  # the refs split evaluated (val, testA, testB; G-Ref: val, test)


@dataclass
class ModelConfig:
    arch: str = choice("deeplabv3plus", "dpt")  # dpt: UniMatch V2's head, with a dinov2_* backbone
    backbone: str = "resnet18"  # resnet18/34/50/101 | efficientnet_lite0/1/2 | dinov2_small/base/large (dpt)
    width: float = bounded(1.0, 1e-3)  # channel multiplier for ResNets (0.5 = half width for CPU)
    stem: str = choice("deep", "standard")  # deep (3x conv3x3, the field's checkpoints) | standard (7x7)
    output_stride: int = choice(16, 8, 32)
    dilations: List[int] = bounded([6, 12, 18], 1)
    head_channels: int = bounded(256, 1)
    low_level_channels: int = bounded(48, 1)
    pretrained: str = ""  # "" | imagenet (EfficientNet-Lite0's shipped weights) | path to a file
    fp_dropout: float = bounded(0.5, 0.0, 0.999)
    aspp_dropout: float = bounded(0.0, 0.0, 0.999)  # the authors' ASPP has none; 0.5: torchvision's, after projection
    freeze_backbone: bool = False  # UniMatch V2's lock_backbone: train the head only (less memory and time)
    text: str = choice("builtin", "minilm")  # task res: the expression encoder (tasks/referring/text.py)
    # DINOv2 speed options (the weights are the same either way): attention through the fused
    # scaled_dot_product_attention (sdpa), the package's explicit softmax (explicit: UniMatch V2 without
    # xFormers), or auto: fused on CUDA and for long sequences on a CPU (models/dinov2.py); and activation
    # checkpointing of the ViT blocks, for the memory a long crop runs out of
    attention: str = choice("auto", "sdpa", "explicit")
    grad_checkpoint: bool = False


@dataclass
class TrainConfig:
    iters: int = bounded(2000, 0)  # optimizer steps
    epochs: int = bounded(0, 0)  # > 0: iters = epochs x steps per epoch (a pass over the unlabeled set, as UniMatch)
    optimizer: str = choice("sgd", "adamw")
    lr: float = bounded(0.001, 0.0)
    lr_multi: float = bounded(10.0, 0.0)  # head LR = lr * lr_multi
    text_lr: float = bounded(0.0, 0.0)  # task res: the text encoder's LR (0 = lr); a pretrained one wants less (5e-5)
    weight_decay: float = bounded(1e-4, 0.0)
    momentum: float = bounded(0.9, 0.0, 1.0)
    betas: List[float] = bounded([0.9, 0.999], 0.0, 0.999999)
    poly_power: float = bounded(0.9, 0.0)
    criterion: str = choice("ce", "ohem")
    class_weights: List[float] = bounded([], 0.0)  # per-class CE weights, plain mean (SemiRES: [0.9, 1.1])
    # "median": labeled-loss weights median(f)/f_c from the labeled masks' class pixel shares f (SegNet's
    # median-frequency balancing), so that rare classes weigh more; "none": class_weights as given
    class_balance: str = choice("none", "median")
    ohem_thresh: float = bounded(0.7, 0.0, 1.0)
    ohem_min_kept: int = bounded(100000, 0)
    amp: str = choice("auto", "bf16", "fp16", "none")  # auto: bf16 on CPUs with native bf16, else fp32; CUDA bf16/fp16
    channels_last: bool = False
    compile: bool = False  # torch.compile the student's forward (its first steps compile; then faster on GPU)
    accum_steps: int = bounded(1, 1)
    seed: int = bounded(0, 0, 2**32 - 1)
    deterministic: bool = False
    threads: int = bounded(0, 0)  # torch intra-op threads on CPU (0 = torch's choice)
    base_batch_size: int = bounded(0, 0)  # the reference global batch the config's LR was tuned for (0 = unset)
    log_interval: int = bounded(50, 1)
    eval_interval: int = bounded(500, 0)  # steps; 0 = once per epoch
    ckpt_interval: int = bounded(500, 0)  # steps; 0 = once per epoch
    max_bad_steps: int = bounded(5, 1)  # consecutive NaN/Inf losses before the run stops
    report: bool = True  # write work_dir/report.html at the end (semiseg report)


@dataclass
class EvalConfig:
    mode: str = choice("whole", "slide")
    window: int = bounded(0, 0)  # slide window (0 = data.crop_size)
    batch_size: int = bounded(16, 1)
    max_images: int = bounded(0, 0)  # 0 = all; for quick looks


@dataclass
class Config:
    work_dir: str = "runs/default"
    task: str = "semantic"  # a registered task (semiseg.tasks): semantic, or res (referring expressions)
    recipe: str = ""  # a named recipe (semiseg recipes): its overrides come after the file, before the command line's
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    method: Dict[str, Any] = field(default_factory=lambda: {"name": "supervised"})
    # how `semiseg proposals` makes masks: {name: superpixel|sam, **options} (see pseudo/proposals.py)
    proposals: Dict[str, Any] = field(default_factory=lambda: {"name": "superpixel"})


class YamlLoader(yaml.SafeLoader):
    """YAML without YAML 1.1's underscores in numbers: the field names splits ``1_16``, not 116.

    Also reads ``1e-3`` as a float (plain YAML 1.1 needs ``1.0e-3``)."""


_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
YamlLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag not in (_INT, _FLOAT)]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
YamlLoader.add_implicit_resolver(_INT, re.compile(r"^[-+]?(0|[1-9][0-9]*)$"), list("-+0123456789"))
YamlLoader.add_implicit_resolver(
    _FLOAT, re.compile(r"^[-+]?([0-9]+\.[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$|^[-+]?[0-9]+[eE][-+]?[0-9]+$"
                       r"|^[-+]?\.(inf|Inf|INF)$|^\.(nan|NaN|NAN)$"), list("-+0123456789."))


def check_keys(user: Any, schema: Any, where: str, prefix: str = "") -> None:
    """Reject keys the schema does not know, naming the valid ones (OmegaConf's message is terse)."""
    if not isinstance(user, dict) or not dataclasses.is_dataclass(schema):
        return
    valid = {f.name: f for f in dataclasses.fields(schema)}
    for key, value in user.items():
        if key not in valid:
            under = f"'{prefix.rstrip('.') or '<top>'}'"
            raise SemisegError(f"{where}: unknown config key '{prefix}{key}'; " + (
                f"valid keys under {under}: {', '.join(valid)}" if valid else f"{under} takes no keys here"))
        sub = getattr(schema, key)
        kind = dict if dataclasses.is_dataclass(sub) or isinstance(sub, dict) else list if isinstance(sub, list) \
            else None
        if kind is not None and value is not None and not isinstance(value, kind):
            raise SemisegError(f"{where}: bad value for '{prefix}{key}': {value!r}; valid: a "
                               + ("mapping (key: value, ...)" if kind is dict else "list [a, b, ...]"))
        if dataclasses.is_dataclass(sub):
            check_keys(value, sub, where, f"{prefix}{key}.")


def merge_layer(base: DictConfig, user: Dict[str, Any], schema: Any, where: str) -> DictConfig:
    check_keys(user, schema, where)
    try:
        return OmegaConf.merge(base, user)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", "") or "?"
        msg = str(e).splitlines()[0]
        raise SemisegError(f"{where}: bad value for '{key}': {msg}") from None


def parse_overrides(overrides: Sequence[str]) -> Dict[str, Any]:
    """``a.b=c`` strings to a nested dict; values parse as YAML so lists and numbers work."""
    out: Dict[str, Any] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise SemisegError(f"override {item!r} is not of the form key=value (e.g. train.iters=100)")
        try:
            value = yaml.load(text, Loader=YamlLoader) if text else ""
        except yaml.YAMLError as e:
            raise SemisegError(f"override {item!r}: cannot parse the value: {e}") from None
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise SemisegError(f"override {item!r} conflicts with another override of {p!r}")
        node[leaf] = value
    return out


def deep_merge(base: Dict[str, Any], top: Dict[str, Any]) -> Dict[str, Any]:
    """Nested merge, except that a component spec (a mapping with a ``name``) whose name changes is
    replaced as a whole: ``selector={name: class_aware}`` must not inherit the old selector's options; and an
    empty mapping over a spec removes it (``method.refiner={}`` after a recipe with IOM: no refiner)."""
    if "name" in base and (not top or ("name" in top and top["name"] != base["name"])):
        return dict(top)
    out = dict(base)
    for k, v in top.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def yaml_mapping(path: Path, what: str) -> Dict[str, Any]:
    """The mapping a YAML file (``what``: "config file", "suite file") holds; one line naming the file where it
    is missing, no YAML or no mapping."""
    if not path.is_file():
        raise SemisegError(f"{what} {path} does not exist")
    try:
        data = yaml.load(path.read_text(), Loader=YamlLoader) or {}
    except yaml.YAMLError as e:
        where = " ".join(line.strip() for line in str(e).splitlines())
        raise SemisegError(f"{what} {path} is not valid YAML: {where}") from None
    if not isinstance(data, dict):
        raise SemisegError(f"{what} {path} must hold a mapping at the top, not {type(data).__name__}")
    return data


def read_yaml(path: str | Path, _seen: tuple = ()) -> Dict[str, Any]:
    """A config file; ``_base_: other.yaml`` (relative to the file) is read first and overlaid."""
    path = Path(path)
    if path.resolve() in _seen:
        raise SemisegError(f"config file {path} includes itself through _base_")
    data = yaml_mapping(path, "config file")
    base = data.pop("_base_", None)
    if base is not None and not isinstance(base, str):
        raise SemisegError(f"config file {path}: _base_ must name one file (a path relative to it), not {base!r}")
    if base:
        data = deep_merge(read_yaml(path.parent / base, _seen + (path.resolve(),)), data)
    return data


def from_dict(values: Dict[str, Any], where: str = "embedded config") -> DictConfig:
    """A resolved config (a checkpoint's, a run folder's) back as the typed schema: keys and types checked,
    nothing resolved against the registries (that was done when it was written)."""
    schema = Config()
    return merge_layer(OmegaConf.structured(schema), values, schema, where)


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg)


def save_config(cfg: DictConfig, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(to_yaml(cfg))


def as_dict(cfg: DictConfig) -> Dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


# where a run is written, how often it logs, with how many threads and loader processes: not what it learns;
# nor a recipe's name (the values it sets are compared)
NOT_THE_EXPERIMENT = ("work_dir", "recipe", "data.num_workers", "train.threads", "train.log_interval", "train.report",
                      "eval.batch_size")
# a component's options are free-form (only those given are kept): compared whole, so one set on one side counts
COMPONENTS = ("method.selector", "method.refiner", "proposals")


def _flat(tree: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        out.update(_flat(v, f"{key}.") if isinstance(v, dict) and key not in COMPONENTS else {key: v})
    return out


def changed_settings(was: Dict[str, Any], now: Dict[str, Any]) -> Dict[str, tuple]:
    """The settings two configs (as dicts) give different values, ``{key: (was, now)}`` in key order. A schema
    key one side lacks (an option added since) is not compared, nor what does not change what a run learns."""
    a, b = _flat(was), _flat(now)
    return {k: (a[k], b[k]) for k in sorted(a.keys() & b.keys())
            if k not in NOT_THE_EXPERIMENT and not _same_value(a[k], b[k])}


def _same_value(a: Any, b: Any) -> bool:
    """Equal, or one path written two ways (``data/scenes/``, ``./data/scenes``); an unset path is no path."""
    if isinstance(a, str) and isinstance(b, str) and a and b:
        return os.path.normpath(a) == os.path.normpath(b)
    return a == b


def describe_changes(changes: Dict[str, tuple]) -> List[str]:
    return [f"{k}: {a!r}, now {b!r}" for k, (a, b) in changes.items()]
