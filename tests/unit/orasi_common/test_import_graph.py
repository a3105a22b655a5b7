"""The shared package's import graph, read from the source (every import, lazy ones included).

At the granularity of orasi_common's subpackages and top-level modules (pdata, transport,
pipeline, receivers, exporters, processors, config, telemetry, discovery, testing, errors, ...):
no cycle, no exporter importing a receiver (or the reverse), and no import of a service package.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from pathlib import Path

import orasi_common

ROOT = Path(orasi_common.__file__).parent
SERVICES = ("orasi_agent", "orasi_gateway", "orasi_bridge")


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        yield ".".join(("orasi_common", *parts)).removesuffix(".__init__"), path


def _imports(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """Every module name ``path`` imports (``from a import b`` names ``a`` and ``a.b``), with its line."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            yield base, node.lineno
            yield from ((f"{base}.{alias.name}", node.lineno) for alias in node.names)


def _unit(module: str) -> str | None:
    """The subpackage or top-level module of orasi_common that ``module`` belongs to."""
    parts = module.split(".")
    if parts[0] != "orasi_common" or len(parts) < 2:
        return None
    name = parts[1]
    return name if (ROOT / name).is_dir() or (ROOT / f"{name}.py").is_file() else None


def _graph() -> dict[str, dict[str, list[str]]]:
    """unit → imported unit → the places (``file:line``) that import it."""
    graph: dict[str, dict[str, list[str]]] = {}
    for module, path in _modules():
        source = _unit(module)
        if source is None:
            continue
        for imported, line in _imports(module, path):
            target = _unit(imported)
            if target is not None and target != source:
                places = graph.setdefault(source, {}).setdefault(target, [])
                place = f"{path.relative_to(ROOT.parent)}:{line}"
                if place not in places:
                    places.append(place)
    return graph


def _cycle(graph: dict[str, dict[str, list[str]]]) -> list[str] | None:
    """One cycle of the graph as a path of units, or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(unit: str) -> list[str] | None:
        state[unit] = "open"
        stack.append(unit)
        for target in sorted(graph.get(unit, {})):
            if state.get(target) == "open":
                return [*stack[stack.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[unit] = "done"
        return None

    for unit in sorted(graph):
        if unit not in state and (found := visit(unit)):
            return found
    return None


def test_the_graph_is_read() -> None:
    """The reader sees the package's known edges (a reader that sees nothing passes the rest)."""
    graph = _graph()
    assert "errors" in graph["transport"] and "pdata" in graph["transport"]
    assert {"pipeline", "pdata"} <= set(graph["exporters"])


def test_no_cycle_between_the_subpackages() -> None:
    graph = _graph()
    cycle = _cycle(graph)
    if cycle:
        steps = [f"{a} → {b}: {', '.join(graph[a][b])}" for a, b in itertools.pairwise(cycle)]
        raise AssertionError("import cycle " + " → ".join(cycle) + "\n" + "\n".join(steps))


def test_exporters_and_receivers_do_not_import_each_other() -> None:
    graph = _graph()
    assert graph.get("exporters", {}).get("receivers") is None
    assert graph.get("receivers", {}).get("exporters") is None


def test_the_shared_package_imports_no_service() -> None:
    found = [
        f"{path.relative_to(ROOT.parent)}:{line} imports {name}"
        for module, path in _modules()
        for name, line in _imports(module, path)
        if name.split(".")[0] in SERVICES
    ]
    assert not found, "\n".join(found)
