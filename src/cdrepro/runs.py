"""The identity of a run and where its files live.

A run is (dataset, batch size, variant, seed). ``run_id`` is the one place that turns it into
a string; the results folder, Snakemake's wildcards and the tracking run name all come from
here, so two runs can never share a checkpoint path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_RUN_ID = re.compile(r"^(?P<dataset>[A-Za-z0-9_]+)-bs(?P<batch_size>\d+)-(?P<variant>[a-z0-9_]+)-s(?P<seed>\d+)$")


@dataclass(frozen=True)
class Run:
    dataset: str
    batch_size: int
    variant: str
    seed: int


def run_of(entry: dict[str, Any]) -> Run:
    """A run entry of a params file (an item of ``runs:``) as a Run."""
    return Run(entry["dataset"], entry["batch_size"], entry["variant"], entry["seed"])


def run_id(run: Run) -> str:
    """``stl10-bs128-no_ne-s42``: folder name and Snakemake wildcard."""
    return f"{run.dataset}-bs{run.batch_size}-{run.variant}-s{run.seed}"


def parse_run_id(rid: str) -> Run:
    match = _RUN_ID.match(rid)
    if match is None:
        raise ValueError(f"not a run id: '{rid}' (expected <dataset>-bs<N>-<variant>-s<seed>)")
    return Run(match["dataset"], int(match["batch_size"]), match["variant"], int(match["seed"]))


def tracking_name(run: Run) -> str:
    """``stl10/bs128/no_ne/seed42``: the run's name in MLflow."""
    return f"{run.dataset}/bs{run.batch_size}/{run.variant}/seed{run.seed}"


@dataclass(frozen=True)
class ProfilePaths:
    """Every path under ``<results_dir>/<profile>/``."""

    root: Path

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ProfilePaths:
        return cls(Path(params["results_dir"]) / params["profile"])

    def prepared(self, dataset: str) -> Path:
        return self.root / "data" / f"{dataset}.npz"

    def prepared_meta(self, dataset: str) -> Path:
        return self.root / "data" / f"{dataset}.json"

    def split(self, dataset: str) -> Path:
        """The held-out split of a prepared dataset (``cdrepro.data.heldout``)."""
        return self.root / "data" / f"{dataset}.split.json"

    def baseline(self, dataset: str) -> Path:
        return self.root / "baselines" / f"{dataset}.json"

    def run_dir(self, rid: str) -> Path:
        return self.root / "runs" / rid

    def checkpoint(self, rid: str) -> Path:
        """Resume state, rewritten every epoch; deliberately not a workflow output, so an
        interrupted job's state survives the workflow's clean-up of incomplete outputs."""
        return self.run_dir(rid) / "checkpoint.pt"

    def model(self, rid: str) -> Path:
        return self.run_dir(rid) / "model.pt"

    def curves(self, rid: str) -> Path:
        return self.run_dir(rid) / "curves.csv"

    def train_summary(self, rid: str) -> Path:
        return self.run_dir(rid) / "train.json"

    def metrics(self, rid: str) -> Path:
        return self.run_dir(rid) / "metrics.json"

    def tables_dir(self) -> Path:
        return self.root / "tables"

    def logs_dir(self) -> Path:
        return self.root / "logs"

    def lock(self, rid: str) -> Path:
        """The run's one-writer lock (cdrepro.runlock); outside the run's folder, which DVC hashes."""
        return self.root / "locks" / f"{rid}.lock"
