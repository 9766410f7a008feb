"""One tiny registry used by every pluggable kind (methods, selectors, backbones, ...)."""
from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Generic, Optional, Sequence, TypeVar

from semiseg.errors import SemisegError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to builders; ``get`` of an unknown name lists the valid ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: Dict[str, T] = {}
        self._choices: Dict[str, Dict[str, Sequence[Any]]] = {}

    def register(self, name: str, choices: Optional[Dict[str, Sequence[Any]]] = None) -> Callable[[T], T]:
        """``choices`` lists the valid values of the builder's enumerated options (checked with the config)."""
        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = obj
            self._choices[name] = dict(choices or {})
            return obj

        return add

    def options(self, name: str) -> Dict[str, Any]:
        """The builder's keyword options and their defaults (a selector's first two arguments are its
        tensors, not options)."""
        obj = self.get(name)
        params = list(inspect.signature(obj.__init__ if inspect.isclass(obj) else obj).parameters.values())
        params = [p for p in params if p.name != "self" and p.default is not inspect.Parameter.empty]
        return {p.name: p.default for p in params}

    def choices(self, name: str) -> Dict[str, Sequence[Any]]:
        return self._choices.get(name, {})

    def get(self, name: str) -> T:
        if name not in self._items:
            raise SemisegError(f"unknown {self.kind} {name!r}; valid: {', '.join(sorted(self._items))}")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: Any) -> bool:
        return name in self._items
