"""The package's import graph: no cycles, and the layers the design names (docs/design.md)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def import_graph() -> dict[str, set[str]]:
    """cdrepro module -> the cdrepro modules it imports anywhere (lazy imports included)."""
    modules = {}
    for path in SRC.rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cdrepro"):
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target) :] + [node, target] if target in path else [node, target]
            if not state.get(target):
                found = visit(target, path + [node])
                if found:
                    return found
        state[node] = 2
        return None

    for node in sorted(graph):
        if not state.get(node):
            found = visit(node, [])
            if found:
                return found
    return None


def test_no_import_cycles():
    assert find_cycle(import_graph()) is None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) is not None
    assert find_cycle({"a": {"b"}, "b": set()}) is None


LATEX = {"cdrepro.latex", "cdrepro.tables", "cdrepro.comparison.table"}
"""The LaTeX toolkit and the two modules that write tables with it."""
OUTPUTS = {
    "cdrepro.results",
    "cdrepro.published",
    "cdrepro.comparison",
    "cdrepro.comparison.frame",
    *LATEX,
    "cdrepro.figures",
    "cdrepro.tracking",
}


def test_layers():
    """Methods know nothing of training, config or outputs; figures never import the LaTeX
    code; the training loop and the step do not reach into results or reports; the results
    contract knows nothing of the published numbers; the processes' plumbing and the launcher
    know nothing of the rest."""
    graph = import_graph()

    def reaches(module: str) -> set[str]:
        seen, todo = set(), [module]
        while todo:
            for target in graph[todo.pop()] - seen:
                seen.add(target)
                todo.append(target)
        return seen

    for name in (m for m in graph if m == "cdrepro.methods" or m.startswith("cdrepro.methods.")):
        assert not reaches(name) & {
            "cdrepro.train",
            "cdrepro.config",
            "cdrepro.run_settings",
            "cdrepro.cli",
            *OUTPUTS,
        }, name
    for name in (m for m in graph if m.startswith("cdrepro.figures")):
        assert not reaches(name) & LATEX, name
    for name in ("cdrepro.train", "cdrepro.step"):
        assert not reaches(name) & OUTPUTS, name
    assert not reaches("cdrepro.results") & {"cdrepro.published", "cdrepro.comparison", *LATEX}
    for name in ("cdrepro.distributed", "cdrepro.launcher"):
        assert not reaches(name), (name, reaches(name))
