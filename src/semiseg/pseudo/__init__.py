"""Pseudo-label selection (selectors), refinement (refiners) and mask proposals."""
from semiseg.pseudo.selectors import SELECTORS, build_selector

__all__ = ["SELECTORS", "build_selector"]
