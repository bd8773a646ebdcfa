"""The method seam from the outside: a method defined and registered here, in the test, goes
through prepare, train, evaluate, tables, MLflow and figures with no edit anywhere else, and
its own loss-term and stage names show up in every output."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from test_tracking import empty_store, mlflow_runs, tracked  # noqa: F401 (fixtures)
from torch import nn

from cdrepro import tracking
from cdrepro.cli import main
from cdrepro.methods import METHODS
from cdrepro.methods.base import ARGMAX, Method, Stage
from cdrepro.runs import ProfilePaths, Run, run_id

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TOY_RUN = Run("digits", 128, "toy_wide", 42)
CD_RUN = Run("digits", 128, "cd", 42)


class Toy(Method):
    """A projection pulled together across views and a vote head kept balanced: two terms of
    its own, and three stages, one of them an argmax."""

    name = "toy"
    label = "Toy"
    gathered = ("p", "vote")
    options = {
        "toy_dim": {"type": "integer", "minimum": 1, "default": 8, "description": "width of p"},
        "balance_weight": {"type": "number", "minimum": 0, "default": 0.5, "description": "weight"},
    }

    def __init__(self, settings, num_classes: int) -> None:
        super().__init__(settings, num_classes)
        self.projection = nn.Linear(settings.rep_dim, settings.options["toy_dim"])
        self.voter = nn.Linear(settings.rep_dim, num_classes)

    def heads(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"p": self.projection(h), "vote": self.voter(h).softmax(dim=1)}

    def term_names(self) -> tuple[str, ...]:
        return ("toy_align", "toy_balance")

    def loss(self, out1, out2):
        align = (F.normalize(out1["p"], dim=1) - F.normalize(out2["p"], dim=1)).pow(2).sum(1).mean()
        share = torch.cat([out1["vote"], out2["vote"]]).mean(0)  # (K,)
        balance = (share * share.clamp_min(1e-8).log()).sum()  # minus the entropy of the share
        return {
            "toy_align": align,
            "toy_balance": balance,
            "loss": align + self.settings.options["balance_weight"] * balance,
        }

    def stages(self) -> dict[str, Stage]:
        return {"backbone": Stage("h"), "toy_proj": Stage("p"), "toy_vote": Stage("vote", ARGMAX)}


@pytest.fixture
def toy_profile(embedded_params, tmp_path, monkeypatch, tracked, empty_store):  # noqa: F811
    """A profile with one CD run and one run of the toy method, MLflow on, cwd tmp_path."""
    monkeypatch.setitem(METHODS, "toy", Toy)
    monkeypatch.chdir(tmp_path)
    p = embedded_params
    p["results_dir"] = str(tmp_path / "results")
    p["model"]["backbone_width"] = 4
    p["train"].update(epochs=1, image_size=16, device="cpu")
    p["evaluate"]["kmeans_n_init"] = 1
    p["figures"]["tsne"].update(sample=200, max_iter=250)
    p["figures"]["lime"].update(num_samples=10, images_per_head=2, heads=1)
    p["methods"]["toy"] = {"balance_weight": 0.25}
    p["variants"]["toy_wide"] = {"method": "toy", "toy_dim": 12, "schedule": False}
    p["runs"] = [vars(CD_RUN) | {"targets": ["reproduce_tables", "compare_methods"]}, vars(TOY_RUN).copy()]
    store = ProfilePaths.from_params(p).root / tracking.DB_NAME
    store.parent.mkdir(parents=True)
    shutil.copy(empty_store, store)
    Path("params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    return ProfilePaths.from_params(p)


def cdrepro(*argv: str) -> None:
    assert main(list(argv)) == 0, f"cdrepro {' '.join(argv)} failed"


def test_a_method_registered_by_a_test_goes_through_the_whole_pipeline(toy_profile):
    paths = toy_profile
    toy, cd = run_id(TOY_RUN), run_id(CD_RUN)
    cdrepro("prepare", "--dataset", "digits")
    cdrepro("split", "--dataset", "digits")
    cdrepro("baseline", "--dataset", "digits")
    for rid in (cd, toy):
        cdrepro("train", "--run", rid, "--threads", "1")
        cdrepro("evaluate", "--run", rid, "--threads", "1")

    # curves.csv: the method's own terms, nothing of CD's.
    with paths.curves(toy).open(newline="") as handle:
        header = next(csv.reader(handle))
    assert header == ["epoch", "lr", "loss", "toy_align", "toy_balance", "seconds", "pairs_per_s"]
    # metrics.json: its three stages, the argmax one last.
    metrics = json.loads(paths.metrics(toy).read_text())
    assert metrics["method"] == "toy" and list(metrics["stages"]) == ["backbone", "toy_proj", "toy_vote"]
    assert metrics["final_stage"] == "toy_vote"
    settings = json.loads(paths.train_summary(toy).read_text())["settings"]
    assert settings["toy_dim"] == 12 and settings["balance_weight"] == 0.25 and settings["method"] == "toy"

    # MLflow: the method as a tag and a param, its terms per epoch, every stage's scores.
    runs = {r.data.tags[tracking.RUN_ID_TAG]: r for r in mlflow_runs(tracking.tracking_uri(paths), "embedded")}
    logged = runs[toy].data
    assert logged.tags["method"] == "toy" and logged.params["method"] == "toy"
    assert logged.tags["method_label"] == "Toy" and logged.tags["targets"] == "reproduce_tables"
    assert {"toy_align", "toy_balance", "loss"} <= set(logged.metrics)
    assert {
        f"{stage}_{score}" for stage in ("backbone", "toy_proj", "toy_vote") for score in ("nmi", "ari", "acc")
    } <= set(logged.metrics)
    assert runs[cd].data.tags["method"] == "cd"
    # The docs' one filter for the methods table's runs (docs/mlflow.md).
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking.tracking_uri(paths))
    experiment = client.get_experiment_by_name(tracking.experiment_name("embedded")).experiment_id
    found = client.search_runs([experiment], "tags.targets LIKE '%compare_methods%'")
    assert [r.data.tags[tracking.RUN_ID_TAG] for r in found] == [cd]

    # Tables: all.csv has the toy's rows at each of its stages, and a table gives it rows.
    cdrepro("tables")
    with (paths.tables_dir() / "all.csv").open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["source"] == "ours" and r["method"] == "toy"]
    assert {(r["stage"], r["stage_role"]) for r in rows} == {
        ("backbone", "backbone"),
        ("toy_proj", "intermediate"),
        ("toy_vote", "final"),
    }
    tex = "".join(p.read_text() for p in paths.tables_dir().glob("*.tex"))
    assert "toy" in tex.lower()

    # Figures: the curves show the toy's own terms.
    cdrepro("figures", "--threads", "1")
    curves = [p for p in (paths.root / "figures").glob("curves_*.csv")]
    assert curves and any("toy_align" in p.read_text() for p in curves)
