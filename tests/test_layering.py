"""The architecture, checked: scripts -> trainers -> mlx_schedules, no cycles, and MLX's
private API touched only by ``mlx_schedules/_mlx_compat.py``."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import mlx.nn as nn
import mlx.optimizers as optim
import pytest

ROOT = Path(__file__).resolve().parents[1]
# Layer of each top-level package; an import may only go to the same or a lower layer.
LAYERS = {"mlx_schedules": 0, "trainers": 1, "experiments": 2, "scripts": 2}
COMPAT = ROOT / "mlx_schedules" / "_mlx_compat.py"


def product_files() -> list[Path]:
    files = [*(ROOT / "mlx_schedules").rglob("*.py"), *(ROOT / "trainers").rglob("*.py"),
             *(ROOT / "scripts").rglob("*.py")]
    return sorted(f for f in files if "__pycache__" not in f.parts)


def package_of(path: Path) -> str:
    rel = path.relative_to(ROOT).parts
    if rel[0] == "scripts":
        return "experiments" if len(rel) > 2 and rel[1] == "experiments" else "scripts"
    return rel[0]


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
        target = name.split(".")[0]
        if target in LAYERS:
            assert LAYERS[target] <= own, f"{path.relative_to(ROOT)} imports {name} (upward)"


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
