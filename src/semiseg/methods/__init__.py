"""Registered methods; importing this package registers all of them."""
from semiseg.methods.registry import METHODS
from semiseg.methods import supervised  # noqa: F401  (registers)

__all__ = ["METHODS"]
