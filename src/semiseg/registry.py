"""One tiny registry used by every pluggable kind (methods, selectors, backbones, ...)."""
from __future__ import annotations

from typing import Any, Callable, Dict, Generic, TypeVar

from semiseg.errors import SemisegError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to builders; ``get`` of an unknown name lists the valid ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: Dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        if name not in self._items:
            raise SemisegError(f"unknown {self.kind} {name!r}; valid: {', '.join(sorted(self._items))}")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: Any) -> bool:
        return name in self._items
