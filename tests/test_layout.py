"""The package's layout rules (README, "Layout"), checked on the source: floors, public names, the core's users."""

from __future__ import annotations

import ast
import functools
import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "wslgraph"


def _imports() -> list[tuple[str, str, ast.ImportFrom]]:
    """(importing top-level unit, imported module, node) for every runtime ``from wslgraph... import``."""
    found = []
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        unit = parts[0]
        tree = ast.parse(path.read_text())
        typing_only = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                       and getattr(block.test, "id", "") == "TYPE_CHECKING" for node in ast.walk(block)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "wslgraph" \
                    and id(node) not in typing_only:
                found.append((unit, node.module, node))
    return found


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "wslgraph"


def test_no_module_imports_the_package_top_and_the_stack_has_seven_floors() -> None:
    edges: dict[str, set[str]] = {}
    for unit, module, _ in _imports():
        if unit in ("__init__", "__main__"):
            continue
        assert module != "wslgraph", f"{unit} imports the package top; import from the module that defines the name"
        if _unit(module) != unit:
            edges.setdefault(unit, set()).add(_unit(module))

    @functools.cache
    def floor(unit: str, path: tuple[str, ...] = ()) -> int:
        assert unit not in path, f"import cycle: {' -> '.join((*path, unit))}"
        return 1 + max((floor(other, (*path, unit)) for other in edges.get(unit, ())), default=0)

    floors = {unit: floor(unit) for unit in edges}
    assert floors["cli"] <= 7, floors
    assert floors["weightspace"] < min(floors["heads"], floors["baselines"], floors["zoo"]), floors


def test_cross_package_names_are_public_and_listed() -> None:
    problems = []
    for unit, module, node in _imports():
        if _unit(module) == unit or unit in ("__init__", "__main__"):
            continue
        exported = getattr(importlib.import_module(module), "__all__", ())
        for alias in node.names:
            if alias.name.startswith("_") and alias.name != "__version__":
                problems.append(f"{unit} imports the private {module}.{alias.name}")
            elif alias.name not in exported:
                problems.append(f"{unit} imports {module}.{alias.name}, which is not in its __all__")
    assert not problems, problems


def test_the_core_is_used_from_its_own_floor() -> None:
    for unit, module, _ in _imports():
        assert not (module == "wslgraph.testing" and unit != "testing"), f"{unit} imports wslgraph.testing"
        if _unit(module) == "baselines" and unit in ("heads", "zoo"):
            raise AssertionError(f"{unit} imports {module}: the weight-space view is wslgraph.weightspace")
