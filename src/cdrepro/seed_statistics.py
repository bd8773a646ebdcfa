"""Seed statistics: how sure a mean over seeds is, and whether two rows differ by more than noise.

Every place that compares methods or variants reads these (the paper's tables and ``all.csv``,
the methods table and its figure), so that they all say the same thing about the same runs:

- **The interval of a mean** over n seeds is Student's t interval, 95 %, n - 1 degrees of
  freedom (``scipy.stats.t``): the seeds are few (2 to 5), where the normal 1.96 would claim
  far more certainty than there is.
- **A paired difference** of two rows (two methods, or an ablation and its full model, at the
  same dataset, batch size, stage role and metric) is taken seed by seed over the seeds both
  rows have, then summarised as one mean with its interval. A seed is the same draw for every
  variant, so the per-seed difference cancels what the two runs of a seed have in common; a
  seed only one row has is left out, not matched to another.
- **Within noise**: the difference's interval contains 0.
- **One seed** (or one shared seed): no interval (a t interval needs n - 1 >= 1); the rows say
  "one seed" instead. No shared seed: no difference at all ("no shared seed").

Which rows are compared (``pairs``): each ablation against its full model, the variant named
as its method (``no_ne`` against ``cd``); and every two methods, each by its full model where it
has one at that dataset and batch size, else by each of its variants (CC's ``cc_published``
at batch 256, where no ``cc`` ran).

Pure functions of the long frame (``cdrepro.results.collect``'s columns ``seeds`` and
``values``: per-seed values, ``;``-joined in seed order); nothing here reads or writes a file.
``with_intervals`` adds each mean's interval to that frame (``ci_low``, ``ci_high``),
``paired_differences`` makes the frame of differences (``DIFFERENCE_COLUMNS``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from scipy import stats

CONFIDENCE = 0.95
ONE_SEED = "one seed"
NO_SHARED_SEED = "no shared seed"
ABLATION_COMPARISON, METHODS_COMPARISON = "ablation", "methods"
"""The two kinds of pair (the ``comparison`` column)."""

SEED_STATISTICS_COLUMNS: list[str] = ["mean", "std", "ci_low", "ci_high", "n_seeds", "seeds", "values"]
"""A row's statistics over seeds, in every long CSV (all.csv, methods.csv, the differences): the
mean, std and 95 % interval of the per-seed numbers, their count, and the seeds and numbers
themselves (``;``-separated)."""

DIFFERENCE_COLUMNS: list[str] = [
    "dataset",
    "batch_size",
    "stage_role",
    "metric",
    "comparison",
    "method",
    "variant",
    "stage",
    "vs_method",
    "vs_variant",
    "vs_stage",
    *SEED_STATISTICS_COLUMNS,
    "within_noise",
    "note",
]
"""One row per paired difference (``method``/``variant``/``stage`` minus ``vs_*``). ``mean``,
``std``, ``ci_low``/``ci_high``, ``n_seeds``, ``seeds`` and ``values`` are those of the per-seed
differences over the shared seeds, as they are those of the per-seed numbers in the long frame."""


@dataclass(frozen=True)
class Interval:
    """A mean over seeds with its sample std and confidence interval (NaN under two seeds)."""

    mean: float
    std: float
    n: int
    low: float
    high: float

    @property
    def half_width(self) -> float:
        """What the tables print after the mean's ``±`` (the interval is symmetric)."""
        return (self.high - self.low) / 2

    @property
    def within_noise(self) -> bool | None:
        """Whether the interval contains 0; None where there is no interval to tell."""
        return None if self.n < 2 else bool(self.low <= 0.0 <= self.high)

    @property
    def note(self) -> str:
        return interval_note(self.n)


def interval_note(n_seeds: int) -> str:
    """What a row says instead of an interval: "one seed", "no shared seed", or nothing."""
    return {0: NO_SHARED_SEED, 1: ONE_SEED}.get(int(n_seeds), "")


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """The mean of ``values`` and its Student t interval. The half-width is t * std / sqrt(n),
    written out rather than ``stats.t.interval``, which gives NaN for identical values (std 0),
    where the honest interval is the point itself."""
    n = len(values)
    if n < 2:
        mean = float(values[0]) if n else math.nan
        return Interval(mean, math.nan, n, math.nan, math.nan)
    mean, std = statistics.fmean(values), statistics.stdev(values)
    half = float(stats.t.ppf((1 + confidence) / 2, df=n - 1)) * std / math.sqrt(n)
    return Interval(mean, std, n, mean - half, mean + half)


def interval_columns(interval: Interval) -> dict[str, Any]:
    """An interval as the frames' columns."""
    return {
        "mean": interval.mean,
        "std": interval.std,
        "ci_low": interval.low,
        "ci_high": interval.high,
        "within_noise": interval.within_noise,
        "note": interval.note,
    }


def split_values(values: Any) -> list[float]:
    """The long frame's ``values`` cell (``;``-joined per-seed values) as numbers."""
    return [float(v) for v in str(values).split(";") if v != ""]


def with_intervals(frame: pd.DataFrame) -> pd.DataFrame:
    """The long frame with ``ci_low`` and ``ci_high`` after ``std``: the interval of each row's
    mean over its per-seed ``values`` (NaN for one value). Taken here, where the numbers are
    shown, not in ``results.collect``: see its docstring."""
    intervals = [mean_interval(split_values(values)) for values in frame["values"]]
    out = frame.drop(columns=["ci_low", "ci_high"], errors="ignore")
    at = out.columns.get_loc("std") + 1
    out.insert(at, "ci_low", [interval.low for interval in intervals])
    out.insert(at + 1, "ci_high", [interval.high for interval in intervals])
    return out


def by_seed(seeds: str, values: str) -> dict[int, float]:
    """The long frame's ``seeds`` and ``values`` cells (``;``-joined) as seed -> value."""
    seed_list = [int(s) for s in str(seeds).split(";") if s != ""]
    value_list = split_values(values)
    if len(seed_list) != len(value_list):
        raise ValueError(f"{len(seed_list)} seeds ({seeds}) but {len(value_list)} values ({values})")
    return dict(zip(seed_list, value_list, strict=True))


def shared_differences(a: Mapping[int, float], b: Mapping[int, float]) -> dict[int, float]:
    """Seed -> a - b, over the seeds both have, in seed order."""
    return {seed: a[seed] - b[seed] for seed in sorted(a.keys() & b.keys())}


# --------------------------------------------------------------------------------------------
# Which rows are compared

Group = tuple[str, str]  # method, variant


def _method_rank(method: str) -> tuple[int, str]:
    """The registry's order (CD first), so that a pair reads "CD - SimCLR" in every output;
    imported here, not at the top: the registry pulls in torch, the statistics do not need it."""
    from cdrepro.methods import METHODS as REGISTRY

    names = list(REGISTRY)
    return (names.index(method), "") if method in names else (len(names), method)


def pairs(groups: Sequence[Group]) -> list[tuple[Group, Group, str]]:
    """(first, second, comparison) for the (method, variant) groups run at one dataset and batch
    size: each ablation against its full model (first: the ablation), then every two methods."""
    full = {method for method, variant in groups if variant == method}
    ablations = [(g, (g[0], g[0]), ABLATION_COMPARISON) for g in groups if g[0] in full and g[1] != g[0]]
    contestants = sorted((g for g in groups if g[0] not in full or g[1] == g[0]), key=lambda g: _method_rank(g[0]))
    methods = [
        (a, b, METHODS_COMPARISON) for i, a in enumerate(contestants) for b in contestants[i + 1 :] if a[0] != b[0]
    ]
    return ablations + methods


# --------------------------------------------------------------------------------------------
# The differences frame


def _difference_row(first: Mapping[str, Any], second: Mapping[str, Any], comparison: str) -> dict[str, Any]:
    """The paired difference of two rows of the long frame (same dataset, batch, role, metric)."""
    differences = shared_differences(
        by_seed(first["seeds"], first["values"]), by_seed(second["seeds"], second["values"])
    )
    return {
        "dataset": first["dataset"],
        "batch_size": first["batch_size"],
        "stage_role": first["stage_role"],
        "metric": first["metric"],
        "comparison": comparison,
        "method": first["method"],
        "variant": first["variant"],
        "stage": first["stage"],
        "vs_method": second["method"],
        "vs_variant": second["variant"],
        "vs_stage": second["stage"],
        **interval_columns(mean_interval(list(differences.values()))),
        "n_seeds": len(differences),
        "seeds": ";".join(map(str, differences)),
        "values": ";".join(repr(d) for d in differences.values()),
    }


def _cells(block: pd.DataFrame) -> dict[Group, dict[tuple[str, str], dict[str, Any]]]:
    """One dataset and batch size's rows: (method, variant) -> (stage role, metric) -> row."""
    cells: dict[Group, dict[tuple[str, str], dict[str, Any]]] = {}
    for rec in block.to_dict("records"):
        cells.setdefault((rec["method"], rec["variant"]), {})[(rec["stage_role"], rec["metric"])] = rec
    return cells


def paired_differences(frame: pd.DataFrame, roles: Iterable[str]) -> pd.DataFrame:
    """Every paired difference among our rows of ``frame`` (the long frame, or any frame with
    its columns; ``source`` ours, a batch size) at the stage ``roles``: one row per dataset,
    batch size, pair (``pairs``), stage role and metric, in ``DIFFERENCE_COLUMNS``."""
    roles = list(roles)
    ours = frame[(frame["source"] == "ours") & frame["batch_size"].notna() & frame["stage_role"].isin(roles)]
    metrics = list(dict.fromkeys(ours["metric"]))
    rows = []
    for _, block in ours.groupby(["dataset", "batch_size"], sort=False):
        cells = _cells(block)
        for first, second, comparison in pairs(list(cells)):
            rows += [
                _difference_row(cells[first][key], cells[second][key], comparison)
                for key in ((r, m) for r in roles for m in metrics)
                if key in cells[first] and key in cells[second]
            ]
    differences = pd.DataFrame(rows, columns=DIFFERENCE_COLUMNS)
    differences["batch_size"] = differences["batch_size"].astype("Int64")
    differences["n_seeds"] = differences["n_seeds"].astype("Int64")
    differences["within_noise"] = differences["within_noise"].astype("boolean")
    return differences
