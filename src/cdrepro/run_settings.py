"""A params file's runs: which runs a workflow target builds, and the settings each one trains with.

``resolve_run`` turns a run (dataset, batch size, variant, seed; its variant names the method)
into ``RunSettings``, the flat settings the training and evaluation code read, and
``RunSettings.digest`` is their hash: it keys checkpoints, ``model.pt`` and ``metrics.json``, so
a change of what a run computes is never mistaken for the same run. Every value comes from the
params as loaded (``cdrepro.config.load_params``: the schema's defaults filled in); no default is
written here. What the digest leaves out, and why, is ``SETTINGS_ADDED_LATER`` and
``HOW_NOT_WHAT`` below.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from cdrepro.backbones import rep_dim_of
from cdrepro.config import ParamsError, method_options, resolve_dim, resolve_options, variant_switches, with_defaults
from cdrepro.data.training_set import training_set_of
from cdrepro.runs import Run, run_id, run_of

# --- which runs --------------------------------------------------------------------------------

# The workflow's targets a run can be for (a run's ``targets:``; the schema's default is the first).
TARGETS = ("reproduce_tables", "compare_methods", "many_clusters", "long_tail")


def runs_of(params: dict[str, Any], target: str | None = None) -> list[Run]:
    """The run list, in the order of the params file: every run, or those for ``target``
    (``reproduce_tables``: the paper's tables; ``compare_methods``: the methods table)."""
    return [run_of(entry) for entry in with_defaults(params)["runs"] if target is None or target in entry["targets"]]


def targets_of(params: dict[str, Any], rid: str) -> list[str]:
    """The workflow targets a run is for (its ``targets:``, or the schema's default)."""
    for entry in with_defaults(params)["runs"]:
        if run_id(run_of(entry)) == rid:
            return list(entry["targets"])
    return []


def find_run(params: dict[str, Any], rid: str) -> Run:
    for run in runs_of(params):
        if run_id(run) == rid:
            return run
    known = ", ".join(run_id(r) for r in runs_of(params))
    raise ParamsError(f"run '{rid}' is not in the params' runs (known: {known})")


# --- what a run computes -----------------------------------------------------------------------

# Settings added after runs had been made with the code, each with the value every run made before
# it had. ``RunSettings.to_dict`` leaves a setting out while it has this value, so the settings
# saved with those earlier runs (train.json, model.pt, MLflow params) and their digests, which key
# their checkpoints, stay what they were: an earlier run resumes and is not retrained.
# These are not defaults (the schema has those, and a default may change): they are facts about
# past runs and never change. A setting added to RunSettings later comes here, with its value in
# every run made before it; otherwise every earlier run's digest changes.
SETTINGS_ADDED_LATER: dict[str, Any] = {
    "method": "cd",  # runs before there were methods were CD's
    "stem": "imagenet",  # model.stem: torchvision's (the paper's) ResNet stem
    "hflip": True,  # datasets.*.hflip: the views were always flipped at random
    "training_set": None,  # datasets.*.train_on: runs trained on every image
}

# Settings that change how training runs, not what it computes: a checkpoint written under one
# value resumes under another, so the digest leaves them out whatever their value.
# gpus_per_run too: the global batch and the loss are the same with one process or many.
HOW_NOT_WHAT = ("device", "precision", "compile", "deterministic", "gpus_per_run")


@dataclass(frozen=True)
class RunSettings:
    """Everything one training run reads, flattened. Its digest keys checkpoints. Built by
    ``resolve_run``, every field from the params (no field has a default of its own)."""

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
    # the protocol's switches
    views: int
    schedule: bool
    grad_clip: bool
    # optimisation
    epochs: int
    image_size: int
    lr: float
    weight_decay: float
    instance_temperature: float
    grad_clip_norm: float
    device: str
    precision: str
    compile: str
    deterministic: bool
    gpus_per_run: int
    stem: str
    hflip: bool
    # the images trained on (cdrepro.data.training_set): None = every image
    training_set: dict[str, Any] | None
    # the method and its own options, resolved (cdrepro.methods)
    method: str
    options: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Flat: the method's options sit beside the shared settings. A setting of
        ``SETTINGS_ADDED_LATER`` is left out at the value every earlier run had, so the settings
        (and digests) of earlier runs stay."""
        flat = asdict(self)
        flat.update(flat.pop("options"))
        for key, historical in SETTINGS_ADDED_LATER.items():
            if flat[key] == historical:
                del flat[key]
        return flat

    @classmethod
    def from_dict(cls, flat: dict[str, Any]) -> RunSettings:
        """The inverse of ``to_dict`` (settings as saved in train.json or model.pt): a setting
        of ``SETTINGS_ADDED_LATER`` that is absent had its historical value."""
        flat = SETTINGS_ADDED_LATER | flat
        shared = {f.name for f in fields(cls)}
        own = {k: v for k, v in flat.items() if k not in shared}
        return cls(**{k: v for k, v in flat.items() if k in shared}, options=own)

    def digest(self) -> str:
        """A short hash of every setting that changes what training computes."""
        payload = {k: v for k, v in self.to_dict().items() if k not in HOW_NOT_WHAT}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def resolve_run(params: dict[str, Any], run: Run) -> RunSettings:
    params = with_defaults(params)  # loaded params have them already; a test's dict may not
    dataset = params["datasets"][run.dataset]
    switches = variant_switches(params, run.variant)
    model = params["model"]
    train = params["train"]
    width = int(model["backbone_width"])
    return RunSettings(
        run_id=run_id(run),
        dataset=run.dataset,
        batch_size=run.batch_size,
        variant=run.variant,
        seed=run.seed,
        color_strength=float(dataset["color_strength"]),
        blur=bool(dataset["blur"]),
        crop_min_scale=float(dataset["crop_min_scale"]),
        backbone=model["backbone"],
        backbone_width=width,
        rep_dim=rep_dim_of(model["backbone"], width),
        hidden_dim=resolve_dim(model["hidden_dim"], run.batch_size),
        views=switches["views"],
        schedule=switches["schedule"],
        grad_clip=switches["grad_clip"],
        epochs=train["epochs"],
        image_size=train["image_size"],
        lr=float(train["lr"]),
        weight_decay=float(train["weight_decay"]),
        instance_temperature=float(train["instance_temperature"]),
        grad_clip_norm=float(train["grad_clip_norm"]),
        device=train["device"],
        precision=train["precision"],
        compile=train["compile"],
        deterministic=bool(train["deterministic"]),
        gpus_per_run=int(train["gpus_per_run"]),
        stem=model["stem"],
        hflip=bool(dataset["hflip"]),
        training_set=training_set_of(dataset, params["evaluate"]["split"]),
        method=switches["method"],
        options=resolve_options(switches["method"], method_options(params, run.variant), run.batch_size),
    )
