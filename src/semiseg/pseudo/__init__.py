"""Pseudo-label selection (selectors), refinement (refiners) and mask proposals."""
from semiseg.pseudo import csl  # noqa: F401  (registers the csl selector)
from semiseg.pseudo.selectors import SELECTORS, build_selector

__all__ = ["SELECTORS", "build_selector"]
