"""The code a step's command runs: the files DVC re-runs the step for when they change.

A step's command is ``cdrepro <step>``; ``cmd_<step>`` in ``cdrepro/cli.py`` imports the
modules of its step. Those modules and every cdrepro module they import when loaded (module
level imports, read from the source: nothing is imported here) are its code, less the glue
and side channels that do not change what it computes (``PLUMBING``). The methods package is
named as one folder: a new method is a new file there, and every step that builds models
depends on it without a list to edit.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1]  # src/
PLUMBING = frozenset(
    {
        "__init__.py",
        "__main__.py",
        "cli.py",
        "runs.py",
        "atomic.py",
        "tracking.py",
        "runlock.py",
        "dvc_bridge.py",
        "launcher.py",
        "gpu_slots.py",  # which GPU a job runs on, not what it computes
    }
)
FOLDERS = ("cdrepro/methods",)
"""Packages named as a folder rather than by their files."""


def module_file(name: str) -> Path | None:
    """The source file of cdrepro module ``name`` (a package's ``__init__.py``), or None."""
    path = SRC / Path(*name.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _module_level_imports(source: Path) -> list[str]:
    """The cdrepro modules ``source`` imports when it is loaded (not inside functions or classes)."""
    names: list[str] = []
    statements = list(ast.parse(source.read_text()).body)
    while statements:
        node = statements.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue  # imported when called, not when loaded
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            found = [alias.name for alias in node.names]
        else:
            statements.extend(child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt))
            continue
        names += [n for n in found if n.split(".")[0] == "cdrepro" and module_file(n)]
    return names


def imported_files(modules: set[str]) -> set[Path]:
    """The files of ``modules`` and of every cdrepro module they load, parent packages included."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        parts = todo.pop().split(".")
        new = {".".join(parts[:i]) for i in range(1, len(parts) + 1)} - seen
        seen |= new
        for module in new:
            todo += _module_level_imports(_imported_module_file(module))
    return {_imported_module_file(name) for name in seen}


def _imported_module_file(name: str) -> Path:
    """``module_file`` of a module known to be imported (so to have a file)."""
    path = module_file(name)
    # Names here are the CLI's imports, files found by _module_level_imports, or their parent
    # packages: all have a source file (a missing one failed on None.read_text() before).
    assert path is not None, f"cdrepro module {name} has no source file"
    return path


def command_modules(command: str) -> set[str]:
    """The cdrepro modules ``cmd_<command>`` of the CLI imports."""
    cli = ast.parse((SRC / "cdrepro" / "cli.py").read_text())
    name = f"cmd_{command.replace('-', '_')}"
    function = next((node for node in ast.walk(cli) if isinstance(node, ast.FunctionDef) and node.name == name), None)
    if function is None:
        raise ValueError(f"cdrepro/cli.py has no {name}: no command '{command}'")
    return {
        node.module
        for node in ast.walk(function)
        if isinstance(node, ast.ImportFrom) and node.module is not None and node.module.startswith("cdrepro.")
    }


def code_deps(command: str) -> list[str]:
    """The code of ``cdrepro <command>`` as paths from the repository root (``src/...``), the
    packages of ``FOLDERS`` as one folder each, sorted."""
    deps = set()
    for path in imported_files(command_modules(command)):
        if path.name in PLUMBING:
            continue
        relative = path.relative_to(SRC).as_posix()
        folder = next((f for f in FOLDERS if relative.startswith(f + "/")), None)
        deps.add(f"src/{folder or relative}")
    return sorted(deps)
