"""The Snakemake workflow, run for real on a tiny profile, planned for the paper's profile."""

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cdrepro.config import load_params
from cdrepro.methods import method_class, stages_under
from cdrepro.run_settings import resolve_run, runs_of
from cdrepro.runs import ProfilePaths, run_id

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(
        [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def tiny_params(tmp_path: Path) -> Path:
    """The embedded profile with every variant, shrunk to seconds per run."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["profile"] = "tiny"
    params["model"]["backbone_width"] = 8
    params["train"].update(epochs=1, image_size=16)
    params["evaluate"]["kmeans_n_init"] = 2
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def test_lint_is_clean():
    result = snakemake("--lint", cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_paper_profile_plans_exactly_the_20_paper_runs(tmp_path):
    result = snakemake("-n", "reproduce_tables", "--configfile", "workflow/configs/paper.yaml", cwd=REPO)
    assert result.returncode == 0, result.stderr
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout, flags=re.M))
    assert stats["train"] == "20" and stats["evaluate"] == "20" and stats["prepare"] == "4"
    planned = set(re.findall(r"--run (\S+)", result.stdout)) if "--run" in result.stdout else None
    params = load_params(REPO / "workflow" / "configs" / "paper.yaml")
    paper_runs = runs_of(params, "reproduce_tables")
    for run in paper_runs:
        s = resolve_run(params, run)
        assert (s.backbone, s.backbone_width, s.image_size, s.epochs) == ("resnet34", 64, 224, 1000)
        assert s.method == "cd" and s.hidden_dim == s.options["feature_num"] == run.batch_size
        assert s.schedule == s.grad_clip == (run.variant != "no_sched")
    cd = {(r.dataset, r.batch_size) for r in paper_runs if r.variant == "cd"}
    assert cd == {(d, b) for d in ("cifar10", "cifar100_20", "stl10", "imagenet10") for b in (128, 256)}
    ablations = {(r.dataset, r.variant) for r in paper_runs if r.variant != "cd"}
    assert {r.batch_size for r in paper_runs if r.variant != "cd"} == {128}
    assert len(ablations) == 12 and {d for d, _ in ablations} == {"stl10", "imagenet10"}
    if planned is not None:
        assert planned == {run_id(r) for r in paper_runs}


def test_paper_profile_compare_methods_plans_every_method_and_cc_published_only():
    """CD, SimCLR, CC, CLD and CDC on STL-10 and ImageNet-10 at batch 128 (CD's runs are the
    paper's, reused), and CC's published recipe on every dataset; nothing else."""
    result = snakemake("-n", "compare_methods", "--configfile", "workflow/configs/paper.yaml", cwd=REPO)
    assert result.returncode == 0, result.stderr
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout, flags=re.M))
    assert stats["train"] == stats["evaluate"] == "14" and stats["methods_table"] == "1"
    assert "tables" not in stats and "figures" not in stats
    params = load_params(REPO / "workflow" / "configs" / "paper.yaml")
    planned = {
        (s.dataset, s.batch_size, s.method, s.schedule, s.grad_clip)
        for s in (resolve_run(params, r) for r in runs_of(params, "compare_methods"))
    }
    expected = {(d, 128, m, True, True) for d in ("stl10", "imagenet10") for m in ("cd", "simclr", "cc", "cld", "cdc")}
    expected |= {(d, 256, "cc", False, False) for d in ("cifar10", "cifar100_20", "stl10", "imagenet10")}
    assert planned == expected
    reused = {run_id(r) for r in runs_of(params, "compare_methods")} & {
        run_id(r) for r in runs_of(params, "reproduce_tables")
    }
    assert reused == {"stl10-bs128-cd-s42", "imagenet10-bs128-cd-s42"}


def test_paper_profile_many_clusters_plans_every_method_at_k20_and_k100():
    """CIFAR-100-20 (K = 20; CD's run is Table 2's, reused) and CIFAR-100 (K = 100), every method
    at batch 128, and the many-clusters table; nothing else."""
    result = snakemake("-n", "many_clusters", "--configfile", "workflow/configs/paper.yaml", cwd=REPO)
    assert result.returncode == 0, result.stderr
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout, flags=re.M))
    assert stats["train"] == stats["evaluate"] == "10" and stats["many_clusters_table"] == "1"
    assert stats["prepare"] == "2" and not {"tables", "methods_table", "figures"} & set(stats)
    params = load_params(REPO / "workflow" / "configs" / "paper.yaml")
    planned = {
        (s.dataset, s.batch_size, s.method) for s in (resolve_run(params, r) for r in runs_of(params, "many_clusters"))
    }
    assert planned == {(d, 128, m) for d in ("cifar100_20", "cifar100") for m in ("cd", "simclr", "cc", "cld", "cdc")}
    assert params["datasets"]["cifar100"]["source"] == "cifar100"
    reused = {run_id(r) for r in runs_of(params, "many_clusters")} & {
        run_id(r) for r in runs_of(params, "reproduce_tables")
    }
    assert reused == {"cifar100_20-bs128-cd-s42"}


def test_paper_profile_long_tail_plans_every_method_balanced_and_at_ratios_10_and_100():
    """CIFAR-10's train split balanced and long-tailed (CIFAR-10-LT at 10 and 100), every method
    at batch 128, three datasets prepared, the long-tail table; nothing else."""
    result = snakemake("-n", "long_tail", "--configfile", "workflow/configs/paper.yaml", cwd=REPO)
    assert result.returncode == 0, result.stderr
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout, flags=re.M))
    assert stats["train"] == stats["evaluate"] == "15" and stats["long_tail_table"] == "1"
    assert stats["prepare"] == "3" and not {"tables", "methods_table", "many_clusters_table", "figures"} & set(stats)
    params = load_params(REPO / "workflow" / "configs" / "paper.yaml")
    settings = [resolve_run(params, r) for r in runs_of(params, "long_tail")]
    ratios = {"cifar10_train": None, "cifar10_lt10": 10.0, "cifar10_lt100": 100.0}
    methods = ("cd", "simclr", "cc", "cld", "cdc")
    assert {(s.dataset, s.batch_size, s.method) for s in settings} == {(d, 128, m) for d in ratios for m in methods}
    for s in settings:  # the train split only, official; a long tail where the dataset says
        assert s.training_set is not None and s.training_set["split"] == "official"
        assert (s.training_set.get("long_tail") or {}).get("imbalance_ratio") == ratios[s.dataset]
    assert {params["datasets"][d]["source"] for d in ratios} == {"cifar10"}


def test_a_params_error_through_snakemake_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "params.yaml").read_text().replace("\ntrain:", "\ntrian:"))
    result = snakemake("-n", "--configfile", str(bad), cwd=REPO)
    lines = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.strip() and not line.startswith("Using workflow specific profile")
    ]  # Snakemake's, printed first
    assert result.returncode != 0
    assert len(lines) == 1 and lines[0].startswith("cdrepro: error: ") and "'trian'" in lines[0], lines[:5]


def test_config_overrides_are_refused(tmp_path):
    result = snakemake("-n", "--config", "profile=other", cwd=REPO)
    assert result.returncode != 0


@pytest.mark.slow
def test_tiny_profile_end_to_end_then_nothing_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("CDREPRO_TRACKING", "on")  # into results/tiny/mlflow.db, under tmp_path
    params_file = tiny_params(tmp_path)
    result = snakemake("--cores", "2", "reproduce_tables", "--configfile", str(params_file), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]

    params = load_params(params_file)
    paths = ProfilePaths(tmp_path / "results" / "tiny")
    all_csv = list(csv.DictReader((paths.tables_dir() / "all.csv").open()))
    for run in runs_of(params):
        rid = run_id(run)
        metrics = json.loads(paths.metrics(rid).read_text())
        assert metrics["n_images"] == 1797 and metrics["num_classes"] == 10
        # the stages each method declares (cdrepro.methods), not a list kept here
        settings = resolve_run(params, run)
        declared = list(stages_under(method_class(settings.method), settings.options))
        assert list(metrics["stages"]) == declared and metrics["final_stage"] == declared[-1]
        assert declared[0] == "backbone" and len(declared) == (3 if settings.method == "cld" else 2)
        for stage, scores in metrics["stages"].items():
            for metric, value in scores.items():
                assert 0 <= value <= 1 or metric == "ari"
                mine = [
                    r
                    for r in all_csv
                    if r["source"] == "ours"
                    and r["variant"] == run.variant
                    and r["batch_size"] == str(run.batch_size)
                    and r["stage"] == stage
                    and r["metric"] == metric
                ]
                assert len(mine) == 1 and float(mine[0]["mean"]) == pytest.approx(value)
        curves = list(csv.DictReader(paths.curves(rid).open()))
        assert [int(r["epoch"]) for r in curves] == [1]
        assert (paths.run_dir(rid) / "checkpoint.pt").exists()
        assert (paths.logs_dir() / "train" / f"{rid}.log").exists()
    table2 = (paths.tables_dir() / "table2.tex").read_text()
    assert r"\toprule" in table2 and "Digits" in table2
    baseline = json.loads(paths.baseline("digits").read_text())
    assert f"{baseline['pixels']['nmi']:.3f}" in table2
    assert "MLflow experiment 'cdrepro/tiny'" in result.stdout + result.stderr  # onstart
    assert_mlflow_has_every_run(params, paths)

    again = snakemake("--cores", "2", "reproduce_tables", "--configfile", str(params_file), cwd=tmp_path)
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr

    # The same settings from another file path: still nothing to do.
    copy = tmp_path / "elsewhere" / "same.yaml"
    copy.parent.mkdir()
    copy.write_text(params_file.read_text())
    plan = snakemake("-n", "reproduce_tables", "--configfile", str(copy), cwd=tmp_path)
    assert "Nothing to be done" in plan.stdout + plan.stderr

    # One variant's switch changed: only that variant's run is retrained.
    changed = yaml.safe_load(params_file.read_text())
    changed["variants"]["no_ne"]["grad_clip"] = False
    copy.write_text(yaml.safe_dump(changed, sort_keys=False))
    plan = snakemake("-n", "reproduce_tables", "--configfile", str(copy), cwd=tmp_path)
    retrained = re.findall(r"rule train:.*?wildcards: run=(\S+)", plan.stdout, flags=re.S)
    assert retrained == ["digits-bs128-no_ne-s42"], plan.stdout[-3000:]


def assert_mlflow_has_every_run(params: dict, paths: ProfilePaths) -> None:
    """MLflow's search API: one run per training run, with its settings, tags and the final
    metrics of its metrics.json (tests/test_tracking.py checks the details)."""
    from mlflow.tracking import MlflowClient

    from cdrepro import tracking
    from cdrepro.runs import tracking_name

    client = MlflowClient(tracking_uri=tracking.tracking_uri(paths))
    experiment = client.get_experiment_by_name(tracking.experiment_name(params["profile"]))
    runs = client.search_runs([experiment.experiment_id], "", max_results=1000)
    by_id = {r.data.tags[tracking.RUN_ID_TAG]: r for r in runs}
    assert len(runs) == len(by_id) == len(params["runs"])
    for run in runs_of(params):
        logged, settings = by_id[run_id(run)], resolve_run(params, run)
        assert logged.info.run_name == tracking_name(run) and logged.info.status == "FINISHED"
        assert {k: logged.data.params[k] for k in settings.to_dict()} == {
            k: str(v) for k, v in settings.to_dict().items()
        }
        assert (logged.data.tags["variant"], logged.data.tags["params_hash"]) == (run.variant, settings.digest())
        metrics = json.loads(paths.metrics(run_id(run)).read_text())
        assert {
            f"{stage}_{score}": value for stage, scores in metrics["stages"].items() for score, value in scores.items()
        }.items() <= logged.data.metrics.items()
        assert logged.data.tags["method"] == settings.method
