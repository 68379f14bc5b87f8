"""The package's layering, stated as a table and checked on the import graph read from the source.

Each layer may import itself and the layers its row names, nothing else:

===========  ==============================================  =====================================================
layer        modules                                         may import
===========  ==============================================  =====================================================
base         kronos.bars, kronos.io, kronos.kill_points      (nothing of ours)
model        kronos.model.*                                  base
data         kronos.data.*                                   base
stats        kronos.stats.*                                  base
forecasting  kronos.forecasting.*, kronos.onnx.*             base, model, data, stats
package      kronos (its __init__: the public names)         base, model, forecasting
engines      kronos.engines                                  base, data, stats, forecasting
universe     kronos.universe                                 base, data, stats, forecasting, engines
evaluation   kronos.evaluation.*                             base, data, stats, forecasting, engines
backtest     kronos.backtest.*                               base, data, stats, forecasting, engines, evaluation
training     kronos.training.*                               base, model, data, stats, forecasting, evaluation
charts       kronos.charts                                   base, data, forecasting
service      kronos.service.*                                base, data, stats, forecasting, charts, package
cli          kronos.cli, kronos.__main__, kronos.commands.*  every layer
===========  ==============================================  =====================================================

So the networks never see a data file, data reading and statistics know nothing of models, and nothing below the
command line imports ``kronos.commands``. Beside the table: the networks and the generation engine import no
pandas, the ONNX backend imports no torch, and no module imports another module's private (``_``) names.
The import graph (``tests/test_imports.py``) counts imports anywhere in a module, lazy ones included.
"""

from __future__ import annotations

import ast

from .test_imports import _modules, import_graph, imported_from

PACKAGE = "kronos"
LAYERS: dict[str, tuple[tuple[str, ...], set[str]]] = {  # layer: (module prefixes, the layers it may import)
    "base": (("kronos.bars", "kronos.io", "kronos.kill_points"), set()),
    "model": (("kronos.model",), {"base"}),
    "data": (("kronos.data",), {"base"}),
    "stats": (("kronos.stats",), {"base"}),
    "forecasting": (("kronos.forecasting", "kronos.onnx"), {"base", "model", "data", "stats"}),
    "package": ((PACKAGE,), {"base", "model", "forecasting"}),  # kronos/__init__.py alone
    "engines": (("kronos.engines",), {"base", "data", "stats", "forecasting"}),
    "universe": (("kronos.universe",), {"base", "data", "stats", "forecasting", "engines"}),
    "evaluation": (("kronos.evaluation",), {"base", "data", "stats", "forecasting", "engines"}),
    "backtest": (("kronos.backtest",), {"base", "data", "stats", "forecasting", "engines", "evaluation"}),
    "training": (("kronos.training",), {"base", "model", "data", "stats", "forecasting", "evaluation"}),
    "charts": (("kronos.charts",), {"base", "data", "forecasting"}),
    "service": (("kronos.service",), {"base", "data", "stats", "forecasting", "charts", "package"}),
    "cli": (("kronos.cli", "kronos.__main__", "kronos.commands"), {
        "base", "model", "data", "stats", "forecasting", "package", "engines", "universe", "evaluation", "backtest",
        "training",
        "charts", "service"}),
}

NO_PANDAS = ("kronos.model", "kronos.forecasting.generation")  # the networks and the generation engine
ONNX_BACKEND = ("kronos.onnx.predictor", "kronos.onnx.runtime", "kronos.onnx.sampling", "kronos.onnx")
ONNX_EXPORT = "kronos.onnx.export"  # exporting needs PyTorch by nature; running the export does not

# -- the forecasting door -------------------------------------------------------------------------------------
# The service and the command line reach the model only through the forecasting door (kronos.forecasting.forecast,
# with its options, inputs and results, and the predictor that loads a model): they never import the networks or
# the engine themselves. Of the model layer they may read where a model comes from, its files and its precision.
DOOR = "kronos.forecasting.forecast"
FRONT_ENDS = ("kronos.service", "kronos.commands", "kronos.cli")
ENGINE_AND_NETWORKS = ("kronos.forecasting.generation", "kronos.forecasting.paths", "kronos.forecasting.past_forecasts",
                       "kronos.model.network", "kronos.model.tokenizer", "kronos.model.modules",
                       "kronos.model.kv_cache", "kronos.model.quantizer")
MODEL_FILES = ("kronos.model.checkpoint", "kronos.model.default_model", "kronos.model.precision")


def in_layer(module: str) -> str:
    """The layer of a kronos module: the one whose prefix matches most specifically (``kronos`` only itself)."""
    best, length = None, -1
    for layer, (prefixes, _) in LAYERS.items():
        for prefix in prefixes:
            inside = module == prefix or (prefix != PACKAGE and module.startswith(prefix + "."))
            if inside and len(prefix) > length:
                best, length = layer, len(prefix)
    if best is None:
        raise KeyError(f"{module} is in no layer of LAYERS; add it to the table")
    return best


def _reach(graph: dict[str, set[str]], start: str) -> set[str]:
    """``start`` and every kronos module it imports, directly or through others."""
    seen, todo = {start}, [start]
    while todo:
        for nxt in graph[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def external_imports() -> dict[str, set[str]]:
    """kronos module -> the top-level names of the other packages it imports anywhere (torch, pandas ...)."""
    out = {}
    for name, (path, _) in _modules().items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                found.add(node.module.split(".")[0])
        out[name] = found - {"kronos"}
    return out


def private_names(source: str, name: str, is_package: bool = False) -> set[tuple[str, str, str]]:
    """(importer, module, name) for each ``from module import _name`` of another kronos module in ``source``,
    the text of module ``name``."""
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            module = imported_from(name, is_package, node)
            out |= {(name, module, alias.name) for alias in node.names if module.split(".")[0] == "kronos"
                    and module != name and alias.name.startswith("_") and not alias.name.startswith("__")}
    return out


def private_imports() -> set[tuple[str, str, str]]:
    """:func:`private_names` over every kronos module."""
    return set().union(*(private_names(path.read_text(), name, is_package)
                         for name, (path, is_package) in _modules().items()))


def test_every_module_is_in_exactly_one_layer_and_the_table_is_a_hierarchy():
    graph = import_graph()
    assert {in_layer(m) for m in graph} == set(LAYERS)  # every layer holds modules; every module has a layer
    for layer, (_, allowed) in LAYERS.items():
        assert layer not in allowed and allowed <= set(LAYERS), layer
        for other in allowed:  # no two layers may import each other
            assert layer not in LAYERS[other][1], f"{layer} and {other} may import each other"


def test_imports_follow_the_layer_table():
    graph = import_graph()
    wrong = sorted(f"{a} ({in_layer(a)}) imports {b} ({in_layer(b)})" for a, targets in graph.items() for b in targets
                   if in_layer(b) != in_layer(a) and in_layer(b) not in LAYERS[in_layer(a)][1])
    assert not wrong, "imports across the layering:\n" + "\n".join(wrong)


def test_the_networks_never_import_the_data_layer_or_anything_above():
    graph = import_graph()
    for module in (m for m in graph if in_layer(m) == "model"):
        assert {in_layer(m) for m in _reach(graph, module)} <= {"model", "base"}, module


def test_nothing_below_the_command_line_imports_commands():
    graph = import_graph()
    users = sorted(a for a, targets in graph.items() for b in targets
                   if b.startswith("kronos.commands") and in_layer(a) != "cli")
    assert not users, f"{users} import kronos.commands"


def test_the_networks_and_the_engine_never_import_pandas():
    graph, external = import_graph(), external_imports()
    starts = [m for m in graph if any(m == p or m.startswith(p + ".") for p in NO_PANDAS)]
    assert "kronos.model.network" in starts and "kronos.forecasting.generation" in starts
    for start in starts:
        users = sorted(m for m in _reach(graph, start) if "pandas" in external[m])
        assert not users, f"{start} reaches pandas through {users}"


def test_the_onnx_backend_imports_no_torch():
    graph, external = import_graph(), external_imports()
    assert "torch" in external[ONNX_EXPORT]  # the check sees torch where it is
    for start in ONNX_BACKEND:
        users = sorted(m for m in _reach(graph, start) if "torch" in external[m])
        assert not users, f"{start} reaches torch through {users}"


def test_no_module_imports_another_modules_private_names():
    found = private_imports()
    assert not found, f"private names imported across modules: {sorted(found)}"


def test_the_checks_see_what_they_forbid():
    assert private_names("from ..data.tables import _one_series, Series\nfrom .x import __all__\n",
                         "kronos.training.splits") == {("kronos.training.splits", "kronos.data.tables", "_one_series")}
    assert private_names("from . import _helper\n", "kronos.data", is_package=True) == set()  # its own names
    assert _reach({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"a"}}, "a") == {"a", "b", "c"}
    assert in_layer("kronos.commands.forecast") == "cli" and in_layer("kronos") == "package"
    assert in_layer("kronos.onnx.runtime") == "forecasting" and in_layer("kronos.io") == "base"
    assert "pandas" in external_imports()["kronos.data.tables"]


def test_the_service_and_the_command_line_reach_the_model_only_through_the_door():
    graph = import_graph()
    assert set(ENGINE_AND_NETWORKS) | set(MODEL_FILES) | {DOOR} <= set(graph)  # the names are real modules
    fronts = [m for m in graph if any(m == f or m.startswith(f + ".") for f in FRONT_ENDS)]
    direct = sorted(f"{a} imports {b}" for a in fronts for b in graph[a]
                    if b in ENGINE_AND_NETWORKS or (b.startswith("kronos.model.") and b not in MODEL_FILES))
    assert not direct, "front ends past the door:\n" + "\n".join(direct)
    for forecaster in ("kronos.commands.forecast", "kronos.service.serving"):  # the two that forecast
        assert DOOR in graph[forecaster], forecaster
