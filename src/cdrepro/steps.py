"""Each step's contract: its command, the params sections it reads and the files it writes.

One declaration per step, read by every layer that must agree on it:

- the workflow's rules (``workflow/rules/*.smk``) take their outputs and their params (the rerun
  trigger) from here;
- ``dvc.yaml`` is generated from here (``cdrepro.dvc_stages``; a test fails when it is stale);
- the CLI subcommand of the same name writes those files (the tables' and the methods table's
  file lists are the declarations of ``cdrepro.tables`` and ``cdrepro.comparison.table``).

Paths come from ``ProfilePaths`` given a key: a dataset name, a run id, or nothing for a
profile-wide step. Given the templated root and key of ``dvc.yaml`` (``${results_dir}/...``,
``${item.dataset}-bs...``) the same functions give DVC's templated paths.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdrepro.comparison.clusters import CLUSTERS_TABLE_FILES
from cdrepro.comparison.long_tail import LONG_TAIL_TABLE_FILES
from cdrepro.comparison.table import COMPARISON_TABLE_FILES
from cdrepro.figures.paths import FigurePaths, files_of
from cdrepro.runs import ProfilePaths
from cdrepro.tables import TABLE_FILES

DATASET, RUN, PROFILE = "dataset", "run", "profile"
"""What a step runs once for."""
OUT, METRIC, PLOT, DVC_ONLY = "out", "metric", "plot", "dvc_only"
"""How a file is declared: an output; DVC's metrics or plots (outputs for Snakemake); an output
of DVC's only (the checkpoint: docs/dvc.md)."""


@dataclass(frozen=True)
class Output:
    name: str  # the rule's name for it (``rules.train.output.model``)
    path: Path
    kind: str = OUT


@dataclass(frozen=True)
class Item:
    """What one job of a step is for: a dataset (``key`` its name), a run (``key`` its id), or
    the profile (all empty)."""

    key: str = ""
    dataset: str = ""
    variant: str = ""


PROFILE_ITEM = Item()


@dataclass(frozen=True)
class Step:
    name: str  # the rule and the DVC stage; the CLI subcommand with "-" for "_"
    over: str  # DATASET, RUN or PROFILE
    params: tuple[str, ...]  # the params sections it reads; {dataset} and {variant} per item
    outputs: Callable[[ProfilePaths, Item], list[Output]]
    reads: Callable[[ProfilePaths, Item], list[Path]]  # the data it reads (DVC's deps)
    desc: str  # {key}: the item's key
    threads: bool = False  # takes --threads (train.cpu_threads)

    @property
    def command(self) -> str:
        return self.name.replace("_", "-")

    def sections(self, item: Item = PROFILE_ITEM) -> list[str]:
        """``params`` with the item's dataset and variant filled in."""
        return [section.format(dataset=item.dataset, variant=item.variant) for section in self.params]

    def trigger(self, params: dict[str, Any], item: Item = PROFILE_ITEM) -> dict[str, Any]:
        """The values of the sections it reads, by section: its rule's rerun trigger."""
        return {section: _lookup(params, section) for section in self.sections(item)}

    def output(self, paths: ProfilePaths, item: Item = PROFILE_ITEM) -> dict[str, str]:
        """What the workflow's rule declares: every output but DVC's own, by name."""
        return {out.name: str(out.path) for out in self.outputs(paths, item) if out.kind != DVC_ONLY}


def _lookup(params: dict[str, Any], section: str) -> Any:
    value: Any = params
    for part in section.split("."):
        value = value[part]
    return value


def _files(paths: ProfilePaths, names: tuple[str, ...] | list[str]) -> list[Output]:
    return [Output(name.replace(".", "_"), paths.tables_dir() / name) for name in names]


def _run_data(paths: ProfilePaths, item: Item) -> list[Path]:
    return [paths.model(item.key), paths.prepared(item.dataset)]


def _prepared(paths: ProfilePaths, item: Item) -> list[Path]:
    return [paths.prepared(item.key), paths.prepared_meta(item.key)]


REFERENCES = tuple(
    Path("src/cdrepro/references") / path.name for path in sorted((Path(__file__).parent / "references").glob("*.csv"))
)
"""The published numbers the tables and figures print beside ours: every file of the package's
references folder, so that a new one needs no edit here (relative to the project root, where
the rules and DVC's stages run)."""


def _profile_results(paths: ProfilePaths, _: Item) -> list[Path]:
    # Every run's folder and every baseline: the runs' own outputs cannot be listed for DVC here.
    return [paths.root / "runs", paths.root / "baselines", *REFERENCES]


COMPARISONS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("methods_table", COMPARISON_TABLE_FILES, "the methods table (every method side by side)"),
    (
        "many_clusters_table",
        CLUSTERS_TABLE_FILES,
        "the many-clusters table (each method at its runs' fewest and most clusters)",
    ),
    (
        "long_tail_table",
        LONG_TAIL_TABLE_FILES,
        "the long-tail table (each method on balanced and long-tailed training sets)",
    ),
)
"""The comparison steps: each writes these files from the runs for its target (every run if
none is tagged) and reads the variants for the methods' labels."""


def _comparison_step(name: str, files: tuple[str, ...], about: str) -> Step:
    return Step(name, PROFILE, ("runs", "datasets", "variants"), lambda p, _: _files(p, files), _profile_results, about)


STEPS: dict[str, Step] = {
    step.name: step
    for step in (
        Step(
            "prepare",
            DATASET,
            ("datasets.{dataset}", "data"),
            lambda p, i: [Output("images", p.prepared(i.key)), Output("meta", p.prepared_meta(i.key))],
            lambda p, i: [],
            "prepare {key}",
        ),
        # A sibling of prepare rather than part of it: only evaluation reads the split, so
        # changing it re-runs evaluations, never a training (which reads the prepared file).
        Step(
            "split",
            DATASET,
            ("evaluate.split", "evaluate.knn.k"),
            lambda p, i: [Output("split", p.split(i.key))],
            _prepared,
            "held-out split of {key}",
        ),
        Step(
            "baseline",
            DATASET,
            ("evaluate.kmeans_n_init", "evaluate.kmeans_seed"),
            lambda p, i: [Output("baseline", p.baseline(i.key), METRIC)],
            _prepared,
            "baseline {key}",
        ),
        Step(
            "train",
            RUN,
            ("datasets.{dataset}", "model", "methods", "variants.{variant}", "train"),
            lambda p, i: [
                Output("model", p.model(i.key)),
                Output("summary", p.train_summary(i.key)),
                # The resume state: not the rule's output (Snakemake deletes an interrupted
                # job's outputs), an ordinary one for DVC (docs/dvc.md, "The checkpoint").
                Output("checkpoint", p.checkpoint(i.key), DVC_ONLY),
                Output("curves", p.curves(i.key), PLOT),
            ],
            lambda p, i: [p.prepared(i.dataset)],
            "train {key}",
            threads=True,
        ),
        Step(
            "evaluate",
            RUN,
            ("evaluate",),
            lambda p, i: [Output("metrics", p.metrics(i.key), METRIC)],
            lambda p, i: [*_run_data(p, i), p.split(i.dataset)],
            "evaluate {key}",
            threads=True,
        ),
        Step(
            "tables",
            PROFILE,
            ("runs", "datasets"),
            lambda p, _: _files(p, list(TABLE_FILES)),
            _profile_results,
            "tables (paper Tables 2-10, all.csv)",
        ),
        *(_comparison_step(name, files, about) for name, files, about in COMPARISONS),
        Step(
            "tsne",
            RUN,
            ("figures.tsne", "figures.dpi", "evaluate.batch_size"),
            lambda p, i: [Output(f.suffix[1:], f) for f in files_of(FigurePaths.of(p).tsne(i.key))],
            _run_data,
            "t-SNE figure of {key}",
            threads=True,
        ),
        # Which files it writes depends on the runs (a head figure per run with a head): DVC
        # declares their folder; the rule lists them (workflow/rules/figures.smk).
        Step(
            "figures",
            PROFILE,
            ("figures.dpi", "figures.heads", "figures.lime", "evaluate.batch_size", "runs", "datasets"),
            lambda p, i: [Output("folder", FigurePaths.of(p).root)],
            lambda p, i: [*_profile_results(p, i)[:2], p.root / "data", *REFERENCES],
            "figures (curves, ablation charts, head statistics, LIME views, summary.html)",
            threads=True,
        ),
    )
}
"""Every step, in the order the workflow runs them."""
