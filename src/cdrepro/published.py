"""The published numbers: CD's paper (its Tables 2 and 3), CC's own paper, the CD authors'
repository, and CLD's kNN and linear-probe accuracies, read from the files of ``references/``
(shipped with the package; their sources in ``references/README.md``).

In the long format of our own numbers (``cdrepro.results.collect``): ``paper_rows`` (the
paper's, as Tables 2-3 print them) and ``authors_rows`` (the repository's mean and std), so they
line up with our rows; ``published_rows`` lines up every published number with the method it
is of (CD's paper, CC's own paper, the CD authors' repository) for the methods comparison's
table and figure (``cdrepro.comparison``).
"""

from __future__ import annotations

import io
import math
from importlib import resources
from typing import Any

import pandas as pd

from cdrepro.methods.base import BACKBONE_STAGE
from cdrepro.methods.cc import ContrastiveClustering
from cdrepro.methods.cd import FEATURE_STAGE, ContrastiveDisentangling
from cdrepro.methods.cld import CrossLevelDiscrimination
from cdrepro.methods.simclr import PROJECTOR_STAGE, SimCLR
from cdrepro.metrics import KNN
from cdrepro.results import BACKBONE_ROLE, BASELINE_VARIANT, FINAL_ROLE, SCORES

REFERENCE_METHOD = ContrastiveDisentangling.name
"""The method the paper's CD-128/CD-256 and the authors' repository numbers are of."""
AUTHORS_BATCH_SIZE = 128
"""The batch size of the authors' repository runs (``references/README.md``)."""


def _reference_csv(name: str) -> str:
    return resources.files("cdrepro").joinpath(f"references/{name}").read_text()


def load_paper_results() -> pd.DataFrame:
    """The paper's Tables 2 and 3 (``references/paper_results.csv``, shipped with the package)."""
    return pd.read_csv(
        io.StringIO(_reference_csv("paper_results.csv")),
        dtype={"table": str, "note": str},
        keep_default_na=False,
        na_values={"nmi": [""], "ari": [""], "acc": [""]},
    )


def load_repo_variability() -> pd.DataFrame:
    """Mean and std over several runs from the authors' repository (``references/repo_variability.csv``)."""
    return pd.read_csv(io.StringIO(_reference_csv("repo_variability.csv")))


# The reference files' stage column is the paper's: backbone, or feature for the final layer.
_PAPER_ROLES = {"backbone": BACKBONE_ROLE, "feature": FINAL_ROLE}
# The authors' models are CD's: their final layer is CD's feature stage, but for the no_head
# model, which has no feature predictor: its final layer is the instance projector (its stage as
# our no_head runs name it).
_AUTHORS_FINAL_STAGE = {"no_head": PROJECTOR_STAGE}


def paper_rows(paper: pd.DataFrame) -> pd.DataFrame:
    """The paper's numbers in the long format, ``source`` = paper.

    CD-128/CD-256 get variant ``cd`` and their batch size, K-means gets ``kmeans_pixels``, so
    they line up with our rows; ``method`` keeps the paper's column name."""
    rows = []
    for rec in paper.itertuples(index=False):
        batch_size, variant = None, ""
        if rec.method.startswith("CD-") and rec.method[3:].isdigit():
            batch_size, variant = int(rec.method[3:]), REFERENCE_METHOD
        elif rec.method == "K-means":
            variant = BASELINE_VARIANT
        rows += [
            {
                "source": "paper",
                "table": str(rec.table),
                "dataset": rec.dataset,
                "method": rec.method,
                "batch_size": batch_size,
                "variant": variant,
                "stage": rec.stage,
                "stage_role": _PAPER_ROLES[rec.stage],
                "metric": metric,
                "mean": float(getattr(rec, metric)),
                "note": rec.note,
            }
            for metric in SCORES
        ]
    return pd.DataFrame(rows)


def authors_rows(repo: pd.DataFrame) -> pd.DataFrame:
    """The authors' repository mean +- std in the long format (``source`` = authors_repo; their
    runs are of CD at batch 128; ``variant``: the repository's model)."""
    rows = []
    for rec in repo.itertuples(index=False):
        role = _PAPER_ROLES[rec.stage]
        stage = _AUTHORS_FINAL_STAGE.get(rec.model, FEATURE_STAGE) if role == FINAL_ROLE else BACKBONE_STAGE
        rows += [
            {
                "source": "authors_repo",
                "dataset": rec.dataset,
                "method": REFERENCE_METHOD,
                "batch_size": AUTHORS_BATCH_SIZE,
                "variant": rec.model,
                "stage": stage,
                "stage_role": role,
                "metric": metric,
                "mean": float(getattr(rec, f"{metric}_mean")),
                "std": float(getattr(rec, f"{metric}_std")),
                "note": "authors' repository: mean and std over several runs",
            }
            for metric in SCORES
        ]
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Every published number, by the method it is of

CD_PAPER, CC_PAPER, AUTHORS_REPO = "cd_paper", "cc_paper", "authors_repo"
CLD_PAPER, CLD_REPO = "cld_paper", "cld_repo"
SOURCE_LABELS: dict[str, str] = {
    CD_PAPER: "CD's paper",
    CC_PAPER: "CC's paper",
    AUTHORS_REPO: "CD authors' repository",
    CLD_PAPER: "CLD's paper",
    CLD_REPO: "CLD's repository",
}
CC_METHOD = ContrastiveClustering.name
"""The method of CC's own paper and of CD's paper's CC column."""
CC_PUBLISHED_BATCH_SIZE = 256
"""CC's published recipe (its ``config/config.yaml``)."""
PUBLISHED_COLUMNS: list[str] = [
    "source",
    "dataset",
    "method",
    "variant",
    "batch_size",
    "paper_column",
    "stage",
    "stage_role",
    "metric",
    "mean",
    "std",
    "confirmed",
    "setting",
    "note",
]
# The columns of CD's paper that are of a method we train (its CD-128/CD-256 are CD's own).
_CD_PAPER_METHODS = {"CC": CC_METHOD}
# The authors' repository's models that are one of our methods: its no-head model is SimCLR's.
_AUTHORS_METHODS = {"no_head": SimCLR.name}
DISAGREE_NOTE = "CC's paper and CD's paper disagree here: both shown, neither picked"


def load_cc_results() -> pd.DataFrame:
    """CC's own paper (Li et al., AAAI 2021), its final stage (argmax of the cluster head)
    (``references/cc_results.csv``; ``unconfirmed``: the metrics no reachable source confirms)."""
    return pd.read_csv(
        io.StringIO(_reference_csv("cc_results.csv")), keep_default_na=False, na_values={m: [""] for m in SCORES}
    )


def _from_cd_paper(paper: pd.DataFrame) -> pd.DataFrame:
    """CD's paper's numbers of CD (CD-128/CD-256, variant cd), of CC (its CC column, any cc
    variant) and of K-means (the pixel baseline); its other columns are of methods we do not train."""
    rows = paper_rows(paper).rename(columns={"method": "paper_column"})
    method = [
        REFERENCE_METHOD
        if variant == REFERENCE_METHOD
        else ""
        if variant == BASELINE_VARIANT
        else _CD_PAPER_METHODS.get(column)
        for column, variant in zip(rows["paper_column"], rows["variant"], strict=True)
    ]
    rows = rows.assign(source=CD_PAPER, method=method, std=math.nan, confirmed=True)
    return rows[rows["method"].notna()]


def _from_cc_paper(cc: pd.DataFrame) -> pd.DataFrame:
    rows = [
        {
            "source": CC_PAPER,
            "dataset": rec.dataset,
            "method": CC_METHOD,
            "variant": "",
            "batch_size": CC_PUBLISHED_BATCH_SIZE,
            "paper_column": "CC",
            "stage": rec.stage,
            "stage_role": FINAL_ROLE,
            "metric": metric,
            "mean": float(getattr(rec, metric)),
            "std": math.nan,
            "confirmed": metric not in str(rec.unconfirmed).split(";"),
            "note": rec.note,
        }
        for rec in cc.itertuples(index=False)
        for metric in SCORES
    ]
    return pd.DataFrame(rows)


def _from_authors(repo: pd.DataFrame) -> pd.DataFrame:
    rows = authors_rows(repo)
    rows = rows[rows["variant"].isin(list(_AUTHORS_METHODS))]
    return rows.assign(
        source=AUTHORS_REPO,
        method=rows["variant"].map(_AUTHORS_METHODS),
        variant="",
        paper_column=rows["variant"],
        confirmed=True,
    )


def _mark_disagreements(rows: pd.DataFrame) -> pd.DataFrame:
    """Note, on both, where CC's paper and CD's paper's CC column differ (dataset, final stage)."""
    cc = rows[(rows["method"] == CC_METHOD) & (rows["stage_role"] == FINAL_ROLE)]
    by_source = cc.pivot_table(index=["dataset", "metric"], columns="source", values="mean")
    if {CD_PAPER, CC_PAPER} <= set(by_source.columns):
        differ = by_source[CD_PAPER].sub(by_source[CC_PAPER]).abs() > 1e-9
        datasets = {dataset for dataset, _ in differ[differ].index}
        hit = cc.index[cc["dataset"].isin(datasets) & cc["source"].isin([CD_PAPER, CC_PAPER])]
        rows.loc[hit, "note"] = [
            f"{note}; {DISAGREE_NOTE}" if note else DISAGREE_NOTE for note in rows.loc[hit, "note"]
        ]
    return rows


def load_knn_results() -> pd.DataFrame:
    """Published kNN and linear-probe accuracies with their settings (``references/knn_results.csv``:
    CLD's paper and repository)."""
    return pd.read_csv(io.StringIO(_reference_csv("knn_results.csv")), dtype={"k": "Int64"}, keep_default_na=False)


# The methods of knn_results.csv, by its spelling.
_KNN_METHODS = {"CLD": CrossLevelDiscrimination.name}
KNN_STAGE = "projection z"
"""What CLD's published kNN is measured on: its 128-d instance projection, our CLD's z, which is not
one of its evaluation stages (its final stage is the group branch g); the note says so."""


def knn_setting(rec: Any) -> str:
    """A published kNN or linear number's setting, short: "k = 200, T = 0.1" or "linear"."""
    if rec.metric == KNN:
        return f"k = {rec.k}, T = {rec.temperature}"
    return "linear"


def _from_knn(knn: pd.DataFrame) -> pd.DataFrame:
    """knn_results.csv in the long format: a kNN number in the final-stage role (its features are a
    head's output, not h: ``stage`` says which), a linear one in the backbone's."""
    rows = [
        {
            "source": rec.source,
            "dataset": rec.dataset,
            "method": _KNN_METHODS[rec.method],
            "variant": "",
            "batch_size": None,
            "paper_column": rec.variant,
            "stage": KNN_STAGE if rec.metric == KNN else BACKBONE_STAGE,
            "stage_role": FINAL_ROLE if rec.metric == KNN else BACKBONE_ROLE,
            "metric": rec.metric,
            "mean": float(rec.accuracy),
            "std": math.nan,
            "confirmed": True,
            "setting": knn_setting(rec),
            "note": f"{rec.variant}: {rec.backbone}, {rec.epochs} epochs, {knn_setting(rec)} on the {rec.features}",
        }
        for rec in knn.itertuples(index=False)
    ]
    return pd.DataFrame(rows)


def published_rows(
    paper: pd.DataFrame, cc: pd.DataFrame, repo: pd.DataFrame, knn: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Every published number of a method we train, long format (``PUBLISHED_COLUMNS``).

    ``method`` is our method's name ("" with variant ``kmeans_pixels``: the pixel baseline);
    ``variant`` is set where the number is of one variant at one batch size (CD-128 is ``cd``
    at 128) and empty where it is of the method (CC's numbers, for every cc variant);
    ``paper_column`` is the source's own name for it; ``confirmed`` is False for a number no
    reachable source confirms. ``paper``/``cc``/``repo``: ``load_paper_results()``,
    ``load_cc_results()``, ``load_repo_variability()``; ``knn``: ``load_knn_results()`` (the
    held-out accuracies; the tables of the paper leave it out)."""
    parts = [_from_cd_paper(paper), _from_cc_paper(cc), _from_authors(repo)]
    if knn is not None:
        parts.append(_from_knn(knn))
    rows = pd.concat([part.reindex(columns=PUBLISHED_COLUMNS) for part in parts], ignore_index=True)
    rows["note"] = rows["note"].fillna("")
    rows["setting"] = ["" if pd.isna(value) else value for value in rows["setting"]]  # all NaN without knn
    rows["batch_size"] = rows["batch_size"].astype("Int64")
    return _mark_disagreements(rows)
