"""The checks of single values against what the schema or a registry declares: enumerated keys against their
choices, numbers against their bounds, and a component's options (selector, refiner, proposals) against its
builder's keyword arguments, by name and by type. An error is one line that names the key, where it was set
(the file or the command line) and what is valid. They take the registry as an argument and import none:
``semiseg.configure`` runs them with the registries when a config loads."""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, Iterator, Sequence, Tuple

from semiseg.errors import SemisegError


def leaves(tree: Dict[str, Any], prefix: str = "") -> Iterator[Tuple[str, Any]]:
    for k, v in tree.items():
        if isinstance(v, dict):
            yield from leaves(v, f"{prefix}{k}.")
        yield f"{prefix}{k}", v


def _fail(origin: Dict[str, str], key: str, value: Any, valid: str) -> SemisegError:
    return SemisegError(f"{origin.get(key, 'config')}: bad value for '{key}': {value!r}; valid: {valid}")


def check_choice(origin: Dict[str, str], key: str, value: Any, valid: Sequence[Any]) -> None:
    if value not in valid:
        raise _fail(origin, key, value, ", ".join(map(str, valid)))


def check_bounds(origin: Dict[str, str], key: str, value: Any, lo: Any, hi: Any, ordered: bool = False,
                 length: Any = None, item_length: Any = None, min_length: Any = None) -> None:
    """A finite number, or each number of a list (of lists), within [lo, hi]; ``ordered``: a pair that does not
    decrease; ``length``: the list's length; ``item_length``: each inner list's; ``min_length``: the fewest."""
    is_list = isinstance(value, Sequence) and not isinstance(value, str)
    shown = _plain(value)
    span = " and ".join(f"{op} {v:g}" if isinstance(v, float) else f"{op} {v}"
                        for op, v in ((">=", lo), ("<=", hi)) if v is not None)
    if min_length is not None and (not is_list or len(value) < min_length):
        raise _fail(origin, key, shown, f"a list of at least {min_length} number(s), each {span}")
    if ordered and (len(value) != 2 or not all(_number(v) for v in value) or value[0] > value[1]):
        raise _fail(origin, key, shown, f"a pair [low, high] with low <= high, each {span}")
    if length is not None and len(value) != length:
        raise _fail(origin, key, shown, f"a list of {length} numbers")
    items = list(value) if is_list else [value]
    if item_length is not None:
        if any(not isinstance(v, Sequence) or isinstance(v, str) or len(v) != item_length for v in items):
            raise _fail(origin, key, shown, f"a list of lists of {item_length} numbers, each {span}")
        items = [n for v in items for n in v]
    if any(not _number(v) or (lo is not None and v < lo) or (hi is not None and v > hi) for v in items):
        raise _fail(origin, key, shown, ("each " if is_list else "") + f"a number {span}".rstrip())


def _number(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def _plain(value: Any) -> Any:
    """A config value as plain lists, for the message."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(v) for v in value]
    return value


def check_fields(obj: Any, schema: Any, origin: Dict[str, str], prefix: str) -> None:
    """Fields declared with ``choice(...)`` or ``bounded(...)`` in a schema dataclass (recursively)."""
    for f in dataclasses.fields(schema):
        value = obj[f.name] if isinstance(obj, dict) else getattr(obj, f.name)
        if "choices" in f.metadata:
            check_choice(origin, prefix + f.name, value, f.metadata["choices"])
        if "bounds" in f.metadata:
            check_bounds(origin, prefix + f.name, value, *f.metadata["bounds"], f.metadata["ordered"],
                         f.metadata["length"], f.metadata["item_length"], f.metadata.get("min_length"))
        sub = getattr(schema, f.name)
        if dataclasses.is_dataclass(sub):
            check_fields(value, sub, origin, f"{prefix}{f.name}.")


def _type_ok(value: Any, default: Any) -> bool:
    if default is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, (list, tuple)):  # a YAML list arrives as a list-like config node, not a list
        return isinstance(value, Sequence) and not isinstance(value, str)
    return isinstance(value, type(default)) and not isinstance(value, bool)


def check_component(registry, spec: Dict[str, Any], origin: Dict[str, str], key: str) -> None:
    """``{name: ..., **options}`` against the registered builder: the name, each option's name and type,
    and the choices of its enumerated options."""
    name = spec.get("name")
    if name not in registry:
        raise _fail(origin, f"{key}.name", name, ", ".join(registry.names()))
    options, choices = registry.options(name), registry.choices(name)
    for opt, value in spec.items():
        if opt == "name":
            continue
        where = f"{key}.{opt}"
        if opt not in options:
            raise SemisegError(f"{origin.get(where, 'config')}: unknown option '{where}' of {registry.kind} "
                               f"{name!r}; valid: {', '.join(options) or 'none'}")
        if not _type_ok(value, options[opt]):
            raise _fail(origin, where, value, f"a {type(options[opt]).__name__}")
        if opt in choices:
            check_choice(origin, where, value, choices[opt])
