"""The package's layers (docs/architecture.md, "Package layers"): no module imports a layer below its own."""

import ast
import os

import pytest

import contextnet_tf

PACKAGE = os.path.dirname(contextnet_tf.__file__)
# Subpackage (or top-level module) -> its layer; a module may import its own subpackage and layers <= its own.
LAYERS = {
    "environment": 1,
    "cli": 1,
    "program": 1,
    "models": 1,
    "data": 1,
    "evaluation": 2,
    "training": 3,
    "deploy": 3,
    "pruning": 4,
    "reports": 5,
}
# Same-layer pairs that must stay independent.
FORBIDDEN = {("models", "data"), ("data", "models"), ("training", "deploy"), ("deploy", "training")}


def _modules():
    for root, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                parts = os.path.relpath(path, PACKAGE).split(os.sep)
                if parts == ["__init__.py"]:
                    continue  # the public API re-exports every layer
                yield path, parts[0].removesuffix(".py")


def _imported_units(path):
    tree = ast.parse(open(path).read(), path)
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "contextnet_tf" and len(parts) > 1 and parts[1] in LAYERS:
                yield parts[1]


def test_every_unit_has_a_layer():
    units = {unit for _, unit in _modules()}
    assert units <= set(LAYERS), f"add {sorted(units - set(LAYERS))} to LAYERS and docs/architecture.md"


@pytest.mark.parametrize("path,unit", sorted(_modules()), ids=lambda v: os.path.relpath(v, PACKAGE) if "/" in str(v) else v)
def test_no_module_imports_a_higher_layer(path, unit):
    for imported in _imported_units(path):
        if imported == unit:
            continue
        assert LAYERS[imported] <= LAYERS[unit], f"{path} (layer {LAYERS[unit]}) imports {imported} ({LAYERS[imported]})"
        assert (unit, imported) not in FORBIDDEN, f"{path}: {unit} must not import {imported}"
