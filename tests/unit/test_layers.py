"""The package's layers import downwards only: models <- logic <- handlers, models <- adapters <- handlers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

HERALD = Path(__file__).resolve().parents[2] / "functions" / "herald"

# What each layer may import of herald; anything outside herald is free.
ALLOWED = {
    "models": ("herald.models",),
    "logic": ("herald.models", "herald.logic", "herald.observability"),
    # Adapters implement logic's Protocols (ports) and may name them; never its decisions.
    "adapters": ("herald.models", "herald.adapters", "herald.logic.ports", "herald.observability", "herald.settings"),
}


def herald_imports(path: Path) -> set[str]:
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("herald"):
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names if alias.name.startswith("herald"))
    return imported


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_imports_only_the_layers_below_it(layer):
    # Given every module of the layer
    modules = sorted((HERALD / layer).glob("*.py"))
    assert modules, f"no modules in herald/{layer}"

    # When their imports of herald are read
    wrong = {
        f"{module.name} imports {name}"
        for module in modules
        for name in herald_imports(module)
        if not name.startswith(ALLOWED[layer])
    }

    # Then none reaches a layer it must not
    assert wrong == set()


def test_the_package_root_holds_only_cross_cutting_modules():
    # Given the modules at the root of herald/
    root = {path.name for path in HERALD.glob("*.py")}

    # Then only settings and observability live there: the rest has a layer
    assert root == {"__init__.py", "settings.py", "observability.py"}
