"""Load and validate params files.

Everything the pipeline does is decided by one params file (``params.yaml`` or a profile such
as ``workflow/configs/paper.yaml``). This module reads it, checks it against the JSON schema
(``schemas/params.schema.yaml``), adds the cross-field checks a schema cannot express, and fills
in the schema's defaults, the only place defaults are written: code reads a loaded params file
as ``params[section][key]``. It also says what a variant's settings are (its switches and its
method's options). A run's resolved settings and their digest are ``cdrepro.run_settings``.
"""

from __future__ import annotations

import copy
import functools
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from cdrepro.methods import METHODS
from cdrepro.runs import ProfilePaths, run_id, run_of

# The variant name of the raw-pixel K-means rows in the tables (cdrepro.results): no variant of a
# params file may take it. Here rather than in results, which imports this module.
BASELINE_VARIANT = "kmeans_pixels"

# The sources that read an image folder (``path``) and resize it at prepare (``store_size``);
# the others ignore both keys, so they are refused there rather than silently unused.
FOLDER_SOURCES = ("imagenet10", "folder")
OFFICIAL_SOURCES = frozenset({"cifar10", "cifar100", "cifar100_20", "stl10"})
"""The sources whose prepared metadata records an official split (``source_info.splits``,
written by ``cdrepro.data.sources``); a folder source has one where it names a ``test_path``.
Every other dataset's held-out split is stratified (``cdrepro.data.heldout``)."""


class ParamsError(ValueError):
    """A params file is invalid; the message names the offending key."""


def _strict_integer(checker: Any, instance: Any) -> bool:
    """JSON Schema counts 2.0 as an integer; the code cannot use it as one (``bs128.0``)."""
    return isinstance(instance, int) and not isinstance(instance, bool)


# The schema's validator, but with whole-number floats no integers.
_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _strict_integer),
)


class _DuplicateKey(yaml.constructor.ConstructorError):
    """A key given twice in one mapping; the message says what to do."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise _DuplicateKey(
                    "while reading a mapping",
                    node.start_mark,
                    f"found the key '{key}' twice (first on line {seen[key].line + 1}); remove one of them",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def read_yaml(handle: Any) -> Any:
    """YAML from a stream (so errors name the file and line), duplicate keys refused."""
    return yaml.load(handle, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def _yaml_error_line(path: Path, exc: yaml.YAMLError) -> str:
    """A YAML error as one line naming the file, line and column (PyYAML's own message spans
    several lines, with a snippet and a caret)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if isinstance(exc, _DuplicateKey):
        return f"{path}{where}: {problem}"
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and context_mark and context_mark is not mark:
        problem += f" ({context} at line {context_mark.line + 1} column {context_mark.column + 1})"
    return f"{path}{where}: not valid YAML: {problem}; fix the YAML there"


def read_params_file(path: str | Path) -> dict[str, Any]:
    """The params file's mapping as written (no defaults, not validated). ParamsError, one
    line, if it is missing, a folder, not UTF-8, not YAML (naming line and column) or not a
    mapping."""
    path = Path(path)
    if path.is_dir():
        raise ParamsError(
            f"{path} is a folder, not a params file; give the path of a YAML params "
            f"file (such as {path / 'params.yaml'})"
        )
    if not path.is_file():
        raise ParamsError(f"params file not found: {path}; check the path")
    try:
        params = read_yaml(_params_text(path))  # YAML errors carry the line and column
    except yaml.YAMLError as exc:
        raise ParamsError(_yaml_error_line(path, exc)) from exc
    if not isinstance(params, dict):
        raise ParamsError(f"{path}: expected a mapping of keys at the top level")
    return params


def _params_text(path: Path) -> str:
    """The file's text, decoded as UTF-8 whatever the locale (YAML files are UTF-8). Decoded
    whole, so that an undecodable byte is reported with the file and its line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ParamsError(
            f"{path} line {line}: byte 0x{data[exc.start]:02x} is not UTF-8 text (a file "
            "saved as Latin-1 or Windows-1252?); save the file as UTF-8"
        ) from exc


@functools.cache
def load_schema() -> dict[str, Any]:
    """The params schema (parsed once: callers must not modify it)."""
    text = resources.files("cdrepro").joinpath("schemas/params.schema.yaml").read_text()
    return yaml.safe_load(text)


def _switch_schema() -> dict[str, Any]:
    return load_schema()["$defs"]["switches"]["properties"]


# What every variant may set whatever its method: ``method`` and the shared protocol's switches
# (``views``, ``schedule``, ``grad_clip``); the schema's ``switches``.
VARIANT_KEYS = tuple(_switch_schema())


def variant_switches(params: dict[str, Any], variant: str) -> dict[str, Any]:
    """A variant's switches (``VARIANT_KEYS``): the schema's defaults, then the variant's own.
    Applied per run, never filled into the params (``with_defaults``)."""
    declared = params["variants"][variant]
    return {key: declared[key] if key in declared else sub["default"] for key, sub in _switch_schema().items()}


def with_defaults(params: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``params`` with every default of the schema filled in where its key is
    missing, the default blocks' own defaults too (``figures: {}`` gets ``tsne``, and that its
    ``sample``...). Filled once at load time, so that every reader sees the same values.
    Variants are not filled: a variant's switches (``$ref`` to ``switches``) apply per run."""
    return _fill_defaults(copy.deepcopy(params), load_schema())


def _fill_defaults(value: Any, schema: dict[str, Any]) -> Any:
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _fill_defaults(item, schema["items"])
    if not isinstance(value, dict):
        return value  # not what the schema says: validation names it
    for key, sub in schema.get("properties", {}).items():
        if key not in value and "default" in sub:
            value[key] = copy.deepcopy(sub["default"])
        if key in value:
            _fill_defaults(value[key], sub)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict) and "$ref" not in extra:
        for key in value.keys() - schema.get("properties", {}).keys():
            _fill_defaults(value[key], extra)
    return value


def dataset_defaults() -> dict[str, Any]:
    """The schema's defaults of a dataset's keys (``crop_min_scale``...)."""
    dataset = load_schema()["properties"]["datasets"]["additionalProperties"]
    return {key: sub["default"] for key, sub in dataset["properties"].items() if "default" in sub}


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) if not isinstance(p, int) else f"[{p}]" for p in error.absolute_path]
    return ".".join(parts).replace(".[", "[") or "<top level>"


def validate_params(params: Any, source: str = "params") -> dict[str, Any]:
    """Check ``params`` against the schema and the cross-field rules; return a copy with the
    schema's defaults filled in (``params`` itself is left as it is).

    Raises ParamsError naming the bad key (``train.lr``, ``runs[3].variant``, ...).
    """
    if not isinstance(params, dict):
        raise ParamsError(f"{source}: expected a mapping of keys at the top level")
    _check_finite(params, source)
    validator = _Validator(load_schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        raise ParamsError(f"{source}: {_schema_error_line(errors[0])}")
    filled = with_defaults(params)  # the checks below read the values every step will use
    _check_cross_fields(filled, source)
    _check_results_dir(filled, source)
    return filled


def _schema_error_line(error: jsonschema.ValidationError) -> str:
    """``key: what is wrong``; unknown keys with the allowed ones, and the schema's own
    ``x-hint`` (what to do, e.g. a seed's range) where the failing part of it has one."""
    key, schema = _key_path(error), error.schema if isinstance(error.schema, dict) else {}
    line = f"{key}: {error.message}"
    if error.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        line = f"{key}: unknown key — {error.message}"
        line += f" (allowed here: {', '.join(allowed)})" if allowed else ""
    return line + (f"; {schema['x-hint']}" if "x-hint" in schema else "")


# How a user writes NaN and infinity in YAML, for the message.
_YAML_SPELLING = {"nan": ".nan", "inf": ".inf", "-inf": "-.inf"}


def _check_finite(params: dict[str, Any], source: str) -> None:
    """No NaN or infinity anywhere: the schema's bounds let NaN through (every comparison with
    it is false), and training or K-means would fail much later without naming the key."""
    found = _first_non_finite(params, "")
    if found:
        key, value = found
        raise ParamsError(
            f"{source}: {key}: {_YAML_SPELLING[str(value)]} is not a finite number; write a finite number there"
        )


def _first_non_finite(value: Any, key: str) -> tuple[str, float] | None:
    if isinstance(value, float) and not math.isfinite(value):
        return key, value
    if isinstance(value, dict):
        children = ((f"{key}.{k}" if key else str(k), v) for k, v in value.items())
    elif isinstance(value, list):
        children = ((f"{key}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for child_key, child in children:
        found = _first_non_finite(child, child_key)
        if found:
            return found
    return None


def _check_results_dir(params: dict[str, Any], source: str) -> None:
    results = Path(params["results_dir"])
    for path in (results, results / params["profile"]):
        if path.exists() and not path.is_dir():
            raise ParamsError(
                f"{source}: results_dir: {path} exists and is not a folder; point "
                "results_dir at a folder (it is created if missing)"
            )


def _check_cross_fields(params: dict[str, Any], source: str) -> None:
    _check_variants(params, source)
    model = params["model"]
    if model["backbone_width"] != 64 and model["backbone"] == "resnet50":
        raise ParamsError(
            f"{source}: model.backbone_width: only resnet18 and resnet34 can be "
            "narrowed; use 64 (torchvision's width) with resnet50"
        )
    for name, dataset in params["datasets"].items():
        _check_dataset(name, dataset, source)
    _check_runs(params, source)


def _check_variants(params: dict[str, Any], source: str) -> None:
    for name, options in params["methods"].items():
        _check_method_options(name, options, f"methods.{name}", source)
    for name, variant in params["variants"].items():
        if name == BASELINE_VARIANT:
            raise ParamsError(
                f"{source}: variants.{name}: the name is reserved for the raw-pixel K-means rows; rename the variant"
            )
        method = variant_switches(params, name)["method"]
        own = {k: v for k, v in variant.items() if k not in VARIANT_KEYS}
        _check_method_options(method, own, f"variants.{name}", source)
        merged = method_options(params, name)
        problem = METHODS[method].check_options(merged)
        if problem:
            raise ParamsError(f"{source}: variants.{name}: {problem}")


def _check_dataset(name: str, dataset: dict[str, Any], source: str) -> None:
    kind = dataset["source"]
    if kind in FOLDER_SOURCES and "path" not in dataset:
        raise ParamsError(
            f"{source}: datasets.{name}.path: required for source '{kind}' "
            "(a folder laid out as <path>/<class>/<image>)"
        )
    if "images_per_class" in dataset and kind != "folder":
        raise ParamsError(
            f"{source}: datasets.{name}.images_per_class: only a 'folder' source can be "
            f"subsampled (this one is '{kind}'); remove the key"
        )
    if "test_path" in dataset and kind != "folder":
        raise ParamsError(
            f"{source}: datasets.{name}.test_path: only a 'folder' source reads a test folder "
            f"(this one is '{kind}'{', which has its official test split' if kind in OFFICIAL_SOURCES else ''}); "
            "remove the key"
        )
    for key in ("long_tail", "correlated"):
        if key in dataset and dataset["train_on"] != "train":
            raise ParamsError(
                f"{source}: datasets.{name}.{key}: applies to the train split only, so it needs "
                f"datasets.{name}.train_on: train (the test split would otherwise be trained on "
                "too); add that key"
            )
    for key in ("path", "store_size"):
        if key in dataset and kind not in FOLDER_SOURCES:
            raise ParamsError(
                f"{source}: datasets.{name}.{key}: a '{kind}' source ignores it (only "
                f"{' and '.join(FOLDER_SOURCES)} sources read a folder and resize it); "
                "remove the key"
            )


def _check_runs(params: dict[str, Any], source: str) -> None:
    seen: dict[str, int] = {}
    for i, raw in enumerate(params["runs"]):
        if raw["dataset"] not in params["datasets"]:
            raise ParamsError(
                f"{source}: runs[{i}].dataset: unknown dataset '{raw['dataset']}' "
                f"(defined under datasets: {', '.join(sorted(params['datasets']))})"
            )
        if raw["variant"] not in params["variants"]:
            raise ParamsError(
                f"{source}: runs[{i}].variant: unknown variant '{raw['variant']}' "
                f"(defined under variants: {', '.join(sorted(params['variants']))})"
            )
        gpus = params["train"]["gpus_per_run"]
        if raw["batch_size"] % gpus:
            raise ParamsError(
                f"{source}: runs[{i}].batch_size: {raw['batch_size']} does not split evenly "
                f"among train.gpus_per_run = {gpus} processes; make it a multiple of {gpus}"
            )
        method = METHODS[method_of(params, raw["variant"])]
        options = resolve_options(method.name, method_options(params, raw["variant"]), raw["batch_size"])
        problem = method.check_run(options, raw["batch_size"])
        if problem:
            raise ParamsError(f"{source}: runs[{i}]: {problem}")
        rid = run_id(run_of(raw))
        if rid in seen:
            raise ParamsError(f"{source}: runs[{i}]: duplicate of runs[{seen[rid]}] ({rid})")
        seen[rid] = i


def _check_method_options(method: str, options: dict[str, Any], where: str, source: str) -> None:
    """``options`` must be options of ``method``, of the types it declares."""
    if method not in METHODS:
        key = where if where.startswith("methods.") else f"{where}.method"
        raise ParamsError(f"{source}: {key}: unknown method '{method}' (known: {', '.join(sorted(METHODS))})")
    declared = METHODS[method].options
    for key in options:
        if key not in declared:
            owners = sorted(m for m, cls in METHODS.items() if key in cls.options)
            whose = (
                f"'{key}' is an option of {', '.join(owners)}, not of {method}"
                if owners
                else f"'{key}' is not an option of method {method}"
            )
            allowed = ", ".join(sorted(declared)) or "none"
            raise ParamsError(f"{source}: {where}.{key}: {whose} (options of {method}: {allowed})")
    schema = {"$defs": load_schema()["$defs"], "type": "object", "properties": dict(declared)}
    for error in _Validator(schema).iter_errors(options):
        raise ParamsError(f"{source}: {where}.{_key_path(error)}: {error.message}")


def method_of(params: dict[str, Any], variant: str) -> str:
    return variant_switches(params, variant)["method"]


def method_options(params: dict[str, Any], variant: str) -> dict[str, Any]:
    """A variant's method options: the method's defaults, then ``methods.<method>``, then the
    variant's own (unresolved: ``batch_size`` widths stay as written)."""
    method = method_of(params, variant)
    options = {key: spec["default"] for key, spec in METHODS[method].options.items()}
    if "methods" not in params:  # a dict not filled yet (a test's): loaded params have the section
        params = with_defaults(params)
    options.update(params["methods"].get(method, {}))
    options.update({k: v for k, v in params["variants"][variant].items() if k not in VARIANT_KEYS})
    return options


def resolve_dim(value: int | str, batch_size: int) -> int:
    """A width as written (``#/$defs/dim``: a number, ``batch_size`` or ``half_batch``) at a
    run's batch size."""
    if value == "batch_size":
        return batch_size
    return batch_size // 2 if value == "half_batch" else int(value)


def resolve_options(method: str, options: dict[str, Any], batch_size: int) -> dict[str, Any]:
    """Widths given as ``batch_size`` become numbers, and numbers the type the method declares
    (1 and 1.0 must give one digest)."""
    resolved = {}
    for key, value in options.items():
        spec = METHODS[method].options[key]
        if spec.get("$ref") == "#/$defs/dim":
            value = resolve_dim(value, batch_size)
        elif spec.get("type") == "number":
            value = float(value)
        resolved[key] = value
    return resolved


def load_params(path: str | Path) -> dict[str, Any]:
    """Read and validate a params file; the schema's defaults are filled in."""
    return validate_params(read_params_file(path), source=str(path))


def check_batch_sizes(params: dict[str, Any], dataset: str, n_images: int, source: str = "params") -> None:
    """Every run on ``dataset`` must have a batch size of at most ``n_images``: training drops the
    last incomplete batch, so a larger one leaves no step to run. ParamsError names the run."""
    for i, raw in enumerate(params["runs"]):
        if raw["dataset"] == dataset and raw["batch_size"] > n_images:
            raise ParamsError(
                f"{source}: runs[{i}].batch_size: {raw['batch_size']} is larger than dataset "
                f"'{dataset}' ({n_images} images); use a batch size of at most {n_images}"
            )


def check_against_prepared(params: dict[str, Any], source: str = "params") -> list[str]:
    """The checks that need the data: batch sizes against each dataset already prepared.

    Reads only the small metadata file that ``cdrepro prepare`` writes beside the array
    (``<results_dir>/<profile>/data/<name>.json``); datasets not prepared yet are skipped (train
    checks them). Returns the datasets checked. Meant for ``cdrepro validate``, not for every
    command: metadata from an older version of a dataset must not block re-preparing it.
    """
    paths = ProfilePaths.from_params(params)
    checked = []
    for name in sorted({raw["dataset"] for raw in params["runs"]}):
        meta_file = paths.prepared_meta(name)
        if not meta_file.is_file():
            continue
        try:
            n_images = int(json.loads(meta_file.read_text())["n_images"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ParamsError(
                f"{meta_file}: unreadable prepared metadata ({exc}); run `cdrepro prepare --dataset {name}` again"
            ) from exc
        check_batch_sizes(params, name, n_images, source)
        checked.append(name)
    return checked


def dataset_settings(params: dict[str, Any], name: str) -> dict[str, Any]:
    if name not in params["datasets"]:
        known = ", ".join(sorted(params["datasets"]))
        raise ParamsError(f"unknown dataset '{name}' (defined under datasets: {known})")
    return params["datasets"][name]


def data_settings(params: dict[str, Any]) -> dict[str, Any]:
    data = with_defaults(params)["data"]
    return {"download_dir": data["download_dir"], "download": data["download"]}
