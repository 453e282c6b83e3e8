"""The package's import graph: no cycles, and the data layer never reaches a backend.

The graph is read from the source with :mod:`ast` (nothing is imported): every
``import gpulogreg...`` and ``from ... import ...`` of a gpulogreg module, at
module level or inside a function, absolute or relative, is an edge from the
importing module to the module it names (``from gpulogreg.x import y`` names
``gpulogreg.x.y`` when that is a module, else ``gpulogreg.x``). Importing
``gpulogreg.a.b`` first runs the package ``gpulogreg.a``, so that is an edge
too, unless the importer lives in ``gpulogreg.a`` itself (its package was
initialised before it). Imports under ``if TYPE_CHECKING:`` never run, so they
are left out.
"""

from __future__ import annotations

import ast
import itertools
from collections import deque
from collections.abc import Iterator
from pathlib import Path

#: The package directory whose modules make up the graph.
PACKAGE_DIR = Path(__file__).resolve().parent.parent / "gpulogreg"
#: Modules of the data layer (and any module of a future ``gpulogreg.data`` package).
DATA_LAYER = ("gpulogreg.data",)
#: What the data layer may not import, directly or through other modules.
BACKENDS = "gpulogreg.backends"


def _module_names(package_dir: Path) -> dict[str, Path]:
    """Dotted name -> source file of every module of the package."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement in ``tree``, skipping ``if TYPE_CHECKING:`` bodies."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from _imports(ast.Module(body=[child], type_ignores=[]))
            continue
        yield from _imports(node)


def _longest_module(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is a module of the package."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def _edges(module: str, path: Path, modules: dict[str, Path]) -> dict[str, int]:
    """Modules of the package that ``module`` imports -> line of the first such import."""
    is_package = path.name == "__init__.py"
    found: dict[str, int] = {}
    for node in _imports(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        targets: list[str | None] = []
        if isinstance(node, ast.Import):
            targets = [_longest_module(alias.name, modules) for alias in node.names]
        else:
            if node.level:
                base_parts = module.split(".") if is_package else module.split(".")[:-1]
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join([*base_parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.append(sub if sub in modules else _longest_module(base, modules))
        for target in targets:
            if target is None:
                continue
            for package in _packages_run_first(target, module):
                found.setdefault(package, node.lineno)
            if target != module:
                found.setdefault(target, node.lineno)
    return found


def _packages_run_first(target: str, importer: str) -> list[str]:
    """Packages above ``target`` that importing it runs, other than the importer's own."""
    parts = target.split(".")
    packages = [".".join(parts[:end]) for end in range(1, len(parts))]
    return [p for p in packages if not (importer == p or importer.startswith(f"{p}."))]


def import_graph(package_dir: Path = PACKAGE_DIR) -> dict[str, dict[str, int]]:
    """module -> {imported module: line} over the whole package."""
    modules = _module_names(package_dir)
    return {name: _edges(name, path, modules) for name, path in modules.items()}


def _shortest_path(graph: dict[str, dict[str, int]], start: str, goal: str) -> list[str] | None:
    """Shortest import chain ``start -> ... -> goal`` (None when there is none)."""
    previous: dict[str, str] = {}
    queue = deque([start])
    seen = {start}
    while queue:
        node = queue.popleft()
        for nxt in sorted(graph[node]):
            if nxt == goal:
                chain = [goal, node]
                while chain[-1] != start:
                    chain.append(previous[chain[-1]])
                return chain[::-1]
            if nxt not in seen:
                seen.add(nxt)
                previous[nxt] = node
                queue.append(nxt)
    return None


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One shortest cycle through each edge that lies on a cycle (``a -> ... -> a``)."""
    cycles: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()
    for source in sorted(graph):
        for target in sorted(graph[source]):
            back = _shortest_path(graph, target, source)
            if back is None:
                continue
            cycle = [source, *back]
            # The same cycle found from another of its edges: compare rotations.
            ring = cycle[:-1]
            key = min(tuple(ring[i:] + ring[:i]) for i in range(len(ring)))
            if key not in seen:
                seen.add(key)
                cycles.append(cycle)
    return cycles


def _describe(graph: dict[str, dict[str, int]], chain: list[str]) -> str:
    return (
        " -> ".join(f"{a} (line {graph[a][b]})" for a, b in itertools.pairwise(chain))
        + f" -> {chain[-1]}"
    )


def test_graph_sees_every_form_of_import(tmp_path: Path) -> None:
    """The parser is not vacuous: each form of import is an edge, TYPE_CHECKING ones are not."""
    files = {
        "pkg/__init__.py": (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n"
        ),
        "pkg/a.py": "import pkg.sub.c\nfrom pkg import b\n",
        "pkg/b.py": "def f():\n    from .sub import c\n    from pkg.sub.c import name\n",
        "pkg/sub/__init__.py": "from ..b import f\n",
        "pkg/sub/c.py": "from . import d\nfrom .. import a\n",
        "pkg/sub/d.py": "import os\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = {k: set(v) for k, v in import_graph(tmp_path / "pkg").items()}
    assert graph == {
        "pkg": set(),
        "pkg.a": {"pkg.sub", "pkg.sub.c", "pkg.b"},  # pkg.sub runs before pkg.sub.c
        "pkg.b": {"pkg.sub", "pkg.sub.c"},
        "pkg.sub": {"pkg.b"},
        "pkg.sub.c": {"pkg.sub.d", "pkg.a"},  # its own package pkg.sub ran before it
        "pkg.sub.d": set(),
    }
    cycles = find_cycles(import_graph(tmp_path / "pkg"))
    assert ["pkg.a", "pkg.sub.c", "pkg.a"] in cycles
    assert ["pkg.b", "pkg.sub", "pkg.b"] in cycles


def test_no_import_cycles() -> None:
    graph = import_graph()
    cycles = find_cycles(graph)
    assert not cycles, "import cycles among gpulogreg's modules:\n" + "\n".join(
        _describe(graph, cycle) for cycle in cycles
    )


def _is_data_layer(module: str) -> bool:
    return any(module == name or module.startswith(f"{name}.") for name in DATA_LAYER)


def test_data_layer_never_reaches_a_backend() -> None:
    graph = import_graph()
    reaches = []
    for module in sorted(m for m in graph if _is_data_layer(m)):
        for target in sorted(t for t in graph if t == BACKENDS or t.startswith(f"{BACKENDS}.")):
            chain = _shortest_path(graph, module, target)
            if chain is not None:
                reaches.append(_describe(graph, chain))
                break
    assert not reaches, "the data layer imports a backend:\n" + "\n".join(reaches)


#: The layers of ARCHITECTURE.md, lowest first: a module may import only from its
#: own layer or a lower one. A package's name stands for all of its modules.
LAYERS = (
    (
        "gpulogreg",
        "gpulogreg._version",
        "gpulogreg._array",
        "gpulogreg._blas",
        "gpulogreg._compat",
        "gpulogreg._errors",
        "gpulogreg._progress",
        "gpulogreg._jsonlines",
        "gpulogreg._plot",
        "gpulogreg._numba_read",
        "gpulogreg._layout",
        "gpulogreg._typing",
        "gpulogreg._sklearn_params",
        "gpulogreg._sklearn_callbacks",
    ),
    ("gpulogreg._files", "gpulogreg.checkpoint", "gpulogreg._model_file"),
    ("gpulogreg._svmlight", "gpulogreg.io", "gpulogreg.data"),
    ("gpulogreg.backends",),
    ("gpulogreg.loss",),
    ("gpulogreg.solvers",),
    (
        "gpulogreg._fit",
        "gpulogreg._predict",
        "gpulogreg.inference",
        "gpulogreg._inference",
        "gpulogreg._lockstep",
        "gpulogreg._cv",
    ),
    ("gpulogreg.estimator", "gpulogreg.model_selection"),
    (
        "gpulogreg.persistence",
        "gpulogreg.cli",
        "gpulogreg._cli_stream",
        "gpulogreg.benchmark",
        "gpulogreg.sparse_problems",
        "gpulogreg.info",
        "gpulogreg.plots",
        "gpulogreg.accel",
    ),
)


def _layer(module: str) -> int:
    best, level = "", -1
    for index, names in enumerate(LAYERS):
        for name in names:
            matches = module == name or module.startswith(f"{name}.")
            if matches and len(name) > len(best):
                best, level = name, index
    return level


def test_every_module_imports_only_from_its_layer_or_below() -> None:
    graph = import_graph()
    unplaced = sorted(m for m in graph if _layer(m) < 0)
    assert not unplaced, f"modules missing from LAYERS (and ARCHITECTURE.md): {unplaced}"
    upward = [
        f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)}) "
        f"at line {line}"
        for module, targets in sorted(graph.items())
        for target, line in sorted(targets.items())
        if _layer(target) > _layer(module)
    ]
    assert not upward, "imports against the layering:\n" + "\n".join(upward)


def test_registries_name_modules_of_their_own_layer_or_below() -> None:
    """The registries import by name (``importlib``), which the graph does not see."""
    from gpulogreg.backends import BACKENDS
    from gpulogreg.solvers import SOLVERS

    targets = {
        "gpulogreg.solvers": [entry.target for entry in SOLVERS.values()],
        "gpulogreg.backends": list(BACKENDS.values()),
    }
    modules = import_graph()
    for registry, names in targets.items():
        for target in names:
            module = target.partition(":")[0]
            assert module in modules, f"{registry} names {target}, which does not exist"
            assert _layer(module) <= _layer(registry), f"{registry} names {target} above it"
