"""The repository's import graph, read with plain `ast`: no cycles, and no arrow from a lower layer to a higher one.

Every `import` counts, including the lazy ones inside functions: a lazy import still couples the two modules, it
only hides the coupling from the interpreter at start-up. The layers are the ones docs/architecture.md draws.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("nano2", "model", "verify", "curation", "mixtures", "synthetic", "train", "compress", "evals")

# Lower layers never import higher ones; packages within one layer do not import each other.
GROUND = "nano2 (ground floor)"
APPLICATION = "nano2.app"
LAYERS: tuple[tuple[str, ...], ...] = (
    (GROUND,),
    ("model", "verify"),
    ("curation",),
    ("mixtures",),
    ("synthetic",),
    ("train",),
    ("compress",),
    ("evals",),
    (APPLICATION,),
)
LAYER_OF = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the project's packages."""
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the project modules it imports (at any depth of the file, relative imports resolved)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    module = ".".join([*base, node.module] if node.module else base)
                else:
                    module = node.module or ""
                targets = [module, *(f"{module}.{alias.name}" for alias in node.names)]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def unit_of(module: str) -> str:
    """The layering unit of a module: a top-level package, or the ground floor / application halves of nano2."""
    top = module.split(".")[0]
    if top != "nano2":
        return top
    return APPLICATION if module == APPLICATION or module.startswith(APPLICATION + ".") else GROUND


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components with more than one node (each is an import cycle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def group_name(module: str, depth: int) -> str:
    """A module's package (depth 1) or subpackage (depth 2); nano2's ground floor and application stay apart."""
    if module.split(".")[0] == "nano2":
        return unit_of(module)
    return ".".join(module.split(".")[:depth])


def collapse(graph: dict[str, set[str]], depth: int) -> dict[str, set[str]]:
    """The graph between packages/subpackages: module names cut to `depth` components."""
    out: dict[str, set[str]] = defaultdict(set)
    for source, targets in graph.items():
        a = group_name(source, depth)
        for target in targets:
            b = group_name(target, depth)
            if a != b:
                out[a].add(b)
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(module_files())


def test_graph_sees_the_repository(graph: dict[str, set[str]]) -> None:
    """The reader must find real edges, or the other tests would pass on an empty graph."""
    assert "nano2.manifest" in graph["curation.manifests"]
    assert sum(len(v) for v in graph.values()) > 200


def test_cycle_detection_finds_a_planted_cycle() -> None:
    planted = {"a.x": {"a.y"}, "a.y": {"b.z"}, "b.z": {"a.x"}, "c": {"a.x"}}
    assert strongly_connected(planted) == [["a.x", "a.y", "b.z"]]
    assert strongly_connected(collapse(planted, 1)) == [["a", "b"]]


def test_no_module_import_cycles(graph: dict[str, set[str]]) -> None:
    assert strongly_connected(graph) == []


@pytest.mark.parametrize("depth", [1, 2])
def test_no_package_import_cycles(graph: dict[str, set[str]], depth: int) -> None:
    """No cycle between subpackages either (`curation.code` <-> `curation.licenses` would be one)."""
    grouped = collapse(graph, depth)
    assert strongly_connected(grouped) == []


def test_no_upward_imports(graph: dict[str, set[str]]) -> None:
    """A module imports only from its own package or from lower layers (see LAYERS)."""
    upward = []
    for source, targets in sorted(graph.items()):
        a = unit_of(source)
        for target in sorted(targets):
            b = unit_of(target)
            if a != b and LAYER_OF[b] >= LAYER_OF[a]:
                upward.append(f"{source} -> {target}  ({a} may not import {b})")
    assert upward == []
