"""Where each figure of a profile lives.

A figure is a stem; its files are ``<stem>.png``, ``<stem>.pdf`` (``FORMATS``) and the data it
plots, ``<stem>.csv``.

``results/<profile>/tsne/<run id>.*``: the t-SNE of each run, one job per run (``cdrepro tsne``).
``results/<profile>/figures/``: everything the profile's figure job writes (``cdrepro figures``):
``curves_<dataset>``, ``ablation_<dataset>``, ``methods_<dataset>`` (the methods comparison's:
``comparison_figure_datasets``), ``heads/<run id>/{head_activity,head_correlation,lime}`` and
``summary.html``. DVC tracks that folder as one output, as its list of files depends on the
runs of the params.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdrepro.results import comparison_target, variant_infos
from cdrepro.run_settings import runs_of
from cdrepro.runs import ProfilePaths, Run

FORMATS: tuple[str, ...] = ("png", "pdf")
HEAD_FIGURES: tuple[str, ...] = ("head_activity", "head_correlation", "lime")
"""The figures of a run whose method has per-sample sigmoid heads (CD's feature predictor; none
for a no-head run)."""


def head_runs(params: dict[str, Any]) -> list[Run]:
    """The runs that have head figures: those whose method, with the variant's options, has
    sigmoid heads (``Method.sigmoid_heads``)."""
    variants = variant_infos(params)
    return [run for run in runs_of(params) if variants[run.variant].sigmoid_heads is not None]


def comparison_figure_datasets(params: dict[str, Any]) -> list[str]:
    """The datasets with a methods comparison figure: those where the runs for the comparison
    (``compare_methods``; every run where none is tagged for it) are of two methods or more."""
    variants = variant_infos(params)
    methods: dict[str, set[str]] = {}
    for run in runs_of(params, comparison_target(params)):
        methods.setdefault(run.dataset, set()).add(variants[run.variant].method)
    return sorted(dataset for dataset, found in methods.items() if len(found) > 1)


def files_of(stem: Path) -> list[Path]:
    """Every file of a figure: its images, then its data."""
    # Appended, not with_suffix: a stem's name may hold a dot (dvc.yaml's ``${item.seed}``).
    return [stem.with_name(f"{stem.name}.{ext}") for ext in (*FORMATS, "csv")]


@dataclass(frozen=True)
class FigurePaths:
    profile_root: Path  # results/<profile>

    @classmethod
    def of(cls, paths: ProfilePaths) -> FigurePaths:
        return cls(paths.root)

    @property
    def root(self) -> Path:
        """The profile figure job's folder."""
        return self.profile_root / "figures"

    def tsne(self, rid: str) -> Path:
        return self.profile_root / "tsne" / rid

    def head_figure(self, rid: str, name: str) -> Path:
        """One of HEAD_FIGURES of a run with a head."""
        if name not in HEAD_FIGURES:
            raise ValueError(f"unknown head figure '{name}' (known: {', '.join(HEAD_FIGURES)})")
        return self.root / "heads" / rid / name

    def curves(self, dataset: str) -> Path:
        return self.root / f"curves_{dataset}"

    def ablation(self, dataset: str) -> Path:
        return self.root / f"ablation_{dataset}"

    def comparison(self, dataset: str) -> Path:
        """The methods comparison chart of a dataset of ``comparison_figure_datasets``."""
        return self.root / f"methods_{dataset}"

    def summary(self) -> Path:
        """The results table as HTML (for the report)."""
        return self.root / "summary.html"
