"""Every default of a setting is written once, in the schema (issue 21, item 3).

``cdrepro.config.with_defaults`` fills the schema's defaults in when a params file is loaded, so
the code reads every setting as ``params[...][key]``. A second copy of a default in the code (a
``.get(key, default)`` fallback, a dataclass field default, a keyword default) would be a
second truth that a change of the schema would not change; this test finds them in ``src/``.

The values ``RunSettings`` leaves out of its digest (``cdrepro.run_settings.SETTINGS_ADDED_LATER``)
are not defaults but facts about earlier runs; they are named so, in one place.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
from pathlib import Path
from typing import Any

import yaml

SRC = Path(__file__).resolve().parents[1] / "src"
SCHEMA = SRC / "cdrepro" / "schemas" / "params.schema.yaml"

# Mappings that are not params but have keys named like settings; each with why. A `.get(key,
# fallback)` on one of them is not a second default of the setting.
NOT_PARAMS = {
    # MLflow's tags of a logged run (a run logged by an older version may lack one).
    ("cdrepro/tracking.py", "tags"),
}


def schema_defaults(schema: dict[str, Any] | None = None) -> dict[str, list[Any]]:
    """Key name -> the defaults the schema gives keys of that name (anywhere: sections, a
    dataset's keys, a run entry's, a variant's switches)."""
    schema = schema or yaml.safe_load(SCHEMA.read_text())
    found: dict[str, list[Any]] = {}

    def walk(node: Any) -> None:
        if not isinstance(node, dict):
            return
        for key, sub in node.get("properties", {}).items():
            if isinstance(sub, dict) and "default" in sub:
                found.setdefault(key, []).append(sub["default"])
            walk(sub)
        for child in ("additionalProperties", "items"):
            walk(node.get(child))
        for sub in node.get("$defs", {}).values():
            walk(sub)

    walk(schema)
    return found


def module_constants(tree: ast.Module) -> dict[str, Any]:
    """A module's top-level ``NAME = <literal>`` (``DEFAULT_STEM = "imagenet"``)."""
    constants = {}
    for node in tree.body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign) and node.value is not None
            else []
        )
        for target in targets:
            if isinstance(target, ast.Name):
                with contextlib.suppress(ValueError):  # not a literal: not a default
                    constants[target.id] = ast.literal_eval(node.value)
    return constants


_UNKNOWN = object()


def value_of(node: ast.expr, constants: dict[str, Any]) -> Any:
    """A default's value: a literal, or a constant of some module of the package."""
    try:
        return ast.literal_eval(node)
    except ValueError:
        return constants.get(node.id, _UNKNOWN) if isinstance(node, ast.Name) else _UNKNOWN


def is_dataclass(node: ast.ClassDef) -> bool:
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if (isinstance(target, ast.Name) and target.id == "dataclass") or (
            isinstance(target, ast.Attribute) and target.attr == "dataclass"
        ):
            return True
    return False


def second_defaults(sources: dict[str, str], defaults: dict[str, list[Any]]) -> list[str]:
    """Where ``sources`` (relative path -> code) give a setting of the schema a default of
    their own: ``.get("<key>", fallback)`` (any fallback), and dataclass fields and keyword
    arguments named as a key whose default is the schema's (a literal, or a module constant)."""
    trees = {path: ast.parse(code) for path, code in sources.items()}
    constants: dict[str, Any] = {}
    for tree in trees.values():
        constants.update(module_constants(tree))
    found = []

    def same_as_schema(name: str, node: ast.expr | None) -> bool:
        if node is None or name not in defaults:
            return False
        value = value_of(node, constants)
        return value is not _UNKNOWN and any(value == d and type(value) is type(d) for d in defaults[name])

    for path, tree in sorted(trees.items()):
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("get", "setdefault", "pop")
                and len(node.args) == 2
                and isinstance(node.args[0], ast.Constant)
                and node.args[0].value in defaults
                and (path, ast.unparse(node.func.value)) not in NOT_PARAMS
            ):
                found.append(f"{path}:{node.lineno}: {ast.unparse(node)}")
            elif isinstance(node, ast.ClassDef) and is_dataclass(node):
                for field in node.body:
                    if (
                        isinstance(field, ast.AnnAssign)
                        and isinstance(field.target, ast.Name)
                        and same_as_schema(field.target.id, field.value)
                    ):
                        found.append(f"{path}:{field.lineno}: {node.name}.{ast.unparse(field)}")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args
                positional = args.posonlyargs + args.args
                pairs = [
                    *zip(positional[len(positional) - len(args.defaults) :], args.defaults, strict=True),
                    *zip(args.kwonlyargs, args.kw_defaults, strict=True),
                ]
                for arg, default in pairs:
                    if same_as_schema(arg.arg, default):
                        found.append(f"{path}:{node.lineno}: {node.name}({arg.arg}={ast.unparse(default)})")
    return found


def package_sources() -> dict[str, str]:
    return {str(path.relative_to(SRC)): path.read_text() for path in SRC.rglob("*.py")}


def test_every_default_is_the_schemas_alone():
    found = second_defaults(package_sources(), schema_defaults())
    assert not found, (
        "a default written in the code as well as in the schema (read params filled by "
        "cdrepro.config.with_defaults instead):\n" + "\n".join(found)
    )


def test_the_scan_finds_what_it_looks_for():
    """The scan itself: each form of a second default is found, in code like the old config.py's."""
    code = """
from dataclasses import dataclass, field
DEFAULT_STEM = "imagenet"

@dataclass(frozen=True)
class Settings:
    lr: float
    stem: str = DEFAULT_STEM
    compile: str = "augment"
    method: str = ""  # not the schema's value: another meaning

def resolve(model, dataset, eval_params, tags, precision="auto", device=None):
    stem = model.get("stem", DEFAULT_STEM)
    flip = dataset.get("hflip", True)
    backend = eval_params.get("kmeans_backend", "sklearn")  # another value is still a second default
    title = dataset.get("title", "x")  # title has no default in the schema
    return tags.get("seed", 0)
"""
    found = second_defaults({"cdrepro/tracking.py": code}, schema_defaults())
    assert [line.split(": ", 1)[1] for line in found] == [
        "Settings.stem: str = DEFAULT_STEM",
        "Settings.compile: str = 'augment'",
        "resolve(precision='auto')",
        "model.get('stem', DEFAULT_STEM)",
        "dataset.get('hflip', True)",
        "eval_params.get('kmeans_backend', 'sklearn')",
    ], found


def test_run_settings_takes_every_field_from_the_params():
    from cdrepro.run_settings import RunSettings

    with_default = [
        f.name
        for f in dataclasses.fields(RunSettings)
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    ]
    assert with_default == []
