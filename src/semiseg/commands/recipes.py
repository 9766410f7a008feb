"""``semiseg recipes``: the named recipes, what each does and where it was measured."""
from __future__ import annotations

HELP = "list the named recipes (semiseg train CONFIG recipe=NAME)"


def add_arguments(p, verb) -> None:
    pass


def run(args) -> int:
    from semiseg.recipes import RECIPES

    for name in RECIPES.names():
        r = RECIPES.get(name)
        print(f"{name}\n  {r.about}\n  overrides: {' '.join(r.overrides)}\n  measured: {r.measured}")
    print("\napply one to any data config: semiseg train CONFIG recipe=NAME (your a.b=c overrides still win)")
    return 0
