"""Every module imports, and imports among kronos modules flow one way (no cycles).

The graph is read from the source: top-level, in-function and ``TYPE_CHECKING`` imports all count, and so do
module names handed to ``importlib.import_module`` as string constants (how the CLI finds its commands).
Importing a submodule is not counted as importing its parent package.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import kronos

ROOT = Path(kronos.__file__).resolve().parent


def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package) for every module under src/kronos."""
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def imported_from(name: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute name of the module a ``from ... import`` in module ``name`` reads from."""
    if not node.level:
        return node.module or ""
    base = name.split(".") if is_package else name.split(".")[:-1]
    base = base[:len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _targets(name: str, is_package: bool, node: ast.Import | ast.ImportFrom, modules: dict) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    package = imported_from(name, is_package, node)
    # ``from package import name``: the submodule if there is one, else the package itself
    return [f"{package}.{alias.name}" if f"{package}.{alias.name}" in modules else package for alias in node.names]


def import_graph() -> dict[str, set[str]]:
    """kronos module -> the kronos modules it imports anywhere in its source."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        found: list[str] = []
        dynamic = any(isinstance(n, ast.Attribute) and n.attr == "import_module" for n in ast.walk(tree))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found += _targets(name, is_package, node, modules)
            elif dynamic and isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.append(node.value)
        edges = set()
        for target in found:
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in modules and target != name:
                edges.add(target)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_every_module_imports():
    names = [m.name for m in pkgutil.walk_packages(kronos.__path__, "kronos.")]
    assert len(names) > 30
    for name in names:
        importlib.import_module(name)


def test_no_import_cycles_among_kronos_modules():
    graph = import_graph()
    assert "kronos.commands.forecast" in graph["kronos.cli"]  # the CLI's string-named commands are seen
    assert "kronos.evaluation.report" in graph["kronos.evaluation.runner"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
