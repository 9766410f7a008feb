"""Named recipes: a method configuration and its overrides, what it is for, and where it was measured.

``semiseg train CONFIG recipe=NAME`` applies a recipe to any data config (the user's own included): its
overrides come after the config file and before the command line's, so a user's ``a.b=c`` still wins.
``semiseg recipes`` lists them. The measurements are in the docs named by each recipe, written there by
their commands; a recipe's gain on one data set is not a promise on another (``semiseg compare``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

from semiseg.registry import Registry


@dataclass(frozen=True)
class Recipe:
    overrides: Tuple[str, ...]  # a.b=c, applied after the config file
    about: str  # one line: what it does
    measured: str  # where its measurement is (docs page, section)


RECIPES: Registry = Registry("recipe")


def _recipe(name: str, overrides: Tuple[str, ...], about: str, measured: str) -> None:
    RECIPES.register(name)(Recipe(overrides, about, measured))


METHODS_TABLE = 'docs/benchmarks.md, "Methods at 1/16 labels"'
BINARY = 'docs/benchmarks.md, "Binary data"'
PROBES = 'docs/benchmarks.md, "Composing a recipe: the probes"'
RECIPE = 'docs/benchmarks.md, "The composed recipe on three seeds"'
ALIGNMENT = 'docs/benchmarks.md, "Distribution alignment in training, on both benchmarks"'
ALIGN_RECIPE = 'docs/benchmarks.md, "The align recipe beside UniMatch"'

_recipe("supervised", ("method.name=supervised",),
        "labeled images only: the baseline every recipe is measured against", METHODS_TABLE)
_recipe("fixmatch", ("method.name=fixmatch",),
        "one strong CutMixed view learns the weak view's labels above 0.95 confidence", f"{METHODS_TABLE}; {BINARY}")
_recipe("unimatch", ("method.name=unimatch",),
        "UniMatch V1: two strong views and a feature-perturbed one learn the weak view's labels",
        f"{METHODS_TABLE}; {BINARY}")
_recipe("unimatch-v2", ("method.name=unimatch_v2",),
        "UniMatch V2's recipe: an EMA teacher labels two strong views, complementary dropout on the features "
        "(its own network: model.arch=dpt with a DINOv2 encoder)", METHODS_TABLE)
_recipe("csl", ("method.name=csl",),
        "CSL: soft weights from each image's confidence/dispersion split, Trusted Mask Perturbation",
        f"{METHODS_TABLE}; {BINARY}")
_recipe("dssn", ("method.name=dssn",),
        "DSSN as authored: image- and feature-level Siamese pairs, an EMA teacher (0.996), CPLG", METHODS_TABLE)
_recipe("dssn-horizon", ("method.name=dssn", "method.ema_horizon=0.033"),
        "DSSN with its teacher's horizon fitted to the schedule (3.3% of it): the cheaper choice without mask "
        "proposals",
        'docs/lab-notebook.md, "DSSN against UniMatch"; ' + METHODS_TABLE)
_recipe("dssn-iom", ("method.name=dssn", "method.refiner={name: iom}"),
        "DSSN with its pseudo-labels refined against mask proposals (needs data.proposal_store: semiseg proposals)",
        METHODS_TABLE)
_recipe("dssn-horizon-clean", ("method.name=dssn", "method.ema_horizon=0.033", "method.running_stats=clean"),
        "for binary and imbalanced data: DSSN with a fitted horizon, its perturbed views kept out of BatchNorm's "
        "running statistics", BINARY)
_recipe("dssn-horizon-iom", ("method.name=dssn", "method.ema_horizon=0.033", "method.refiner={name: iom}"),
        "DSSN with its teacher's horizon fitted to the schedule and pseudo-labels refined against mask proposals "
        "(needs data.proposal_store: semiseg proposals; compare makes one)", f"{RECIPE}; {PROBES}")
_recipe("dssn-horizon-iom-paste", ("method.name=dssn", "method.ema_horizon=0.033", "method.refiner={name: iom}",
                                   "method.paste_p=0.5"),
        "dssn-horizon-iom with labeled objects pasted into the strong views, the classes "
        "the model is least sure of most often (needs data.proposal_store: semiseg proposals; compare makes one)",
        f"{RECIPE}; {PROBES}")
_recipe("dssn-horizon-iom-paste-align", RECIPES.get("dssn-horizon-iom-paste").overrides
        + ("method.distribution_alignment=true", "method.align_fp=true"),
        "the recommended recipe: dssn-horizon-iom-paste with every pseudo-label map aligned to the labeled class "
        "shares, the FP branches' too (needs data.proposal_store: semiseg proposals; compare makes one)",
        f"{ALIGNMENT}; {ALIGN_RECIPE}")
