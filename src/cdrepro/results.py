"""The results contract: what evaluation writes and what the tables, figures and CLI read.

Records (one schema each, checked on reading):

- ``metrics.json`` of a run (``cdrepro evaluate``)::

      {"run_id", "dataset", "batch_size", "method", "variant", "seed", "n_images", "num_classes",
       "stages": {"backbone": {"nmi", "ari", "acc", "knn", "linear"}, ..., "<final stage>": {..., "knn"}},
       "final_stage": "<final stage>", "held_out": {"split", "knn", "linear"},
       "settings_digest", "data_digest"}

  ``knn`` (every stage) and ``linear`` (the backbone) are the held-out accuracies
  (``cdrepro.metrics.HELD_OUT_SCORES``, 0..1, on the test split of ``cdrepro.data.heldout``) and
  ``held_out`` how they were measured (the split's kind and sizes, k and T, the probe's settings
  and fit). All three are optional: a record written before them (issue 22) is read as it
  was, and its runs simply have no held-out rows in the frame and "--" in the tables.

  The two digests are the identity of the model it scored (``cdrepro.identity``); a profile's
  tables and figures refuse a record whose digests are not those the params and the prepared
  data give the run now.

  ``stages`` in the method's order: ``backbone`` first, the method's final stage last
  (``write_metrics`` keeps that order in the file; for a file whose writer sorted the keys,
  reading puts backbone first and ``final_stage`` last again).
- ``baselines/<dataset>.json`` (``cdrepro baseline``): ``{"dataset", "n_images", "num_classes",
  "pixels": {"nmi", "ari", "acc"}}``.
- ``curves.csv`` (``cdrepro train``): ``epoch, lr, loss, <the method's terms>, seconds,
  pairs_per_s``; read as one dict of floats per epoch.

A file that is not what it should be is a ``ResultsError`` (a ValueError) whose one-line
message names the file and the command that writes it again.

``ProfileResults.load(params)`` reads a whole profile: every run's metrics, every baseline,
the datasets' titles and each variant's method, label and switches; ``load(params, target)``
reads only the runs of one workflow target (``reproduce_tables``: the paper's tables;
``compare_methods``: the methods comparison). Its ``frame`` is the long
format the tables and figures consume (``collect``): one row per (run group, stage, metric),
aggregated over seeds, where ``stage`` is the stage's own name and ``stage_role`` says whether
it is the backbone stage, the method's final stage or one between. The published numbers (the
paper's, CC's, the authors' repository's) come in the same long format from
``cdrepro.published``.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from cdrepro import config as cfg
from cdrepro import run_settings as rs
from cdrepro.atomic import write_text
from cdrepro.data.prepared import data_digest
from cdrepro.identity import DATA_KEY, SETTINGS_KEY, RunIdentity
from cdrepro.methods import method_class
from cdrepro.methods.base import BACKBONE_STAGE
from cdrepro.metrics import HELD_OUT_SCORES
from cdrepro.runs import ProfilePaths, Run, run_id

SCORES: tuple[str, ...] = ("nmi", "ari", "acc")
"""The clustering scores every stage of a metrics.json has (K-means or argmax, every image)."""
ALL_SCORES: tuple[str, ...] = (*SCORES, *HELD_OUT_SCORES)
"""Those, then the held-out accuracies a stage may have: the frame's metrics, in this order."""
BASELINE_VARIANT = cfg.BASELINE_VARIANT
"""The variant name of the raw-pixel K-means rows; validation refuses it as a variant's name."""
PIXELS_STAGE = "pixels"
BACKBONE_ROLE, FINAL_ROLE, INTERMEDIATE_ROLE = "backbone", "final", "intermediate"
TABLES_TARGET, COMPARISON_TARGET, CLUSTERS_TARGET, LONG_TAIL_TARGET = rs.TARGETS
"""The workflow targets: the paper's tables (``reproduce_tables``), the methods comparison
(``compare_methods``: the methods table and figures), the many-clusters comparison
(``many_clusters``: each method at its runs' fewest and most clusters) and the long-tail one
(``long_tail``: each method on balanced and long-tailed training sets)."""

FRAME_COLUMNS: list[str] = [
    "source",
    "dataset",
    "batch_size",
    "method",
    "variant",
    "stage",
    "stage_role",
    "metric",
    "mean",
    "std",
    "n_seeds",
    "seeds",
    "values",
]


class ResultsError(ValueError):
    """A results file (or record) is not what its writer writes; the message names it and the
    command that writes it again."""


# --------------------------------------------------------------------------------------------
# metrics.json and baselines


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _scores_problem(scores: Any, where: str) -> str | None:
    if not isinstance(scores, dict) or not all(_is_number(scores.get(s)) for s in SCORES):
        return f"{where} must hold the numbers {', '.join(SCORES)}"
    for name in HELD_OUT_SCORES:  # optional: records before issue 22 lack them
        if name in scores and not (_is_number(scores[name]) and 0.0 <= scores[name] <= 1.0):
            return f"{where}.{name} must be an accuracy from 0 to 1"
    return None


_METRICS_FIELDS = {
    "run_id": str,
    "dataset": str,
    "batch_size": int,
    "method": str,
    "variant": str,
    "seed": int,
    "n_images": int,
    "num_classes": int,
    "final_stage": str,
}


def _metrics_problem(metrics: Any) -> str | None:
    """What is wrong with a metrics record's shape, or None."""
    if not isinstance(metrics, dict):
        return "not a JSON object"
    if "stages" not in metrics and "feature_stage" in metrics:
        return "the format from before methods (top-level backbone/feature, no 'stages')"
    for key, kind in _METRICS_FIELDS.items():
        value = metrics.get(key)
        if not (_is_int(value) if kind is int else isinstance(value, kind)):
            return f"'{key}' missing or not a{'n integer' if kind is int else ' string'}"
    stages, final = metrics.get("stages"), metrics["final_stage"]
    if not isinstance(stages, dict) or BACKBONE_STAGE not in stages:
        return f"'stages' must be an object of stages, '{BACKBONE_STAGE}' among them"
    if final not in stages or (final == BACKBONE_STAGE and len(stages) > 1):
        return f"'final_stage' ({final}) must name the method's last stage in 'stages'"
    if "held_out" in metrics and not isinstance(metrics["held_out"], dict):
        return "'held_out' must be an object (how the held-out accuracies were measured)"
    problems = (_scores_problem(scores, f"stages.{name}") for name, scores in stages.items())
    return next((p for p in problems if p), None)


def _in_stage_order(metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` with its stages backbone first and the final stage last, any others between
    in the record's order. A writer that sorts keys (``atomic.write_json``) loses the method's
    order; these two ends are what the tables and figures rely on."""
    stages, final = metrics["stages"], metrics["final_stage"]
    order = dict.fromkeys([BACKBONE_STAGE, *(s for s in stages if s not in (BACKBONE_STAGE, final)), final])
    return {**metrics, "stages": {name: stages[name] for name in order}}


def check_metrics(metrics: Any, where: str, rid: str | None = None) -> dict[str, Any]:
    """``metrics`` (stages in order: ``_in_stage_order``) if it has the shape of a metrics.json
    record, else ResultsError naming ``where`` (a file, or a run) and how to write it again
    (for run ``rid``: by default the record's own run id)."""
    problem = _metrics_problem(metrics)
    if problem:
        if rid is None:
            rid = metrics.get("run_id", "<run id>") if isinstance(metrics, dict) else "<run id>"
        raise ResultsError(
            f"{where}: not a metrics file of this cdrepro ({problem}); re-run `cdrepro evaluate --run {rid}`"
        )
    return _in_stage_order(metrics)


def _read_json(path: Path, rerun: str) -> Any:
    """A JSON file's content; FileNotFoundError or ResultsError that say how to make it."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; make it with `{rerun}`")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: not valid JSON ({exc}); re-run `{rerun}`") from exc


def read_metrics(path: str | Path) -> dict[str, Any]:
    """A run's metrics.json, checked. Its run id, for the messages, is its folder's name."""
    path = Path(path)
    rid = path.parent.name
    return check_metrics(_read_json(path, f"cdrepro evaluate --run {rid}"), str(path), rid)


def write_metrics(path: str | Path, metrics: dict[str, Any]) -> None:
    """Check and write a metrics record (atomically), its keys in the record's order: the
    stages in the method's order (``atomic.write_json`` would sort them by name)."""
    write_text(path, json.dumps(check_metrics(metrics, str(path)), indent=2) + "\n")


def check_baseline(baseline: Any, where: str) -> dict[str, Any]:
    """``baseline`` if it has the shape of a baselines/<dataset>.json record, else ResultsError."""
    ok = (
        isinstance(baseline, dict)
        and isinstance(baseline.get("dataset"), str)
        and _is_int(baseline.get("n_images"))
        and _is_int(baseline.get("num_classes"))
    )
    problem = (
        _scores_problem(baseline.get("pixels"), "pixels") if ok else "dataset, n_images and num_classes are required"
    )
    if problem:
        dataset = baseline.get("dataset", "<dataset>") if isinstance(baseline, dict) else "<dataset>"
        raise ResultsError(
            f"{where}: not a baseline file of this cdrepro ({problem}); re-run `cdrepro baseline --dataset {dataset}`"
        )
    return baseline


def read_baseline(path: str | Path) -> dict[str, Any]:
    """A dataset's raw-pixel K-means baseline, checked (its dataset: the file's name)."""
    path = Path(path)
    return check_baseline(_read_json(path, f"cdrepro baseline --dataset {path.stem}"), str(path))


class UncheckedMetrics(ResultsError):
    """A metrics.json written before metrics recorded their settings and data digests."""


def current_metrics(params: dict[str, Any], paths: ProfilePaths, run: Run, data_digest: str | None) -> dict[str, Any]:
    """A run's metrics.json, refused (one line naming the run) unless it was made under the
    settings the params now give the run and, where the dataset is prepared (``data_digest``),
    on that data: a table must never print the numbers of a model trained with other ones."""
    rid = run_id(run)
    path = paths.metrics(rid)
    metrics = read_metrics(path)
    if SETTINGS_KEY not in metrics:
        raise UncheckedMetrics(rid)
    expected = RunIdentity(rs.resolve_run(params, run).digest(), data_digest or metrics.get(DATA_KEY, ""))
    problem = expected.mismatch(metrics)
    if problem:
        raise ResultsError(
            f"{path}: run {rid}'s metrics were made with {problem} than the params "
            f"and prepared data give now; re-run `cdrepro train --run {rid}` and "
            f"`cdrepro evaluate --run {rid}` (or the workflow)"
        )
    return metrics


def checked_metrics(params: dict[str, Any], runs: Sequence[Run]) -> list[dict[str, Any]]:
    """``current_metrics`` of every run. Records that predate digests are named all in one
    line, with one command that re-evaluates them (evaluation is minutes, training hours)."""
    paths = ProfilePaths.from_params(params)
    data = {d: prepared_digest(paths, d) for d in {run.dataset for run in runs}}
    checked, unchecked = [], []
    for run in runs:
        try:
            checked.append(current_metrics(params, paths, run, data[run.dataset]))
        except UncheckedMetrics as exc:
            unchecked.append(str(exc))
    if unchecked:
        shown = ", ".join(unchecked[:5]) + (f" and {len(unchecked) - 5} more" if len(unchecked) > 5 else "")
        raise UncheckedMetrics(
            f"the metrics.json of {len(unchecked)} run(s) under {paths.root} ({shown}) predate the "
            "settings and data digests the tables check; re-evaluate them (their models are kept): "
            "`snakemake --forcerun evaluate`, or `cdrepro evaluate --run <id>` for each"
        )
    return checked


def prepared_digest(paths: ProfilePaths, dataset: str) -> str | None:
    """The digest of ``dataset`` as prepared now, from its metadata; None if it is not prepared
    (or its metadata is unreadable: the step that reads the data says so)."""
    try:
        return data_digest(json.loads(paths.prepared_meta(dataset).read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


# --------------------------------------------------------------------------------------------
# curves.csv


def read_curves(path: str | Path) -> list[dict[str, float]]:
    """One dict per epoch, in column order; an empty cell is left out."""
    path = Path(path)
    with path.open(newline="") as handle:
        try:
            return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(handle)]
        except (TypeError, ValueError) as exc:
            raise ResultsError(
                f"{path}: not a curves file ({exc}); re-train the run (`cdrepro train --run {path.parent.name}`)"
            ) from exc


def curve_terms(columns: Iterable[str]) -> list[str]:
    """The loss terms among curves.csv's columns: those between ``loss`` and ``seconds``
    (``cdrepro.train.curve_columns`` puts the method's terms there)."""
    names = list(dict.fromkeys(columns))
    if "loss" not in names or "seconds" not in names:
        raise ResultsError(f"curves columns {names} lack 'loss' or 'seconds'")
    return names[names.index("loss") + 1 : names.index("seconds")]


# --------------------------------------------------------------------------------------------
# Variants: method, label, switches


@dataclass(frozen=True)
class VariantInfo:
    """What the params say of a variant: its method (name and display label), its switches
    (the protocol's, then the method's own options, resolved to defaults) and the output of
    its per-sample sigmoid heads (None: no head figures)."""

    method: str
    label: str
    switches: Mapping[str, Any]
    sigmoid_heads: str | None


def variant_info(params: dict[str, Any], variant: str) -> VariantInfo:
    method = method_class(cfg.method_of(params, variant))
    options = cfg.method_options(params, variant)
    protocol = {key: value for key, value in cfg.variant_switches(params, variant).items() if key != "method"}
    return VariantInfo(method.name, method.label, {**protocol, **options}, method.sigmoid_heads(options))


def variant_infos(params: dict[str, Any]) -> dict[str, VariantInfo]:
    return {name: variant_info(params, name) for name in params["variants"]}


# --------------------------------------------------------------------------------------------
# The long frame


def stage_role(stages: Sequence[str], stage: str) -> str:
    """``backbone`` for the first stage, ``final`` for the last, ``intermediate`` between."""
    if stage == stages[0]:
        return BACKBONE_ROLE
    return FINAL_ROLE if stage == stages[-1] else INTERMEDIATE_ROLE


def _run_label(run: Mapping[str, Any]) -> str:
    fallback = f"{run.get('dataset')}/bs{run.get('batch_size')}/{run.get('variant')}/s{run.get('seed')}"
    return str(run.get("run_id") or fallback)


def _summarise(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (ddof=1; NaN for one value, where a spread is not defined)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


GroupKey = tuple[str, int, str]  # dataset, batch size, variant


def group_runs(metrics: Iterable[Mapping[str, Any]]) -> dict[GroupKey, list[Mapping[str, Any]]]:
    """Checked runs grouped by (dataset, batch size, variant), sorted by seed. Refused: the
    reserved variant name, a seed twice (two runs sharing an identity, a bug upstream that
    averaging would hide), and seeds of a group that disagree on the method or its stages."""
    groups: dict[GroupKey, list[Mapping[str, Any]]] = {}
    for run in metrics:
        check_metrics(run, _run_label(run))
        if run["variant"] == BASELINE_VARIANT:
            raise ValueError(f"{_run_label(run)}: variant name '{BASELINE_VARIANT}' is reserved for the pixel baseline")
        groups.setdefault((run["dataset"], run["batch_size"], run["variant"]), []).append(run)
    for key, runs in groups.items():
        seeds = [run["seed"] for run in runs]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"{key}: the same seed appears twice in the metrics: {sorted(seeds)}")
        shapes = {(run["method"], tuple(run["stages"])) for run in runs}
        if len(shapes) != 1:
            raise ValueError(f"{_run_label(runs[0])}: seeds disagree on method or stages: {sorted(shapes)}")
        runs.sort(key=lambda run: run["seed"])
    return groups


def stage_metrics(runs: Sequence[Mapping[str, Any]], stage: str) -> list[str]:
    """The metrics of ``stage`` that every run of a group has, in ``ALL_SCORES`` order: NMI/ARI/ACC
    always; a held-out accuracy only where no seed lacks it (a mean over some seeds would pass
    for one over all)."""
    return [m for m in ALL_SCORES if all(m in run["stages"][stage] for run in runs)]


def _group_rows(key: GroupKey, runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The long rows (stage x metric) of one group over its seeds."""
    dataset, batch_size, variant = key
    stages = list(runs[0]["stages"])
    seeds = ";".join(str(run["seed"]) for run in runs)
    rows = []
    for stage in stages:
        for metric in stage_metrics(runs, stage):
            values = [float(run["stages"][stage][metric]) for run in runs]
            mean, std = _summarise(values)
            rows.append(
                {
                    "source": "ours",
                    "dataset": dataset,
                    "batch_size": batch_size,
                    "method": runs[0]["method"],
                    "variant": variant,
                    "stage": stage,
                    "stage_role": stage_role(stages, stage),
                    "metric": metric,
                    "mean": mean,
                    "std": std,
                    "n_seeds": len(values),
                    "seeds": seeds,
                    "values": ";".join(repr(v) for v in values),
                }
            )
    return rows


def _baseline_rows(baselines: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The raw-pixel K-means rows: variant ``kmeans_pixels``, stage ``pixels`` in the backbone
    role, no method, no batch size."""
    rows = []
    seen: set[str] = set()
    for baseline in baselines:
        check_baseline(baseline, f"baseline {baseline.get('dataset', '?')}")
        dataset = baseline["dataset"]
        if dataset in seen:
            raise ValueError(f"baseline for '{dataset}' given twice")
        seen.add(dataset)
        for metric in SCORES:
            value = float(baseline["pixels"][metric])
            rows.append(
                {
                    "source": "ours",
                    "dataset": dataset,
                    "batch_size": None,
                    "method": "",
                    "variant": BASELINE_VARIANT,
                    "stage": PIXELS_STAGE,
                    "stage_role": BACKBONE_ROLE,
                    "metric": metric,
                    "mean": value,
                    "std": math.nan,
                    "n_seeds": 1,
                    "seeds": "",
                    "values": repr(value),
                }
            )
    return rows


def collect(metrics: Iterable[Mapping[str, Any]], baselines: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Our numbers in long format, aggregated over seeds (``FRAME_COLUMNS``).

    One row per (dataset, batch_size, variant, stage, metric) of every stage the runs report,
    with the method, the stage's role, mean, sample std (NaN for a single seed), n_seeds, the
    seeds and the per-seed values (``;``-joined, in seed order, so no input number is lost);
    plus one row per (dataset, metric) for the pixel baseline (variant ``kmeans_pixels``).
    The interval of each mean and the paired differences are taken from the per-seed values
    by the tables and figures (``cdrepro.seed_statistics``), not here: evaluation and t-SNE
    import this module, and DVC would re-run them whenever the statistics change.
    """
    rows: list[dict[str, Any]] = []
    for key, runs in sorted(group_runs(metrics).items()):
        rows += _group_rows(key, runs)
    rows += _baseline_rows(baselines)
    frame = pd.DataFrame(rows, columns=FRAME_COLUMNS)
    frame["batch_size"] = frame["batch_size"].astype("Int64")
    frame["n_seeds"] = frame["n_seeds"].astype("Int64")
    return frame.reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# A profile


@dataclass(frozen=True)
class ProfileResults:
    """Everything the tables and figures show of one profile."""

    metrics: list[dict[str, Any]]  # every run's metrics.json, in the params' run order
    baselines: list[dict[str, Any]]  # the pixel baseline of every dataset the runs use
    titles: dict[str, str] = field(default_factory=dict)  # dataset -> title
    variants: dict[str, VariantInfo] = field(default_factory=dict)
    profile: str = ""

    @classmethod
    def load(cls, params: dict[str, Any], target: str | None = None) -> ProfileResults:
        """Read the metrics and baselines of the params' runs for ``target`` (None: every run;
        FileNotFoundError or ResultsError naming a missing or bad file, or metrics made under
        other settings or data than the params and prepared data give now: ``checked_metrics``).
        Only those files are read, so a run of another target need not exist yet."""
        paths = ProfilePaths.from_params(params)
        runs = rs.runs_of(params, target)
        return cls(
            metrics=checked_metrics(params, runs),
            baselines=[read_baseline(paths.baseline(d)) for d in sorted({run.dataset for run in runs})],
            titles=dataset_titles(params),
            variants=variant_infos(params),
            profile=params["profile"],
        )

    @cached_property
    def frame(self) -> pd.DataFrame:
        """``collect(metrics, baselines)``."""
        return collect(self.metrics, self.baselines)

    def restricted(self, rids: Iterable[str]) -> ProfileResults:
        """The same profile with only the runs ``rids`` (and the baselines of their datasets):
        a figure of one target from a job that loaded every run."""
        wanted = set(rids)
        metrics = [m for m in self.metrics if m["run_id"] in wanted]
        datasets = {m["dataset"] for m in metrics}
        return ProfileResults(
            metrics, [b for b in self.baselines if b["dataset"] in datasets], self.titles, self.variants, self.profile
        )

    def method_label(self, variant: str, method: str) -> str:
        """The display name of a variant's method (the method's name if the variant is unknown)."""
        info = self.variants.get(variant)
        return info.label if info is not None else method


def comparison_target(params: dict[str, Any], target: str = COMPARISON_TARGET) -> str | None:
    """The target whose runs a comparison shows: ``target`` (``compare_methods``: the methods
    table and figures; ``many_clusters``; ``long_tail``), or None (every run) where no run is tagged for it, as
    in a profile that predates the target."""
    return target if rs.runs_of(params, target) else None


PAPER_DATASETS: tuple[str, ...] = ("cifar10", "cifar100_20", "stl10", "imagenet10")
PAPER_TITLES: dict[str, str] = {
    "cifar10": "CIFAR-10",
    "cifar100_20": "CIFAR-100-20",
    "stl10": "STL-10",
    "imagenet10": "ImageNet-10",
}


def dataset_order(datasets: Iterable[str], titles: Mapping[str, str]) -> list[str]:
    """The paper's datasets in its order, then those named in params (their order), then the rest."""
    names = set(datasets)
    ordered = [d for d in PAPER_DATASETS if d in names]
    ordered += [d for d in titles if d in names and d not in ordered]
    ordered += sorted(names - set(ordered))
    return ordered


def dataset_name(dataset: str, titles: Mapping[str, str]) -> str:
    """The name a dataset's rows carry: params' title, the paper's name, or the key itself."""
    return titles.get(dataset) or PAPER_TITLES.get(dataset) or dataset


def dataset_titles(params: dict[str, Any]) -> dict[str, str]:
    return {name: ds.get("title", name) for name, ds in params["datasets"].items()}
