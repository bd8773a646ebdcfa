"""The many-clusters comparison (issue 22; CDC's claim that its advantage shows where there are
many clusters): each method at the fewest and at the most clusters of the runs for the
``many_clusters`` target. In the paper and quick profiles those are CIFAR-100's 20 superclasses
(``cifar100_20``, K = 20) and its 100 fine classes (``cifar100``, K = 100): the same images, the
same training, K from the dataset, so CC's and CDC's cluster heads are the ones under test.

Input: a profile's results for the target (``cdrepro many-clusters-table`` loads them; every run
where no run is tagged for it, as the methods table does). Output (``write_clusters_table``):

* ``many_clusters.csv``: per method's run group (method, variant, batch size), stage role
  (backbone, final) and score (NMI, ARI, ACC, and the held-out kNN where measured), one row per
  dataset with its K, the mean over seeds and ``change``: that mean minus the group's at its
  fewest clusters (empty at the fewest itself);
* ``many_clusters.tex``: the final stage's NMI, ARI and ACC at the fewest and the most clusters
  and the change, one row per run group. A profile whose runs span one K only (the embedded
  profile: digits, K = 10) gets its numbers and a caption that says there is no change to show.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cdrepro.comparison import shift
from cdrepro.latex import dataset_title, latex_escape, latex_row
from cdrepro.results import FINAL_ROLE, SCORES, ProfileResults

CLUSTERS_TABLE_FILES: tuple[str, ...] = shift.table_files("many_clusters")
"""The files of the ``many_clusters_table`` step: what its rule and DVC stage declare."""
CLUSTERS_KEY = "k"


def clusters_frame(results: ProfileResults) -> pd.DataFrame:
    """Our rows of the backbone and final stages with each dataset's K and the change from the
    fewest clusters (``cdrepro.comparison.shift``)."""
    return shift.frame_of(results, CLUSTERS_KEY, lambda m: int(m["num_classes"]))


def _tex(frame: pd.DataFrame, results: ProfileResults, results_label: str) -> str:
    final = frame[(frame["stage_role"] == FINAL_ROLE) & frame["metric"].isin(SCORES)]
    ks = sorted(final["k"].unique())
    columns = ks if len(ks) <= 1 else [ks[0], ks[-1]]  # the fewest clusters and the most
    titles = {k: sorted(set(final.loc[final["k"] == k, "dataset"])) for k in columns}
    header = ["Method", "Batch"]
    for k in columns:
        names = ", ".join(dataset_title(d, results.titles) for d in titles[k])
        header.append(rf"\multicolumn{{3}}{{c}}{{{names} ($K={k}$)}}")
    if len(columns) == 2:
        header.append(r"\multicolumn{3}{c}{Change}")
    n_groups = len(columns) + (len(columns) == 2)
    lines = [
        r"\begin{tabular}{ll" + "ccc" * n_groups + "}",
        r"\toprule",
        latex_row(header),
        latex_row(["", ""] + [m.upper() for m in SCORES] * n_groups),
        r"\midrule",
    ]
    for (method, variant, batch), part in final.groupby(shift.GROUP, sort=False):
        cells = [latex_escape(shift.group_label(results, method, variant)), str(batch)]
        for k in columns:
            at = part[part["k"] == k].set_index("metric")["mean"]
            cells += [f"{at[m]:.3f}" if m in at else "--" for m in SCORES]
        if len(columns) == 2:
            change = part[part["k"] == columns[-1]].set_index("metric")["change"]
            cells += [f"{change[m]:+.3f}" if m in change and pd.notna(change[m]) else "--" for m in SCORES]
        lines.append(latex_row(cells))
    lines += [r"\bottomrule", r"\end{tabular}"]
    if len(columns) == 2:
        about = f"at $K={columns[0]}$ and at $K={columns[1]}$ clusters, and the change from the fewest to the most"
    else:
        about = "at the one number of clusters these runs have, so no change to show"
    what = f"Many clusters: the final stage's NMI, ARI and ACC (K-means or argmax, every image) {about}"
    return shift.table_float("many_clusters", what, lines, results_label, "cdrepro.comparison.clusters")


def write_clusters_table(results: ProfileResults, out_dir: Path, *, results_label: str | None = None) -> list[Path]:
    """Write ``many_clusters.tex`` and ``many_clusters.csv`` (atomically) into ``out_dir``."""
    frame = clusters_frame(results)
    return shift.write_table(out_dir, "many_clusters", frame, lambda label: _tex(frame, results, label), results_label)


__all__ = ["CLUSTERS_TABLE_FILES", "clusters_frame", "write_clusters_table"]
