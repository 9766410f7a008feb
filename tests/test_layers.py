"""The layers of DESIGN.md, kept by walking every import (function-level ones included): a room imports only
rooms of a strictly lower layer, so a lower room never imports a higher one and two rooms of one layer never
import each other; and the tasks never import one another. There is no allow-list."""
import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "semiseg"
# one table: the layer of each room (a top-level module, or a package of src/semiseg)
RANK = {"errors": 0, "version": 0, "files": 1, "registry": 1, "config": 1, "config_check": 1, "losses": 2, "models": 2,
        "pseudo": 2, "recipes": 2, "data": 3, "methods": 4, "tasks": 5, "configure": 6, "export": 6, "engine": 7,
        "inference": 8, "bench": 9, "report": 10, "commands": 11, "cli": 12, "__main__": 13, "": 13}
# packages whose sub-packages are plug-ins: each may use the package's shared modules, never another plug-in
PLUGINS = {"tasks": ("semantic", "referring")}


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def plugin(module: str) -> str:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[2] in PLUGINS.get(parts[1], ()) else ""


def imports(src: Path):
    """(module, imported semiseg module) for every import statement under ``src``."""
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
                yield module, target


def bad_imports(src: Path = SRC):
    found = set()
    for module, target in imports(src):
        a, b = room(module), room(target)
        assert b in RANK and a in RANK, f"{module} imports {target}: give its room a layer in RANK"
        if a != b and RANK[b] >= RANK[a]:
            found.add((module, target))
        elif a == b and plugin(module) and plugin(target) and plugin(module) != plugin(target):
            found.add((module, target))
    return found


def test_every_import_goes_down_a_layer():
    found = bad_imports()
    assert len(list(SRC.rglob("*.py"))) > 50
    assert found == set(), "imports up or sideways: " + ", ".join(f"{a} -> {b}" for a, b in sorted(found))


def test_every_room_has_a_layer():
    rooms = {p.stem if p.is_file() else p.name for p in SRC.iterdir()
             if p.suffix == ".py" or (p / "__init__.py").is_file()}
    assert rooms - {"__init__"} <= set(RANK), f"rooms without a layer: {rooms - {'__init__'} - set(RANK)}"


def test_the_walker_sees_upward_sideways_and_cross_plugin_imports(tmp_path):
    pkg = tmp_path / "semiseg"
    for folder, text in {"models/head.py": "def f():\n    from semiseg.engine.trainer import Trainer\n",
                         "engine/loop.py": "import semiseg.models.head\nfrom semiseg import commands\n",
                         "losses/ce.py": "from semiseg.models import build\n",  # same layer: sideways
                         "tasks/semantic/task.py": "from semiseg.tasks.referring.model import M\n"
                                                   "from semiseg.tasks.base import Task\n"}.items():
        (pkg / folder).parent.mkdir(parents=True, exist_ok=True)
        (pkg / folder).write_text(text)
    assert bad_imports(pkg) == {("semiseg.models.head", "semiseg.engine.trainer"), ("semiseg.engine.loop", "semiseg"),
                                ("semiseg.losses.ce", "semiseg.models"),
                                ("semiseg.tasks.semantic.task", "semiseg.tasks.referring.model")}
