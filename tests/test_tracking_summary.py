"""The MLflow UI as a user meets it (docs/mlflow.md): the profile's experiment opens as a
model-training experiment on a runs table with the scores as columns, the summary run holds the
tables and figures, and a store that cannot be written costs one line per command, not
MLflow's tracebacks.

No training here: a fake results folder and runs logged straight through the Tracker.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from mlflow_server import mlflow_server
from system_packages import skip_unless_installed
from test_tracking import cli, empty_store, mlflow_runs, tracked  # noqa: F401 (fixtures)

from cdrepro import tracking
from cdrepro.config import validate_params
from cdrepro.run_settings import resolve_run
from cdrepro.runs import ProfilePaths, Run, run_id
from cdrepro.tracking_summary import KIND, KIND_TAG, NOTE_TAG, RUN_NAME, log_summary

RUNS = [Run("digits", 128, "cd", 42), Run("digits", 128, "cc", 42)]
TABLES = ["all.csv", "methods.csv", "methods.tex", "table2.tex"]
FIGURES = ["ablation_digits.png", "methods_digits.csv", "methods_digits.png", "summary.html"]


@pytest.fixture
def profile(embedded_params, tmp_path, monkeypatch, tracked, empty_store):  # noqa: F811
    """The embedded params with two runs, results under tmp_path (the cwd, with params.yaml),
    the store a copy of the empty one; returns (params, paths)."""
    monkeypatch.chdir(tmp_path)
    embedded_params["results_dir"] = str(tmp_path / "results")
    embedded_params["runs"] = [vars(run).copy() for run in RUNS]
    params = validate_params(embedded_params)
    paths = ProfilePaths.from_params(params)
    paths.root.mkdir(parents=True)
    shutil.copy(empty_store, paths.root / tracking.DB_NAME)
    Path("params.yaml").write_text(yaml.safe_dump(embedded_params, sort_keys=False))
    return params, paths


def fake_results(paths: ProfilePaths) -> None:
    """What the tables and figures jobs leave, as files of a few bytes; a run's head figure,
    which is the run's and not the summary's."""
    for folder, names in (("tables", TABLES), ("figures", FIGURES)):
        (paths.root / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            (paths.root / folder / name).write_text(f"{name} of the profile\n")
    heads = paths.root / "figures" / "heads" / run_id(RUNS[0])
    heads.mkdir(parents=True)
    (heads / "lime.png").write_text("a run's own figure")


def log_evaluated_runs(params: dict, paths: ProfilePaths) -> None:
    """Each run as training and evaluation log it, with made-up scores (ACC 0.5, 0.6, ...)."""
    for i, run in enumerate(RUNS):
        final = "feature" if run.variant == "cd" else "cluster"
        scores = {"nmi": 0.4, "ari": 0.3, "acc": 0.5 + i / 10}
        with tracking.Tracker(params, paths, resolve_run(params, run)) as tracker:
            tracker.start([])
            tracker.log_epoch({"epoch": 1, "lr": 0.1, "loss": 2.0})
        tracker.log_evaluation({"final_stage": final, "stages": {"backbone": scores, final: scores}})
        assert tracker.active


def summary_runs(uri: str, profile_name: str) -> list:
    return [r for r in mlflow_runs(uri, profile_name) if r.data.tags.get(KIND_TAG) == KIND]


def artifacts(uri: str, mlflow_run_id: str, folder: str | None = None) -> list[str]:
    from mlflow.tracking import MlflowClient

    return sorted(a.path for a in MlflowClient(tracking_uri=uri).list_artifacts(mlflow_run_id, folder))


# --------------------------------------------------------------------------- the experiment


def test_tracking_init_makes_a_model_training_experiment_with_the_runs_view(profile, capsys):
    params, paths = profile
    code, out, _ = cli(capsys, "tracking-init")
    assert code == 0 and "viewStateShareKey=cdrepro&workflowType=machine_learning" in out
    experiment = experiment_of(params, paths)
    assert experiment.tags[tracking.KIND_TAG] == "custom_model_development"
    view = json.loads(experiment.tags["mlflow.sharedViewState.cdrepro"])
    assert {"metrics.`final_acc`", "metrics.`backbone_acc`", "tags.`method`", "tags.`variant`"} <= set(
        view["selectedColumns"]
    )


def test_an_older_experiment_gets_the_kind_and_a_chosen_kind_stays(profile, capsys):
    """An experiment made before the kind existed gets it; one whose kind a user chose in the
    UI keeps it."""
    from mlflow.tracking import MlflowClient

    params, paths = profile
    client = MlflowClient(tracking_uri=tracking.tracking_uri(paths))
    experiment_id = client.create_experiment(tracking.experiment_name(params["profile"]))
    assert cli(capsys, "tracking-init")[0] == 0
    assert experiment_of(params, paths).tags[tracking.KIND_TAG] == "custom_model_development"
    client.set_experiment_tag(experiment_id, tracking.KIND_TAG, "genai_development")
    assert cli(capsys, "tracking-init")[0] == 0
    assert experiment_of(params, paths).tags[tracking.KIND_TAG] == "genai_development"


def experiment_of(params: dict, paths: ProfilePaths):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking.tracking_uri(paths))
    return client.get_experiment_by_name(tracking.experiment_name(params["profile"]))


def test_an_evaluated_run_has_its_final_stage_scores_under_one_name(profile):
    """final_acc etc.: CD's feature_acc and CC's cluster_acc in one column; compare leaves them out."""
    params, paths = profile
    log_evaluated_runs(params, paths)
    runs = {r.data.tags["variant"]: r.data.metrics for r in mlflow_runs(tracking.tracking_uri(paths), "embedded")}
    assert runs["cd"]["final_acc"] == runs["cd"]["feature_acc"] == 0.5
    assert runs["cc"]["final_acc"] == runs["cc"]["cluster_acc"] == 0.6
    assert not {"final_acc", "final_nmi", "final_ari"} & set(tracking.runs_table(params).columns)


# --------------------------------------------------------------------------- the summary run


def test_the_summary_run_holds_the_tables_and_figures_and_is_replaced_not_duplicated(profile, capsys):
    params, paths = profile
    log_evaluated_runs(params, paths)
    fake_results(paths)
    uri = tracking.tracking_uri(paths)
    code, out, err = cli(capsys, "tracking-summary")
    assert code == 0 and "summary run" in out, err
    (first,) = summary_runs(uri, "embedded")
    assert first.info.run_name == RUN_NAME and first.info.status == "FINISHED"
    assert artifacts(uri, first.info.run_id) == ["figures", "runs.csv", "tables"]
    assert artifacts(uri, first.info.run_id, "tables") == [f"tables/{name}" for name in TABLES]
    assert artifacts(uri, first.info.run_id, "figures") == [f"figures/{name}" for name in FIGURES]
    note = first.data.tags[NOTE_TAG]
    assert "| cd | cd | digits | 128 | 42 | feature | 0.5000 |" in note
    assert "| cc | cc | digits | 128 | 42 | cluster | 0.6000 |" in note

    (paths.root / "tables" / "table3.tex").write_text("a table made since")
    code, out, _ = cli(capsys, "tracking-summary")
    assert code == 0 and "1 older replaced" in out
    (second,) = summary_runs(uri, "embedded")  # one summary run, the new one
    assert second.info.run_id != first.info.run_id
    assert "tables/table3.tex" in artifacts(uri, second.info.run_id, "tables")
    assert len(mlflow_runs(uri, "embedded")) == len(RUNS) + 1
    assert sorted(tracking.runs_table(params)["run_id"]) == sorted(run_id(r) for r in RUNS)  # compare ignores it


def test_two_summaries_at_once_leave_one_summary_run(profile, monkeypatch):
    """Two at once (two Snakemakes in one folder, or one by hand) take turns: each would find no
    older summary run to replace, and both would stay. Threads stand for the two processes (the
    lock is flock on a file each opens, so they exclude each other as processes do); the wait
    between the search for older runs and the new run's creation makes the race certain."""
    params, paths = profile
    log_evaluated_runs(params, paths)
    fake_results(paths)
    tracking.init_store(params)  # as the workflow's onstart does
    runs_table = tracking.runs_table

    def slowly(*args):
        time.sleep(1.5)
        return runs_table(*args)

    monkeypatch.setattr(tracking, "runs_table", slowly)
    with ThreadPoolExecutor(2) as pool:
        done = list(pool.map(lambda _: log_summary(params), range(2)))
    (left,) = summary_runs(tracking.tracking_uri(paths), "embedded")
    assert sorted(summary.replaced for summary in done) == [0, 1]
    assert left.info.run_id == max(done, key=lambda summary: summary.replaced).mlflow_run_id  # the later one


def test_no_summary_run_before_there_are_tables_or_figures(profile, capsys):
    params, paths = profile
    code, out, _ = cli(capsys, "tracking-summary")
    assert code == 0 and "no tables or figures" in out
    assert not (paths.root / "mlartifacts").exists()


# --------------------------------------------------------------------------- failures


# Run in a child process under the failure (a read-only store or a full disk): tracking-init,
# the summary, and a training run's tracker. stderr is what a user sees.
FAILING_COMMANDS = textwrap.dedent("""
    import logging, sys
    from cdrepro import tracking
    from cdrepro.cli import main
    from cdrepro.config import load_params
    from cdrepro.run_settings import resolve_run
    from cdrepro.runs import ProfilePaths, Run
    assert main(["tracking-init"]) == 0 and main(["tracking-summary"]) == 0
    params = load_params("params.yaml")
    settings = resolve_run(params, Run("digits", 128, "cd", 42))
    with tracking.Tracker(params, ProfilePaths.from_params(params), settings) as tracker:
        tracker.start([])
        tracker.log_epoch({"epoch": 1, "lr": 0.1, "loss": 2.0})
    assert not tracker.active
""")


def full_disk() -> None:
    """In the child: no file may grow (RLIMIT_FSIZE 0 works for root too, unlike chmod); a
    write past it fails with EFBIG, as one on a full disk fails with ENOSPC."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def run_failing(env_uri: str | None, preexec=None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env |= {"MLFLOW_TRACKING_URI": env_uri} if env_uri else {}
    result = subprocess.run(
        [sys.executable, "-c", FAILING_COMMANDS],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=preexec,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stderr


@pytest.mark.parametrize(
    "failure",
    [
        "read-only mlflow.db",
        "full disk",
        "read-only folder",
        pytest.param("mlflow.db a folder", marks=pytest.mark.slow),
    ],
)
def test_an_unwritable_store_is_one_line_per_command_without_tracebacks(profile, failure):
    params, paths = profile
    fake_results(paths)
    db = paths.root / tracking.DB_NAME
    if failure == "read-only mlflow.db":  # what SQLite says of a chmod a-w mlflow.db, even to root
        stderr = run_failing(f"sqlite:///file:{db}?mode=ro&uri=true")
        advice = "is not writable: make it and its folder writable"
    elif failure == "full disk":
        stderr = run_failing(None, preexec=full_disk)
        advice = "is full or failing: free some space"
    elif failure == "mlflow.db a folder":  # MLflow alone: 37 retry lines over 100 s per command
        db.unlink()
        db.mkdir()
        stderr = run_failing(None)
        advice = f"is a folder, not a SQLite file: move it aside (mv {db} {db}.aside)"
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into a read-only folder (the read-only mlflow.db case covers root)")
        paths.root.chmod(0o555)
        try:
            stderr = run_failing(None)
        finally:
            paths.root.chmod(0o755)
        advice = "is not writable"
    assert "Traceback" not in stderr and "will be retried" not in stderr, stderr[-3000:]
    warnings = [line for line in stderr.splitlines() if "WARNING cdrepro" in line]
    assert len(warnings) == 3, stderr[-3000:]  # tracking-init, the summary, the training run
    for line in warnings:
        assert f"MLflow store {db}" in line and advice in line, line
    assert "cdrepro tracking-summary" in warnings[1] and "cdrepro sync --run digits-bs128-cd-s42" in warnings[2]


# --------------------------------------------------------------------------- the UI


def rendered_ui_page(uri: str, page: str, tmp_path: Path) -> str:
    """The DOM of the MLflow UI's ``page`` (a ``#/...`` route) on the store ``uri``, rendered by
    headless Chromium; the server is stopped (its whole process group) whatever happens."""
    with mlflow_server(uri, tmp_path, "--artifacts-destination", tracking.artifact_location(uri)) as url:
        return subprocess.run(
            [
                "chromium",
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--window-size=1600,1000",
                f"--user-data-dir={tmp_path / 'chromium'}",
                "--virtual-time-budget=20000",
                "--dump-dom",
                f"{url}/{page}",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout


@pytest.mark.slow
def test_the_ui_opens_the_runs_table_with_the_scores_and_the_summary_run(profile, tmp_path, capsys):
    """What `cdrepro ui` links to, rendered by headless Chromium: the runs table (not the
    GenAI overview) with the final-stage scores as columns, and the summary run in it."""
    skip_unless_installed(
        None if shutil.which("chromium") else "needs Debian's chromium (.ci/run installs it: apt-get install chromium)"
    )
    params, paths = profile
    log_evaluated_runs(params, paths)
    fake_results(paths)
    assert cli(capsys, "tracking-summary")[0] == 0
    _, _, experiment_id = tracking.init_store(params)
    dom = rendered_ui_page(tracking.tracking_uri(paths), tracking.runs_page(experiment_id), tmp_path)
    # The model-training side's runs table (its columns as the view says; the GenAI overview has
    # no run names), the summary run among the runs. Columns beyond the window are not rendered.
    for text in ("final_acc", "final_nmi", "digits/bs128/cd/seed42", "digits/bs128/cc/seed42", f">{RUN_NAME}<"):
        assert text in dom, f"{text} not on the rendered runs page"
    assert "Source" not in dom  # a default column the view replaces
    assert "Model registry" in dom  # in the sidebar of the model-training side only
