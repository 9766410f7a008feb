"""Registered methods; importing this package registers all of them."""
from semiseg.methods.registry import METHODS
from semiseg.methods import (csl, dssn, fixmatch, semires, semires_res, supervised, unimatch,  # noqa: F401  (registers)
                             unimatch_v2)

__all__ = ["METHODS"]
