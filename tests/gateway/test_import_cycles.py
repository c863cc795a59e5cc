"""The gateway's modules import each other without a cycle: every ``openbell.gateway`` import in
any of them (top level, inside functions, under TYPE_CHECKING) is an edge, and the graph has no
cycle; and each module imports alone in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import openbell.gateway

GATEWAY = Path(openbell.gateway.__file__).parent
PACKAGE = "openbell.gateway"


def _modules() -> list[str]:
    return sorted(p.stem for p in GATEWAY.glob("*.py") if p.stem != "__init__")


def _imports(module: str) -> set[str]:
    """The sibling gateway modules ``module`` imports, anywhere in its source."""
    tree = ast.parse((GATEWAY / f"{module}.py").read_text())
    siblings = set(_modules())
    out: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:  # from .bridge import X / from . import x
                names = [node.module or ""] if node.module else [a.name for a in node.names]
            elif node.module == PACKAGE:
                names = [a.name for a in node.names]
            elif node.module and node.module.startswith(PACKAGE + "."):
                names = [node.module.split(".")[2]]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[2] for a in node.names if a.name.startswith(PACKAGE + ".")]
        out.update(name.split(".")[0] for name in names if name.split(".")[0] in siblings)
    out.discard(module)
    return out


def test_no_import_cycle_among_gateway_modules() -> None:
    graph = {module: _imports(module) for module in _modules()}
    assert "handling" in graph["app"] and "handling" in graph["fastpath"]  # the graph is real
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                cycle = [*path[path.index(dep) :], dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        path.pop()
        state[module] = 2

    for module in graph:
        if module not in state:
            visit(module)


def test_each_gateway_module_imports_alone() -> None:
    for module in ("app", "fastpath", "ipo", "ws", "handling", "orders", "reports", "trade_ws"):
        result = subprocess.run(
            [sys.executable, "-c", f"import {PACKAGE}.{module}"], capture_output=True, text=True
        )
        assert result.returncode == 0, f"{module}: {result.stderr[-2000:]}"
