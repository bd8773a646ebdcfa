"""Tests of cdrepro.tracking: what a pipeline logs to MLflow, concurrent writers on one SQLite
store, tracking failures that must not stop training, and the compare/sync/ui commands.

Every store lives under the test's tmp_path. Creating MLflow's SQLite schema takes seconds, so
one empty store is made per session and copied where a test needs one.
"""

from __future__ import annotations

import csv
import json
import logging
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import cdrepro.train as train_module
from cdrepro import tracking
from cdrepro.cli import main
from cdrepro.config import load_params, validate_params, with_defaults
from cdrepro.data.prepared import meta_path_for, save_prepared
from cdrepro.run_settings import resolve_run, runs_of
from cdrepro.runs import ProfilePaths, Run, run_id, tracking_name
from cdrepro.train import RunFiles, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]
RUNS = [Run("digits", 256, "cd", 42), Run("digits", 256, "no_head", 42)]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """An MLflow SQLite file with the schema and no experiment of ours, made once."""
    db = tmp_path_factory.mktemp("template") / tracking.DB_NAME
    tracking.client(f"sqlite:///{db}")
    return db


@pytest.fixture
def tracked(monkeypatch):
    monkeypatch.setenv("CDREPRO_TRACKING", "on")


@pytest.fixture
def params(embedded_params, tmp_path, monkeypatch, tracked, empty_store):
    """Two tiny runs with the profile's store (a copy of the empty one) at its default place,
    results/embedded/mlflow.db; the working directory is tmp_path, params.yaml in it."""
    monkeypatch.chdir(tmp_path)
    embedded_params["results_dir"] = str(tmp_path / "results")
    embedded_params["model"]["backbone_width"] = 4
    embedded_params["train"].update(epochs=2, image_size=16, device="cpu")
    embedded_params["evaluate"]["kmeans_n_init"] = 1
    embedded_params["runs"] = [vars(r).copy() for r in RUNS]
    # A machine of two GPUs, simulated: jobs take GPU slots, and MLflow says which (issue 23).
    embedded_params["gpus"] = {"count": 2, "slot_dir": str(tmp_path / "slots")}
    store = ProfilePaths.from_params(embedded_params).root / tracking.DB_NAME
    store.parent.mkdir(parents=True)
    shutil.copy(empty_store, store)
    Path("params.yaml").write_text(yaml.safe_dump(embedded_params, sort_keys=False))
    return embedded_params


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def mlflow_runs(uri: str, profile: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(tracking.experiment_name(profile))
    assert experiment is not None, f"no experiment for profile {profile} in {uri}"
    return client.search_runs([experiment.experiment_id], "", max_results=1000)


def loss_history(uri: str, mlflow_run_id: str, key: str = "loss") -> list[tuple[int, float]]:
    from mlflow.tracking import MlflowClient

    history = MlflowClient(tracking_uri=uri).get_metric_history(mlflow_run_id, key)
    return sorted((m.step, m.value) for m in history)


def tracking_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "cdrepro.tracking" and r.levelno == logging.WARNING]


# --------------------------------------------------------------------------- the pipeline


def test_a_pipeline_logs_one_mlflow_run_per_training_run(params, capsys, caplog):
    paths = ProfilePaths.from_params(params)
    uri = tracking.tracking_uri(paths)
    assert uri == f"sqlite:///{(paths.root / 'mlflow.db').resolve()}"
    assert cli(capsys, "tracking-init")[0] == 0
    assert cli(capsys, "prepare", "--dataset", "digits")[0] == 0
    assert cli(capsys, "split", "--dataset", "digits")[0] == 0
    for run in RUNS:
        assert cli(capsys, "train", "--run", run_id(run), "--threads", "1")[0] == 0
        assert cli(capsys, "evaluate", "--run", run_id(run), "--threads", "1")[0] == 0
    # A finished run trained again resumes, trains nothing and opens no second MLflow run.
    assert cli(capsys, "train", "--run", run_id(RUNS[0]), "--threads", "1")[0] == 0
    assert tracking_warnings(caplog) == []

    runs = {r.data.tags[tracking.RUN_ID_TAG]: r for r in mlflow_runs(uri, params["profile"])}
    assert sorted(runs) == sorted(run_id(r) for r in RUNS), "one MLflow run per training run"
    for run in RUNS:
        rid = run_id(run)
        settings = resolve_run(params, run)
        logged = runs[rid]
        assert logged.info.run_name == tracking_name(run) and logged.info.status == "FINISHED"
        expected_params = {k: str(v) for k, v in settings.to_dict().items()} | {"method": "cd"}
        expected_params.update(tracking.flat_params("evaluate", with_defaults(params)["evaluate"]))  # evaluate.knn.k
        assert logged.data.params == expected_params
        tags = logged.data.tags
        keys = ("dataset", "batch_size", "method", "variant", "seed", "profile", "params_hash")
        assert {k: tags[k] for k in keys} == {
            "dataset": "digits",
            "batch_size": "256",
            "method": "cd",
            "variant": run.variant,
            "seed": "42",
            "profile": "embedded",
            "params_hash": settings.digest(),
        }
        assert tags["git_commit"] and tags["mlflow.source.git.commit"] == tags["git_commit"]
        # One job at a time here: each takes the first slot of the first GPU.
        assert (tags["train_gpu_slots"], tags["evaluate_gpu_slots"]) == ("0.0", "0.0")
        assert Path(tags["checkpoint_path"]) == paths.checkpoint(rid).resolve()
        assert Path(tags["checkpoint_path"]).is_file()  # referenced, not copied

        metrics = json.loads(paths.metrics(rid).read_text())
        assert tags["final_stage"] == metrics["final_stage"] == ("projector" if run.variant == "no_head" else "feature")
        finals = {
            f"{stage}_{score}": value for stage, scores in metrics["stages"].items() for score, value in scores.items()
        }
        # NMI/ARI/ACC of both stages, kNN of both, the backbone's linear probe (issue 22).
        assert len(finals) == 9 and finals.items() <= logged.data.metrics.items()
        assert {"backbone_knn", "backbone_linear", "final_knn"} <= set(logged.data.metrics)
        with paths.curves(rid).open(newline="") as handle:
            curves = list(csv.DictReader(handle))
        # Every curves.csv column per epoch: the method's terms under their own names.
        terms = ["instance", "feature", "entropy"] if run.variant == "cd" else ["instance"]
        assert list(curves[0]) == ["epoch", "lr", "loss", *terms, "seconds", "pairs_per_s"]
        epoch_metrics = {"lr": "lr", "loss": "loss", "seconds": "epoch_seconds", "pairs_per_s": "pairs_per_s"}
        for column, name in epoch_metrics.items() | {(t, t) for t in terms}:
            want = [(int(r["epoch"]), float(r[column])) for r in curves]
            assert loss_history(uri, logged.info.run_id, name) == want, name
        # and the final stage's scores once more under one name for every method (final_acc ...)
        final_stage = {f"final_{score}": value for score, value in metrics["stages"][metrics["final_stage"]].items()}
        assert final_stage.items() <= logged.data.metrics.items()
        assert set(logged.data.metrics) == set(finals) | set(final_stage) | set(epoch_metrics.values()) | set(terms)
        artifacts = Path(logged.info.artifact_uri.removeprefix("file://"))
        assert artifacts.parent.parent == (paths.root / "mlartifacts").resolve()
        assert sorted(p.name for p in artifacts.iterdir()) == ["curves.csv", "metrics.json", "train.json"]
        assert json.loads((artifacts / "metrics.json").read_text()) == metrics

    # compare: MLflow's numbers, checked against the metrics files.
    code, out, err = cli(capsys, "compare", "--csv", "compare.csv")
    assert code == 0, err
    assert [line.split()[-1] for line in out.splitlines()[2:]] == ["ok", "ok"]
    assert "method" in out.splitlines()[1] and "projector_nmi" in out.splitlines()[0]
    table = list(csv.DictReader(Path("compare.csv").read_text().splitlines()))
    assert [(row["method"], row["variant"], row["final_stage"]) for row in table] == [
        ("cd", "cd", "feature"),
        ("cd", "no_head", "projector"),
    ]
    no_head = json.loads(paths.metrics(run_id(RUNS[1])).read_text())["stages"]["projector"]
    assert table[0]["projector_nmi"] == "" and float(table[1]["projector_nmi"]) == no_head["nmi"]
    tampered = paths.metrics(run_id(RUNS[1]))
    saved = json.loads(tampered.read_text())
    saved["stages"]["projector"]["acc"] += 0.01
    tampered.write_text(json.dumps(saved))
    code, out, err = cli(capsys, "compare")
    assert code == 2 and "differs: projector_acc" in out and run_id(RUNS[1]) in err


# --------------------------------------------------------------------------- parallel jobs

EPOCHS = 10


def write_one_run(params_file: Path, index: int, barrier) -> None:
    """One writer: a whole training run's worth of tracking calls, then the evaluation's."""
    from cdrepro.atomic import write_json

    params = load_params(params_file)
    paths = ProfilePaths.from_params(params)
    settings = resolve_run(params, runs_of(params)[index])
    barrier.wait(timeout=120)
    with tracking.Tracker(params, paths, settings) as tracker:
        tracker.start([])
        for epoch in range(1, EPOCHS + 1):
            tracker.log_epoch(
                {
                    "epoch": epoch,
                    "lr": 0.1 / epoch,
                    "loss": index * 100.0 + epoch,
                    "instance": 1.0,
                    "feature": 2.0,
                    "entropy": 0.5,
                }
            )
        metrics = {
            "stages": {
                "backbone": {"nmi": index / 10, "ari": 0.2, "acc": 0.3},
                "feature": {"nmi": 0.4, "ari": 0.5, "acc": index / 100},
            },
            "final_stage": "feature",
        }
        write_json(paths.metrics(settings.run_id), metrics)
        tracker.log_evaluation(metrics)
    sys.exit(0 if tracker.active else 3)


@pytest.mark.parametrize("store", ["with its schema", "not created yet"])
def test_eight_processes_log_concurrently_to_one_sqlite_store(embedded_params, tmp_path, tracked, empty_store, store):
    """Eight processes start logging at the same instant on a store without the experiment (so
    they race to create it too), with its schema or without a database at all (so they race to
    create and migrate the tables: unserialised, that left the store half-migrated for good);
    all finish, every metric is there.

    The processes are forked from this one, which has imported MLflow already (the
    empty_store fixture): eight fresh interpreters would spend most of the test importing it."""
    n = 8
    embedded_params["results_dir"] = str(tmp_path / "results")
    embedded_params["runs"] = [{"dataset": "digits", "batch_size": 128, "variant": "cd", "seed": s} for s in range(n)]
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(embedded_params, sort_keys=False))
    paths = ProfilePaths.from_params(embedded_params)
    paths.root.mkdir(parents=True)
    if store == "with its schema":
        shutil.copy(empty_store, paths.root / tracking.DB_NAME)

    fork = multiprocessing.get_context("fork")
    barrier = fork.Barrier(n)
    writers = [fork.Process(target=write_one_run, args=(params_file, i, barrier)) for i in range(n)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(timeout=300)
    assert [w.exitcode for w in writers] == [0] * n, "a writer failed or lost its tracking"

    uri = tracking.tracking_uri(paths)
    runs = mlflow_runs(uri, embedded_params["profile"])
    assert len(runs) == n
    n_params = (
        len(resolve_run(embedded_params, Run("digits", 128, "cd", 0)).to_dict())
        + 1
        + len(tracking.flat_params("evaluate", with_defaults(embedded_params)["evaluate"]))
    )  # the settings, the method, then evaluate.* (evaluate.knn.k, ...)
    for logged in runs:
        i = int(logged.data.tags["seed"])
        assert logged.info.status == "FINISHED"
        assert loss_history(uri, logged.info.run_id) == [(e, i * 100.0 + e) for e in range(1, EPOCHS + 1)]
        assert logged.data.metrics["backbone_nmi"] == i / 10 and logged.data.metrics["feature_acc"] == i / 100
        finals = {f"{stage}_{score}" for stage in ("backbone", "feature") for score in ("nmi", "ari", "acc")}
        finals |= {f"final_{score}" for score in ("nmi", "ari", "acc")}  # the feature stage's again
        assert finals | {"loss", "lr", "instance", "feature", "entropy"} == set(logged.data.metrics)
        assert len(logged.data.params) == n_params


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize("store", ["server", "sqlite"])
def test_training_with_an_unreachable_store_completes_and_syncs_later(
    params, capsys, caplog, monkeypatch, tmp_path, store
):
    blocker = tmp_path / "a_file"
    blocker.write_text("a file where the store's folder would have to be")
    bad_uri = "http://127.0.0.1:9" if store == "server" else f"sqlite:///{blocker}/mlflow.db"
    paths = ProfilePaths.from_params(params)
    rid = run_id(RUNS[0])
    assert cli(capsys, "prepare", "--dataset", "digits")[0] == 0
    assert cli(capsys, "split", "--dataset", "digits")[0] == 0

    monkeypatch.setenv("MLFLOW_TRACKING_URI", bad_uri)
    started = time.monotonic()
    code, out, err = cli(capsys, "train", "--run", rid, "--threads", "1")
    assert code == 0, err
    assert len(tracking_warnings(caplog)) == 1, "warn once, then keep going quietly"
    assert f"cdrepro sync --run {rid}" in tracking_warnings(caplog)[0]
    code, _, err = cli(capsys, "evaluate", "--run", rid, "--threads", "1")
    assert code == 0, err
    assert len(tracking_warnings(caplog)) == 2
    assert time.monotonic() - started < 60, "a dead store must not stall training for long"
    with paths.curves(rid).open(newline="") as handle:
        assert [int(r["epoch"]) for r in csv.DictReader(handle)] == [1, 2]
    assert json.loads(paths.train_summary(rid).read_text())["epochs"] == 2
    metrics = json.loads(paths.metrics(rid).read_text())
    assert set(metrics["stages"]["backbone"]) == {"nmi", "ari", "acc", "knn", "linear"}
    assert list(blocker.parent.glob("a_file*")) == [blocker] and blocker.is_file()

    # Once the store is back (here: the profile's own), sync logs what the files hold.
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    code, out, err = cli(capsys, "sync")
    assert code == 0, err
    assert f"{rid}: 2 epochs and metrics logged" in out
    code, out, err = cli(capsys, "compare")
    assert code == 0, err
    uri = tracking.tracking_uri(paths)
    (logged,) = mlflow_runs(uri, params["profile"])
    assert [step for step, _ in loss_history(uri, logged.info.run_id)] == [1, 2]
    assert logged.info.status == "FINISHED" and logged.info.run_name == tracking_name(RUNS[0])


def test_tracking_changes_nothing_and_a_resumed_run_continues_its_mlflow_run(
    embedded_params, tmp_path, monkeypatch, tracked, empty_store
):
    embedded_params["model"]["backbone_width"] = 4
    embedded_params["train"].update(epochs=3, image_size=16, device="cpu")
    params = validate_params(embedded_params)
    settings = resolve_run(params, Run("digits", 16, "cd", 0))
    rng = np.random.default_rng(0)
    prepared = tmp_path / "data" / "tiny.npz"
    save_prepared(
        prepared,
        meta_path_for(prepared),
        "tiny",
        rng.integers(0, 256, size=(64, 16, 16, 3), dtype=np.uint8),
        np.arange(64) % 4,
        ["a", "b", "c", "d"],
        {},
    )

    def files(root: Path) -> RunFiles:
        p = ProfilePaths(root)
        return RunFiles(
            p.checkpoint(settings.run_id),
            p.model(settings.run_id),
            p.curves(settings.run_id),
            p.train_summary(settings.run_id),
        )

    train(settings, prepared, files(tmp_path / "untracked"), threads=1, progress=False)

    tracked_paths = ProfilePaths(tmp_path / "tracked")
    tracked_paths.root.mkdir()
    shutil.copy(empty_store, tracked_paths.root / tracking.DB_NAME)
    real_save = train_module.save_state

    def die_after_epoch_1(path, state):
        real_save(path, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "save_state", die_after_epoch_1)
    with pytest.raises(KeyboardInterrupt), tracking.Tracker(params, tracked_paths, settings) as tracker:
        train(settings, prepared, files(tracked_paths.root), threads=1, progress=False, sink=tracker)
    uri = tracking.tracking_uri(tracked_paths)
    (interrupted,) = mlflow_runs(uri, params["profile"])
    assert interrupted.info.status == "KILLED"
    monkeypatch.setattr(train_module, "save_state", real_save)
    with tracking.Tracker(params, tracked_paths, settings) as tracker:
        train(settings, prepared, files(tracked_paths.root), threads=1, progress=False, sink=tracker)
    assert tracker.active

    (resumed,) = mlflow_runs(uri, params["profile"])
    assert resumed.info.run_id == interrupted.info.run_id and resumed.info.status == "FINISHED"
    assert [step for step, _ in loss_history(uri, resumed.info.run_id)] == [1, 2, 3]
    untracked = torch.load(files(tmp_path / "untracked").model, weights_only=True)["model"]
    tracked_model = torch.load(files(tracked_paths.root).model, weights_only=True)["model"]
    assert all(torch.equal(untracked[k], tracked_model[k]) for k in untracked)
    # Nothing outside the profile's results folder.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "tracked", "untracked"]


# --------------------------------------------------------------------------- commands


def test_commands_that_do_not_track_do_not_import_mlflow():
    code = (
        "import sys; from cdrepro.cli import main; import cdrepro.tracking; "
        f"assert main(['validate', '--params', {str(REPO / 'params.yaml')!r}]) == 0; "
        "assert 'mlflow' not in sys.modules, 'mlflow imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_compare_groups_the_runs_by_method_then_variant(embedded_params, tmp_path, monkeypatch):
    """`cdrepro compare` lists the runs as the methods table groups them: by method (cd, simclr,
    cc, cld, cdc), then variant (the params' order), then in the params' run order, whatever the
    order of the runs list and of MLflow's answer."""
    import pandas as pd

    embedded_params["results_dir"] = str(tmp_path / "results")
    embedded_params["runs"].reverse()  # cdc first, CD at 256 before CD at 128
    runs = runs_of(embedded_params)
    methods = {"simclr": "simclr", "cc": "cc", "cld": "cld", "cdc": "cdc"}
    logged = pd.DataFrame(
        [
            {
                "run_id": run_id(run),
                "dataset": run.dataset,
                "batch_size": run.batch_size,
                "method": methods.get(run.variant, "cd"),
                "variant": run.variant,
                "seed": run.seed,
                "final_stage": "feature",
                "backbone_nmi": 0.5,
                "status": "FINISHED",
                "mlflow_run_id": str(i),
            }
            for i, run in enumerate(sorted(runs, key=run_id))
        ]
    )
    monkeypatch.setattr(tracking, "runs_table", lambda params: logged)
    comparison = tracking.compare_with_files(embedded_params)
    got = list(
        zip(comparison.table["method"], comparison.table["variant"], comparison.table["batch_size"], strict=True)
    )
    assert got == [
        ("cd", "cd", 256),
        ("cd", "cd", 128),
        ("cd", "no_ne", 128),
        ("cd", "no_bn", 128),
        ("cd", "no_ne_no_bn", 128),
        ("cd", "no_sched", 128),
        ("cd", "no_head", 128),
        ("cd", "single_view", 128),
        ("simclr", "simclr", 128),
        ("cc", "cc", 128),
        ("cld", "cld", 128),
        ("cdc", "cdc", 128),
    ]
    assert set(comparison.table["check"]) == {"no metrics.json"} and comparison.problems == []
    header = comparison.text().splitlines()[1].split()
    assert header[:2] == ["method", "variant"]  # the printed table's index: grouped by method


def test_ui_serves_the_profiles_store_on_loopback_only(params, capsys, monkeypatch):
    launched = []
    monkeypatch.setattr(os, "execve", lambda path, command, env: launched.append(command))
    code, out, _ = cli(capsys, "ui", "--port", "5123")
    assert code == 0 and "http://127.0.0.1:5123" in out
    (command,) = launched
    assert command[command.index("--host") + 1] == "127.0.0.1"
    paths = ProfilePaths.from_params(params)
    assert command[command.index("--backend-store-uri") + 1] == tracking.tracking_uri(paths)
    assert command[command.index("--artifacts-destination") + 1] == (paths.root / "mlartifacts").resolve().as_uri()


def test_tracking_init_does_not_fail_the_workflow_when_the_store_is_unreachable(params, capsys, monkeypatch, caplog):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{Path('params.yaml').resolve()}/mlflow.db")
    code, _, _ = cli(capsys, "tracking-init")
    assert code == 0
    assert any("not ready" in r.getMessage() for r in caplog.records)


def test_retry_waits_out_a_locked_database_and_passes_other_errors_on(monkeypatch):
    monkeypatch.setattr(tracking.time, "sleep", lambda seconds: None)
    calls = []

    def locked_twice():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "done"

    assert tracking.retry(locked_twice) == "done" and len(calls) == 3
    calls.clear()

    def broken():
        calls.append(1)
        raise RuntimeError("disk I/O error")

    with pytest.raises(RuntimeError, match="disk I/O"):
        tracking.retry(broken)
    assert len(calls) == 1


# --------------------------------------------------------------------------- the UI


def test_a_store_that_is_a_folder_is_reported_at_once_with_the_fix(tmp_path):
    """Not MLflow's 37 retry lines over 100 s, then "not writable" (the command's one warning
    line: test_tracking_summary.py, the unwritable-store test)."""
    db = tmp_path / tracking.DB_NAME
    db.mkdir()
    started = time.monotonic()
    with pytest.raises(tracking.TrackingError, match=rf"{db} is a folder, not a SQLite file: move it aside"):
        tracking.client(f"sqlite:///{db}")
    assert time.monotonic() - started < 30


def test_a_damaged_store_is_reported_with_the_fix(tmp_path):
    db = tmp_path / tracking.DB_NAME
    db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(tracking.TrackingError, match=rf"{db} is damaged .*mv {db} {db}.broken.*cdrepro sync"):
        tracking.client(f"sqlite:///{db}")
