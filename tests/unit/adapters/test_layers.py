"""The adapters form layers: the facade (hooks.py) imports the per-concern modules, none imports
it back, and no two modules import each other in a circle (counting imports made inside
functions and under TYPE_CHECKING, which a plain import-time check would miss)."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

ADAPTERS = Path(__file__).resolve().parents[3] / "adaptive_plugin" / "adapters"
PACKAGE = "adaptive_plugin.adapters"


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == PACKAGE:
                found |= {alias.name for alias in node.names}
            elif node.module.startswith(PACKAGE + "."):
                found.add(node.module[len(PACKAGE) + 1:].split(".")[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE + "."):
                    found.add(alias.name[len(PACKAGE) + 1:].split(".")[0])
    return found


def graph() -> dict[str, set[str]]:
    modules = {p.stem: p for p in ADAPTERS.glob("*.py") if p.stem != "__init__"}
    return {name: imports_of(path) & set(modules) - {name} for name, path in modules.items()}


def test_no_module_imports_the_facade() -> None:
    importers = sorted(name for name, deps in graph().items() if "hooks" in deps)
    assert importers == []


def test_the_adapters_import_graph_has_no_cycle() -> None:
    try:
        order = list(TopologicalSorter(graph()).static_order())
    except CycleError as exc:
        raise AssertionError(f"import cycle among adapters: {exc.args[1]}") from None
    assert order[-1] == "hooks"  # the facade comes last: it needs everything, nothing needs it
