"""Tracking through an ``mlflow server`` (issue 7, item 4): what a cluster does when its jobs
cannot share one SQLite file (docs/cluster.md, docs/mlflow.md).

A real server on the loopback interface, with its own SQLite store and an artifacts folder it
serves (``--artifacts-destination``: clients upload through HTTP and never see the folder),
and a real tiny pipeline (tracking-init, prepare, train, evaluate: the CLI the workflow's jobs
run) with ``MLFLOW_TRACKING_URI`` pointing at it. The test then asks the server, as a user on
another machine would, whether the run arrived: params, tags, per-epoch and final metrics,
files; and checks that nothing was written to the profile's local SQLite store instead.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from mlflow_server import mlflow_server as mlflow_server_at
from test_tracking import cli, loss_history, mlflow_runs

from cdrepro import tracking
from cdrepro.run_settings import resolve_run
from cdrepro.runs import ProfilePaths, Run, run_id, tracking_name

# Slow: about 25 s on the 2-core CI machine, half of it the server's start.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

RUN = Run("digits", 256, "no_ne", 42)


@pytest.fixture
def mlflow_server(tmp_path):
    """(url, artifacts folder) of a server on 127.0.0.1; stopped (its whole process group:
    the server runs uvicorn workers) when the test ends, passed or not."""
    root = tmp_path / "server"
    artifacts = root / "artifacts"
    artifacts.mkdir(parents=True)
    store = f"sqlite:///{root / 'mlflow.db'}"
    options = ("--serve-artifacts", "--artifacts-destination", artifacts.as_uri())
    with mlflow_server_at(store, root, *options, log=root / "server.log") as url:
        yield url, artifacts


@pytest.fixture
def server_params(embedded_params, tmp_path, monkeypatch, mlflow_server):
    """One tiny run whose tracking goes to the server; params.yaml in tmp_path, the cwd."""
    url, _ = mlflow_server
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CDREPRO_TRACKING", "on")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    embedded_params["results_dir"] = str(tmp_path / "results")
    embedded_params["model"]["backbone_width"] = 4
    embedded_params["train"].update(epochs=2, image_size=16, device="cpu")
    embedded_params["evaluate"]["kmeans_n_init"] = 1
    embedded_params["runs"] = [vars(RUN).copy()]
    Path("params.yaml").write_text(yaml.safe_dump(embedded_params, sort_keys=False))
    return embedded_params


def test_a_pipeline_logs_through_an_mlflow_server(server_params, mlflow_server, capsys, caplog):
    url, artifacts = mlflow_server
    rid = run_id(RUN)
    for argv in (
        ["tracking-init"],
        ["prepare", "--dataset", "digits"],
        ["split", "--dataset", "digits"],
        ["train", "--run", rid, "--threads", "1"],
        ["evaluate", "--run", rid, "--threads", "1"],
    ):
        code, _, err = cli(capsys, *argv)
        assert code == 0, (argv, err)
    assert not [r.getMessage() for r in caplog.records if r.name == "cdrepro.tracking" and r.levelname == "WARNING"], (
        "tracking failed on the way"
    )

    paths = ProfilePaths.from_params(server_params)
    assert tracking.tracking_uri(paths) == url
    assert not (paths.root / tracking.DB_NAME).exists(), "logged to the local SQLite store instead"

    # What the server has, asked over HTTP.
    [logged] = mlflow_runs(url, server_params["profile"])
    settings = resolve_run(server_params, RUN)
    assert logged.info.run_name == tracking_name(RUN) and logged.info.status == "FINISHED"
    assert logged.data.tags[tracking.RUN_ID_TAG] == rid
    assert logged.data.tags[tracking.HASH_TAG] == settings.digest()
    assert {k: logged.data.params[k] for k in settings.to_dict()} == {k: str(v) for k, v in settings.to_dict().items()}
    assert logged.data.metrics.keys() >= {"instance", "feature", "entropy", "epoch_seconds", "pairs_per_s"}
    with paths.curves(rid).open(newline="") as handle:
        curves = list(csv.DictReader(handle))
    assert loss_history(url, logged.info.run_id) == [(int(r["epoch"]), float(r["loss"])) for r in curves]
    assert [e for e, _ in loss_history(url, logged.info.run_id)] == [1, 2]
    metrics = json.loads(paths.metrics(rid).read_text())
    assert tracking.final_metrics(metrics).items() <= logged.data.metrics.items()
    # NMI/ARI/ACC and kNN of both stages, the linear probe of the backbone (issue 22).
    scores = {f"{stage}_{score}" for stage in ("backbone", "feature") for score in ("nmi", "ari", "acc", "knn")}
    assert scores | {"backbone_linear"} == set(tracking.final_metrics(metrics))
    assert logged.data.params["method"] == logged.data.tags["method"] == "cd"
    assert logged.data.tags["final_stage"] == "feature"

    # The files went up through the server (a proxied mlflow-artifacts: location, not a path
    # the client writes to) and landed in the server's artifacts folder.
    assert logged.info.artifact_uri.startswith("mlflow-artifacts:")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=url)
    names = sorted(a.path for a in client.list_artifacts(logged.info.run_id))
    assert names == ["curves.csv", "metrics.json", "train.json"]
    fetched = client.download_artifacts(logged.info.run_id, "metrics.json", str(Path("fetched")))
    assert json.loads(Path(fetched).read_text()) == metrics
    stored = list(artifacts.rglob("metrics.json"))
    assert len(stored) == 1 and logged.info.run_id in stored[0].parts
