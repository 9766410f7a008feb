"""The layers of DESIGN.md, kept by walking every import (function-level ones included): no module imports a
higher room. The imports that still run upward are listed by name: the test fails on a new one, and on one
that was removed without taking it off the list, so the list only shrinks."""
import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "semiseg"
RANK = {"errors": 0, "registry": 0, "version": 0, "config": 1, "config_check": 1, "losses": 2, "data": 2, "models": 2,
        "pseudo": 2, "res": 2, "methods": 3, "configure": 4, "engine": 4, "inference": 5, "export": 5, "bench": 6,
        "report": 6, "commands": 7, "cli": 8, "__main__": 8, "": 8}

# upward imports that remain (none: the schema no longer reaches up to the registries it is checked against)
KNOWN: set = set()


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def upward_imports(src: Path = SRC):
    found = set()
    for path in src.rglob("*.py"):
        module = ".".join(path.relative_to(src.parent).with_suffix("").parts).removesuffix(".__init__")
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


def test_the_walker_sees_an_upward_import_inside_a_function(tmp_path):
    (tmp_path / "semiseg" / "models").mkdir(parents=True)
    (tmp_path / "semiseg" / "models" / "head.py").write_text("def f():\n    from semiseg.engine.trainer import Trainer\n")
    (tmp_path / "semiseg" / "engine").mkdir()
    (tmp_path / "semiseg" / "engine" / "loop.py").write_text("import semiseg.models.head\nfrom semiseg import commands\n")
    assert upward_imports(tmp_path / "semiseg") == {("semiseg.models.head", "semiseg.engine.trainer"),
                                                    ("semiseg.engine.loop", "semiseg")}
