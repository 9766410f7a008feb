"""Registered methods; importing this package registers all of them."""
from semiseg.methods.registry import METHODS
from semiseg.methods import csl, dssn, fixmatch, semires, supervised, unimatch, unimatch_v2  # noqa: F401  (registers)

__all__ = ["METHODS"]
