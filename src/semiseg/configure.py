"""Load a config: defaults <- a checkpoint's config <- a YAML file <- ``a.b=c`` overrides, merged once with
OmegaConf, then resolved and checked against the registries that own its names (methods, selectors,
refiners, proposal generators, data presets, backbones). It sits above those rooms, so none of them, and
not the schema (``semiseg.config``), imports anything from here.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from semiseg.config import Config, check_keys, deep_merge, merge_layer, parse_overrides, read_yaml
from semiseg.config_check import check_choice, check_component, check_fields, leaves

from semiseg.errors import SemisegError
from semiseg.methods import METHODS
from semiseg.models import backbone_names
from semiseg.pseudo.proposals import PROPOSALS
from semiseg.pseudo.refiners import REFINERS
from semiseg.pseudo.selectors import SELECTORS
from semiseg.recipes import RECIPES
from semiseg.tasks import TASKS


def load_config(
    path: Optional[str | Path] = None,
    overrides: Sequence[str] = (),
    extra: Optional[Dict[str, Any]] = None,
) -> DictConfig:
    """Defaults <- ``extra`` (e.g. a checkpoint's config) <- YAML file <- overrides; validated.

    Each layer is checked on its own (so errors name the file or the override), then the layers are
    merged with the component-spec rule of :func:`deep_merge` and applied to the defaults once."""
    schema = Config()
    layers = []
    if extra:
        layers.append((extra, "embedded config"))
    file = read_yaml(path) if path is not None else {}
    if path is not None:
        layers.append((file, str(path)))
    given = parse_overrides(overrides) if overrides else {}
    named = given.get("recipe", file.get("recipe"))
    if named:  # a recipe's overrides sit between the file and the command line (a user's a.b=c wins)
        where = "command line override" if "recipe" in given else str(path)
        if not isinstance(named, str) or named not in RECIPES:
            raise SemisegError(f"{where}: bad value for 'recipe': {named!r}; valid: {', '.join(RECIPES.names())}")
        layers.append((parse_overrides(list(RECIPES.get(named).overrides)), f"recipe {named}"))
    if overrides:
        layers.append((given, "command line override"))
    user: Dict[str, Any] = {}
    origin: Dict[str, str] = {}  # dotted key -> the layer that set it last, for error messages
    rank: Dict[str, int] = {}  # dotted key -> the index of the file or override layer that set it last
    for i, (layer, where) in enumerate(layers):
        merge_layer(OmegaConf.structured(schema), layer, schema, where)
        user = deep_merge(user, layer)
        origin.update({key: where for key, _ in leaves(layer)})
        if layer is not extra:
            rank.update({key: i for key, _ in leaves(layer)})
    cfg = resolve_method(merge_layer(OmegaConf.structured(schema), user, schema, "config"), origin)
    check_config(cfg, origin)
    _iters_or_epochs(cfg, rank, origin)
    return cfg


def _iters_or_epochs(cfg: DictConfig, rank: Dict[str, int], origin: Dict[str, str]) -> None:
    """``train.epochs`` > 0 sets the schedule in epochs; a ``train.iters`` given after it (an override of a
    file that sets epochs) wins instead of being silently ignored; both in one place is an error."""
    if not cfg.train.epochs and cfg.train.iters < 1:
        raise SemisegError(f"{origin.get('train.iters', 'config')}: bad value for 'train.iters': {cfg.train.iters}; "
                           "valid: at least 1 step (or train.epochs > 0)")
    iters, epochs = rank.get("train.iters"), rank.get("train.epochs")
    if not cfg.train.epochs or iters is None:
        return
    if iters == epochs:
        raise SemisegError(f"{origin['train.iters']}: sets both train.iters and train.epochs (a _base_ file counts as "
                           "part of it); keep one: epochs > 0 counts passes over the unlabeled set, "
                           "train.epochs: 0 lets train.iters count steps")
    if epochs is None or iters > epochs:
        cfg.train.epochs = 0


def resolve_method(cfg: DictConfig, origin: Optional[Dict[str, str]] = None) -> DictConfig:
    """Validate ``cfg.method`` against the chosen method's Config and fill its defaults."""
    origin = origin or {}
    method = OmegaConf.to_container(cfg.method)
    name = method.pop("name", "supervised")
    if not isinstance(name, str) or name not in METHODS:
        raise SemisegError(f"{origin.get('method.name', 'config')}: bad value for 'method.name': {name!r}; "
                           f"valid: {', '.join(METHODS.names())}")
    mschema = METHODS.get(name).Config()
    check_keys(method, mschema, origin.get("method", "method section"), "method.")
    try:  # merging into the dataclass node validates every value's type and names the key (a list's items too)
        OmegaConf.merge(OmegaConf.structured(mschema), method)
        # the values themselves with the component rule: a selector of another name drops the old options
        merged = deep_merge(dataclasses.asdict(mschema), method)
        cfg.method = {"name": name, **OmegaConf.to_container(OmegaConf.structured(type(mschema)(**merged)))}
    except OmegaConfBaseException as e:
        key = f"method.{getattr(e, 'full_key', '') or '?'}"
        where = origin.get(key.split("[")[0], "method section")
        raise SemisegError(f"{where}: bad value for '{key}': {str(e).splitlines()[0]}") from None
    return cfg


def check_config(cfg, origin: Dict[str, str]) -> None:
    """Every name in the config against the registries that own it: a misspelled name fails when the file is
    read, naming it, not at the first step."""
    check_fields(cfg, Config(), origin, "")
    check_choice(origin, "task", cfg.task, TASKS.names())
    TASKS.get(cfg.task).check_config(cfg, origin)  # the task's own names (a semantic data preset)
    check_choice(origin, "model.backbone", cfg.model.backbone, backbone_names())
    method = cfg.method
    if cfg.task not in METHODS.get(method["name"]).tasks:
        trains = [n for n in METHODS.names() if cfg.task in METHODS.get(n).tasks]
        raise SemisegError(f"{origin.get('method.name', 'config')}: method {method['name']!r} does not train task "
                           f"{cfg.task!r}; for it: {', '.join(trains)}")
    check_fields(dict(method), METHODS.get(method["name"]).Config(), origin, "method.")
    if "selector" in method:
        check_component(SELECTORS, dict(method["selector"]), origin, "method.selector")
    if method.get("refiner"):
        check_component(REFINERS, dict(method["refiner"]), origin, "method.refiner")
    check_component(PROPOSALS, dict(cfg.proposals), origin, "proposals")
