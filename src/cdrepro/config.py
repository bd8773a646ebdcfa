"""Load and validate params files; resolve one run's settings.

Everything the pipeline does is decided by one params file (``params.yaml`` or a profile such
as ``workflow/configs/paper.yaml``). This module checks it against the JSON schema, adds the
cross-field checks a schema cannot express, and turns a run (dataset, batch size, variant,
seed) into the flat settings the training and evaluation code read.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from cdrepro.runs import ProfilePaths, Run, run_id


class ParamsError(ValueError):
    """A params file is invalid; the message names the offending key."""


def load_schema() -> dict[str, Any]:
    text = resources.files("cdrepro").joinpath("schemas/params.schema.yaml").read_text()
    return yaml.safe_load(text)


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) if not isinstance(p, int) else f"[{p}]" for p in error.absolute_path]
    return ".".join(parts).replace(".[", "[") or "<top level>"


def validate_params(params: Any, source: str = "params") -> dict[str, Any]:
    """Check ``params`` against the schema and the cross-field rules; return it unchanged.

    Raises ParamsError naming the bad key (``train.lr``, ``runs[3].variant``, ...).
    """
    if not isinstance(params, dict):
        raise ParamsError(f"{source}: expected a mapping of keys at the top level")
    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        error = errors[0]
        key = _key_path(error)
        if error.validator == "additionalProperties":
            allowed = sorted(error.schema.get("properties", {}))
            hint = f" (allowed here: {', '.join(allowed)})" if allowed else ""
            raise ParamsError(f"{source}: {key}: unknown key — {error.message}{hint}")
        raise ParamsError(f"{source}: {key}: {error.message}")
    _check_cross_fields(params, source)
    return params


def _check_cross_fields(params: dict[str, Any], source: str) -> None:
    for name, switches in params["variants"].items():
        if not switches["head"] and (switches["entropy"] or switches["last_bn"]):
            raise ParamsError(
                f"{source}: variants.{name}: head is false, so entropy and last_bn must be false "
                "too (both act on the feature predictor, which a no-head variant does not have)"
            )
    model = params["model"]
    if model.get("backbone_width", 64) != 64 and model["backbone"] == "resnet50":
        raise ParamsError(f"{source}: model.backbone_width: only resnet18 and resnet34 can be "
                          "narrowed; use 64 (torchvision's width) with resnet50")
    for name, dataset in params["datasets"].items():
        if dataset["source"] in ("imagenet10", "folder") and "path" not in dataset:
            raise ParamsError(
                f"{source}: datasets.{name}.path: required for source '{dataset['source']}' "
                "(a folder laid out as <path>/<class>/<image>)"
            )
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
        gpus = params["train"].get("gpus_per_run", 1)
        if raw["batch_size"] % gpus:
            raise ParamsError(
                f"{source}: runs[{i}].batch_size: {raw['batch_size']} does not split evenly "
                f"among train.gpus_per_run = {gpus} processes; make it a multiple of {gpus}"
            )
        rid = run_id(Run(**raw))
        if rid in seen:
            raise ParamsError(f"{source}: runs[{i}]: duplicate of runs[{seen[rid]}] ({rid})")
        seen[rid] = i


def load_params(path: str | Path) -> dict[str, Any]:
    """Read and validate a params file."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file not found: {path}")
    try:
        with path.open() as handle:  # a stream, so YAML errors name the file and line
            params = yaml.safe_load(handle)
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from exc
    return validate_params(params, source=str(path))


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
            raise ParamsError(f"{meta_file}: unreadable prepared metadata ({exc}); run "
                              f"`cdrepro prepare --dataset {name}` again") from exc
        check_batch_sizes(params, name, n_images, source)
        checked.append(name)
    return checked


def runs_of(params: dict[str, Any]) -> list[Run]:
    """The run list, in the order of the params file."""
    return [Run(**raw) for raw in params["runs"]]


def find_run(params: dict[str, Any], rid: str) -> Run:
    for run in runs_of(params):
        if run_id(run) == rid:
            return run
    known = ", ".join(run_id(r) for r in runs_of(params))
    raise ParamsError(f"run '{rid}' is not in the params' runs (known: {known})")


@dataclass(frozen=True)
class RunSettings:
    """Everything one training run reads, flattened. Its hash keys checkpoints."""

    run_id: str
    dataset: str
    batch_size: int
    variant: str
    seed: int
    # dataset
    color_strength: float
    blur: bool
    crop_min_scale: float
    # model
    backbone: str
    backbone_width: int
    rep_dim: int
    hidden_dim: int
    feature_num: int
    # switches
    entropy: bool
    last_bn: bool
    head: bool
    views: int
    schedule: bool
    grad_clip: bool
    # optimisation
    epochs: int
    image_size: int
    lr: float
    weight_decay: float
    instance_temperature: float
    feature_temperature: float
    entropy_weight: float
    grad_clip_norm: float
    device: str
    precision: str
    compile: str = "augment"
    deterministic: bool = False
    gpus_per_run: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def digest(self) -> str:
        """A short hash of every setting that changes what training computes."""
        payload = {k: v for k, v in self.to_dict().items() if k not in HOW_NOT_WHAT}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


# Settings that change how training runs, not what it computes: a checkpoint written under one
# value resumes under another.
# gpus_per_run too: the global batch and the loss are the same with one process or many.
HOW_NOT_WHAT = ("device", "precision", "compile", "deterministic", "gpus_per_run")


def rep_dim_of(backbone: str, width: int = 64) -> int:
    """Size of the pooled backbone output h (the paper's rep_dim: 512 for ResNet-18/34)."""
    return width * 8 * (4 if backbone == "resnet50" else 1)


def _resolve_dim(value: int | str, batch_size: int) -> int:
    return batch_size if value == "batch_size" else int(value)


def resolve_run(params: dict[str, Any], run: Run) -> RunSettings:
    dataset = params["datasets"][run.dataset]
    switches = params["variants"][run.variant]
    model = params["model"]
    train = params["train"]
    width = int(model.get("backbone_width", 64))
    return RunSettings(
        run_id=run_id(run),
        dataset=run.dataset,
        batch_size=run.batch_size,
        variant=run.variant,
        seed=run.seed,
        color_strength=float(dataset["color_strength"]),
        blur=bool(dataset["blur"]),
        crop_min_scale=float(dataset.get("crop_min_scale", 0.08)),
        backbone=model["backbone"],
        backbone_width=width,
        rep_dim=rep_dim_of(model["backbone"], width),
        hidden_dim=_resolve_dim(model["hidden_dim"], run.batch_size),
        feature_num=_resolve_dim(model["feature_num"], run.batch_size),
        entropy=switches["entropy"],
        last_bn=switches["last_bn"],
        head=switches["head"],
        views=switches["views"],
        schedule=switches["schedule"],
        grad_clip=switches["grad_clip"],
        epochs=train["epochs"],
        image_size=train["image_size"],
        lr=float(train["lr"]),
        weight_decay=float(train["weight_decay"]),
        instance_temperature=float(train["instance_temperature"]),
        feature_temperature=float(train["feature_temperature"]),
        entropy_weight=float(train["entropy_weight"]),
        grad_clip_norm=float(train["grad_clip_norm"]),
        device=train["device"],
        precision=train.get("precision", "auto"),
        compile=train.get("compile", "augment"),
        deterministic=bool(train.get("deterministic", False)),
        gpus_per_run=int(train.get("gpus_per_run", 1)),
    )


def dataset_settings(params: dict[str, Any], name: str) -> dict[str, Any]:
    if name not in params["datasets"]:
        known = ", ".join(sorted(params["datasets"]))
        raise ParamsError(f"unknown dataset '{name}' (defined under datasets: {known})")
    return params["datasets"][name]


def data_settings(params: dict[str, Any]) -> dict[str, Any]:
    data = params.get("data", {})
    return {"download_dir": data.get("download_dir", "data/downloads"),
            "download": data.get("download", True)}
