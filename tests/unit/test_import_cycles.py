"""No import cycles in the aura package, hidden ones included.

Every import counts: at the top, inside a function, under `TYPE_CHECKING`, relative or absolute.
An import deferred into a function or kept for type checking only to dodge a cycle is still a
cycle: the shared names belong in a module both sides import.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: the folders that make up the aura package
PACKAGE_DIRS = ("cli", "engine", "http", "projections", "store")


def module_files() -> dict[str, Path]:
    """Every module of the aura package by its dotted name (a package by its `__init__.py`)."""
    modules: dict[str, Path] = {}
    for folder in PACKAGE_DIRS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(("aura", *parts))] = path
    return modules


def _known(name: str, modules: Mapping[str, object]) -> str | None:
    """The module `name` executes that is ours: itself, or the nearest package above it."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(
    source: str, module: str, is_package: bool, modules: Mapping[str, object]
) -> set[str]:
    """The modules of `modules` that `source` (the text of `module`) imports, anywhere in it.

    `from aura.x import y` imports the module aura.x.y when there is one, else aura.x.
    """
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                origin = f"{base}.{node.module}" if node.module else base
            else:
                origin = node.module or ""
            names = [origin, *(f"{origin}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(m for name in names if (m := _known(name, modules)) is not None)
    found.discard(module)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {
        name: imports_of(path.read_text(), name, path.name == "__init__.py", modules)
        for name, path in modules.items()
    }


def _components(graph: Mapping[str, set[str]]) -> Iterator[list[str]]:
    """Tarjan's strongly connected components (iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        component.append(top)
                        if top == node:
                            break
                    yield sorted(component)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])


def _cycle_through(start: str, graph: Mapping[str, set[str]], members: set[str]) -> list[str]:
    """A shortest path start -> ... -> start inside one component."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph.get(node, ())):
                if child == start:
                    return [*paths[node], start]
                if child in members and child not in paths:
                    paths[child] = [*paths[node], child]
                    following.append(child)
        frontier = following
    raise AssertionError(f"{start} is on no cycle")  # pragma: no cover - a component has one


def cycle_groups(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other (directly or not), in name order."""
    return sorted(
        component
        for component in _components(graph)
        if len(component) > 1 or component[0] in graph.get(component[0], ())
    )


def find_cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """One cycle per group of modules that import each other, named as a path
    `a -> b -> ... -> a` from the group's first module in name order."""
    return [_cycle_through(group[0], graph, set(group)) for group in cycle_groups(graph)]


def test_cycle_finder_names_each_cycle() -> None:
    graph = {
        "a": {"b"},
        "b": {"c"},
        "c": {"a", "d"},
        "d": set(),
        "e": {"e"},
        "f": {"a", "g"},
        "g": {"f"},
    }
    assert find_cycles(graph) == [["a", "b", "c", "a"], ["e", "e"], ["f", "g", "f"]]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"a", "c"}}) == []


def test_imports_are_read_wherever_they_are() -> None:
    names = "aura.http aura.http.app aura.http.keys aura.http.sse aura.engine aura.engine.engine"
    modules = dict.fromkeys(
        [*names.split(), "aura.engine.run", "aura.engine.run.worker", "aura.store"]
    )
    source = (
        "from typing import TYPE_CHECKING\n"
        "from aura.http import keys\n"  # a module named in a from-import
        "from .sse import Frame\n"  # relative
        "import aura.store\n"
        "if TYPE_CHECKING:\n"
        "    from aura.engine.engine import Engine\n"
        "def f():\n"
        "    from ..engine.run import worker\n"  # inside a function, two levels up
    )
    assert imports_of(source, "aura.http.app", False, modules) == {
        "aura.http",
        "aura.http.keys",
        "aura.http.sse",
        "aura.store",
        "aura.engine.engine",
        "aura.engine.run",
        "aura.engine.run.worker",
    }


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph()
    assert "aura.http.app" in graph and "aura.store.log" in graph  # it read the tree
    report = [
        f"{' -> '.join(cycle)} (of: {', '.join(group)})"
        for cycle, group in zip(find_cycles(graph), cycle_groups(graph), strict=True)
    ]
    assert not report, "import cycles:\n" + "\n".join(report)
