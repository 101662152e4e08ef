"""The architecture, checked: mlx_schedules -> the trainer's core -> trainers.lm ->
trainers.experiments -> trainers.cli -> scripts, each importing only layers below it, no
cycles, nothing installed importing from ``scripts/``, and MLX's private API touched only by
``mlx_schedules/_mlx_compat.py``."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import mlx.nn as nn
import mlx.optimizers as optim
import pytest

ROOT = Path(__file__).resolve().parents[1]
# Layer of each part; an import may only go to the same or a lower layer. The core of
# ``trainers`` is every module of the package outside its three subpackages.
LAYERS = {"mlx_schedules": 0, "trainers": 1, "trainers.lm": 2, "trainers.experiments": 3,
          "trainers.cli": 4, "scripts": 5}
SUBPACKAGES = ("trainers.lm", "trainers.experiments", "trainers.cli")
COMPAT = ROOT / "mlx_schedules" / "_mlx_compat.py"


def product_files() -> list[Path]:
    files = [*(ROOT / "mlx_schedules").rglob("*.py"), *(ROOT / "trainers").rglob("*.py"),
             *(ROOT / "scripts").rglob("*.py")]
    return sorted(f for f in files if "__pycache__" not in f.parts)


def layer_of_module(name: str) -> str | None:
    """The layer a dotted module name belongs to (``None``: not ours)."""
    for sub in SUBPACKAGES:
        if name == sub or name.startswith(sub + "."):
            return sub
    top = name.split(".")[0]
    return top if top in LAYERS else None


def package_of(path: Path) -> str:
    rel = path.relative_to(ROOT).parts
    if rel[0] == "scripts":
        return "scripts"
    layer = layer_of_module(module_name(path))
    assert layer is not None
    return layer


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("").parts
    if rel[0] == "scripts":
        rel = rel[1:]
    return ".".join(p for p in rel if p != "__init__")


def imports(path: Path, *, top_level_only: bool = False) -> list[str]:
    """Absolute names of the modules a file imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" \
        else module_name(path)
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                if node.module:
                    found.append(".".join([*base, node.module]))
                else:  # from . import files
                    found += [".".join([*base, alias.name]) for alias in node.names]
            else:
                found.append(node.module)
    return found


@pytest.mark.parametrize("path", product_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_imports_upward(path):
    own = LAYERS[package_of(path)]
    for name in imports(path):
        target = layer_of_module(name)
        if target is not None:
            assert LAYERS[target] <= own, f"{path.relative_to(ROOT)} imports {name} (upward)"


def test_the_layers_are_really_found():
    layers = {package_of(p) for p in product_files()}
    assert layers == set(LAYERS)
    assert package_of(ROOT / "trainers" / "trainer.py") == "trainers"
    assert package_of(ROOT / "trainers" / "lm" / "adapters.py") == "trainers.lm"


@pytest.mark.parametrize("path", [p for p in product_files() if package_of(p) != "scripts"],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_installed_imports_from_the_scripts_folder(path):
    """What ``pip install`` gives never needs a checkout: no import of ``scripts`` or of the
    old ``experiments`` package that lived there, and no ``sys.path`` edits."""
    for name in imports(path):
        assert name.split(".")[0] not in ("scripts", "experiments"), \
            f"{path.relative_to(ROOT)} imports {name}"
    assert "sys.path.insert" not in path.read_text(encoding="utf-8")


def test_no_import_cycles_between_modules():
    graph = {}
    for path in product_files():
        if package_of(path) == "scripts":
            continue
        graph[module_name(path)] = {
            n for n in imports(path, top_level_only=True)
            if n.split(".")[0] in LAYERS and n != module_name(path)
        }
    assert "trainers.step" in graph["trainers.trainer"]  # the graph is really built
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if nxt in LAYERS or nxt not in graph:
                continue  # a package's __init__ only re-exports its modules
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*trail, node, nxt]))
            if not state.get(nxt):
                visit(nxt, [*trail, node])
        state[node] = 2

    for node in graph:
        if not state.get(node):
            visit(node, [])


def mlx_private_names() -> set[str]:
    names = set()
    classes = [c for _, c in inspect.getmembers(optim, inspect.isclass)
               if issubclass(c, optim.Optimizer)] + [nn.Module]
    for cls in classes:
        names |= {n for n in dir(cls) if n.startswith("_") and not n.startswith("__")}
    names |= {n for n in vars(optim.SGD(learning_rate=0.1)) if n.startswith("_")}
    return names


@pytest.mark.parametrize("path", [p for p in product_files() if p != COMPAT],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_compat_module_touches_mlx_private_api(path):
    private = mlx_private_names()
    assert "_schedulers" in private  # the check knows what it looks for
    tree = ast.parse(path.read_text(encoding="utf-8"))
    mlx_aliases = {"mlx", "mx", "nn", "optim", "optimizers"}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
            continue
        if node.attr.startswith("__"):
            continue
        owner = node.value.id if isinstance(node.value, ast.Name) else None
        if owner == "self":
            continue  # our own objects' attributes
        where = f"{path.relative_to(ROOT)}:{node.lineno}"
        assert node.attr not in private, f"{where} touches MLX's private {node.attr}"
        assert owner not in mlx_aliases, f"{where} touches {owner}.{node.attr}"
