"""The layers of DESIGN.md, kept by walking every import (function-level ones included): no module imports a
higher room. The imports that still run upward are listed by name: the test fails on a new one, and on one
that was removed without taking it off the list, so the list only shrinks."""
import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "semiseg"
RANK = {"errors": 0, "registry": 0, "config": 1, "config_check": 1, "losses": 2, "data": 2, "models": 2, "pseudo": 2,
        "methods": 3, "engine": 4, "inference": 5, "export": 5, "res": 5, "bench": 6, "report": 6,
        "cli": 7, "__main__": 7, "": 7}

# upward imports that remain ("One engine": a commands layer above everything, config checks without methods)
KNOWN = {
    ("semiseg.config", "semiseg.methods"),
    ("semiseg.config_check", "semiseg.data.presets"), ("semiseg.config_check", "semiseg.methods"),
    ("semiseg.config_check", "semiseg.models"), ("semiseg.config_check", "semiseg.pseudo.proposals"),
    ("semiseg.config_check", "semiseg.pseudo.refiners"), ("semiseg.config_check", "semiseg.pseudo.selectors"),
    ("semiseg.data.commands", "semiseg.res.referring"),
    ("semiseg.engine.trainer", "semiseg"), ("semiseg.engine.trainer", "semiseg.report.build"),
    ("semiseg.pseudo.commands", "semiseg.engine.logging"),
}


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def upward_imports():
    found = set()
    for path in SRC.rglob("*.py"):
        module = ".".join(path.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "semiseg":
                targets = [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.split(".")[0] == "semiseg"]
            else:
                continue
            for target in targets:
                assert room(target) in RANK, f"{module} imports {target}: give its room a layer in RANK"
                if RANK[room(target)] > RANK[room(module)]:
                    found.add((module, target))
    return found


def test_no_new_import_runs_upward():
    found = upward_imports()
    assert len(list(SRC.rglob("*.py"))) > 50
    assert found - KNOWN == set(), "new upward imports: " + ", ".join(f"{a} -> {b}" for a, b in sorted(found - KNOWN))
    assert KNOWN - found == set(), "gone, take them off KNOWN: " + ", ".join(f"{a} -> {b}" for a, b in KNOWN - found)
