"""The profile's summary run in MLflow: the comparison a user opens the UI for, one click away.

Every training run has its own MLflow run (cdrepro.tracking); the tables and figures made from
all of them belong to none. ``cdrepro tracking-summary`` (the workflow runs it when the whole
profile is done) logs them into one more run of the profile's experiment, named ``summary`` and
tagged ``cdrepro.kind=summary``:

    tables/   every file of results/<profile>/tables/ (table2.tex ... table10.tex,
              table_other.tex, all.csv, differences.csv, methods.tex, methods.csv,
              methods_differences.csv): whatever was made
    figures/  every file directly in results/<profile>/figures/ (curves_*, ablation_*,
              methods_*: PNG, PDF and CSV; summary.html)
    runs.csv  every training run's final scores as MLflow has them (``cdrepro compare``'s
              table, grouped by method then variant)

and a description (the run page's first box) with the final scores as a Markdown table.

Logging it again replaces it: the new run is made first, then the older summary runs are
deleted (MLflow keeps deleted runs until ``mlflow gc``), so the experiment has one, the newest:
first in the runs table, which lists the newest first. Two at once (two Snakemakes in one folder,
or one by hand) take turns, by a lock beside the profile's run locks: each would otherwise find
no older run, and both would stay. Like all tracking, a failure here never stops the workflow
(the command warns in one line).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdrepro import tracking
from cdrepro.runs import ProfilePaths

RUN_NAME = "summary"
KIND_TAG = "cdrepro.kind"
KIND = "summary"
NOTE_TAG = "mlflow.note.content"  # the run's description, rendered as Markdown by the UI
NOTE_LIMIT = 7500  # characters: MLflow refuses a tag value over 8000
LOCK_NAME = "tracking-summary"  # locks/tracking-summary.lock, beside the runs' (no run id has this form)


@dataclass
class Summary:
    """What ``log_summary`` logged: where, and how many files."""

    uri: str
    experiment_id: str
    mlflow_run_id: str
    files: int
    replaced: int  # older summary runs deleted

    def page(self) -> str:
        """The summary run's page in the UI (after the server's address)."""
        return f"#/experiments/{self.experiment_id}/runs/{self.mlflow_run_id}/artifacts?{tracking.TRAINING_SIDE}"


def summary_files(paths: ProfilePaths) -> dict[str, list[Path]]:
    """The profile's tables and figures that exist, by the artifact folder they go to."""
    from cdrepro.figures.paths import FigurePaths

    folders = {"tables": paths.tables_dir(), "figures": FigurePaths.of(paths).root}
    return {name: sorted(p for p in folder.glob("*") if p.is_file()) for name, folder in folders.items()}


def scores_markdown(table) -> str:
    """Each run's final stage and its scores, as a Markdown table (the run's description)."""
    header = ["method", "variant", "dataset", "batch", "seed", "final stage", "ACC", "NMI", "ARI"]
    lines = [
        "Final scores of every training run of this profile (`runs.csv`; the tables and figures are under Artifacts).",
        "",
        _markdown_row(header),
        _markdown_row(["---"] * len(header)),
    ]
    for row in table.to_dict("records"):
        stage = row[tracking.FINAL_STAGE_TAG] or ""
        scores = [row.get(f"{stage}_{score}", float("nan")) for score in ("acc", "nmi", "ari")]
        line = _markdown_row(
            [
                row["method"],
                row["variant"],
                row["dataset"],
                row["batch_size"],
                row["seed"],
                stage,
                *(f"{v:.4f}" if v == v else "" for v in scores),
            ]
        )  # NaN: not evaluated
        if sum(len(text) + 1 for text in lines) + len(line) > NOTE_LIMIT:
            lines.append("\n(more runs in runs.csv)")
            break
        lines.append(line)
    return "\n".join(lines)


def _markdown_row(cells: list) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def log_summary(params: dict[str, Any]) -> Summary | None:
    """Log the profile's summary run (replacing the older one); None if the profile has no
    tables or figures yet. A failure raises (the command turns it into a warning)."""
    paths = ProfilePaths.from_params(params)
    files = summary_files(paths)
    if not any(files.values()):
        return None
    uri, _, mlflow_client, experiment_id = tracking.open_experiment(params)
    # Waits for another summary of this profile: the later one then replaces it (module docstring).
    with tracking.waiting_lock(paths.lock(LOCK_NAME)):
        return _log_summary(params, files, uri, mlflow_client, experiment_id)


def _log_summary(
    params: dict[str, Any], files: dict[str, list[Path]], uri: str, mlflow_client, experiment_id: str
) -> Summary:
    older = tracking.retry(mlflow_client.search_runs, [experiment_id], f"tags.`{KIND_TAG}` = '{KIND}'")
    table = tracking.by_method(tracking.runs_table(params), params)
    commit, _ = tracking.git_commit()
    run = tracking.retry(
        mlflow_client.create_run,
        experiment_id,
        run_name=RUN_NAME,
        tags={KIND_TAG: KIND, "profile": params["profile"], "git_commit": commit, NOTE_TAG: scores_markdown(table)},
    )
    run_id = run.info.run_id
    for folder, found in files.items():
        for path in found:
            tracking.retry(mlflow_client.log_artifact, run_id, str(path), folder)
    with tempfile.TemporaryDirectory() as tmp:
        table.to_csv(Path(tmp) / "runs.csv", index=False)
        tracking.retry(mlflow_client.log_artifact, run_id, str(Path(tmp) / "runs.csv"))
    tracking.retry(mlflow_client.set_terminated, run_id, "FINISHED")
    for old in older:  # only now: the experiment is never without a summary
        tracking.retry(mlflow_client.delete_run, old.info.run_id)
    return Summary(uri, experiment_id, run_id, sum(map(len, files.values())) + 1, len(older))
