"""The workflow on SLURM (issue 7, items 1 and 2).

Fast: the project's two profiles plan the pipeline: workflow/profiles/slurm the paper's, with
the resources each job would ask the cluster for; workflow/profiles/local the embedded one.

Slow, the local profile: two trainings on a simulated machine of one GPU run one at a time under
it (the Snakefile's GPU slots).

Slow, SLURM: a single-node cluster is brought up on this machine (slurm_cluster.py: munged, slurmctld
and slurmd, started by hand as root, with one fake GPU), and a tiny profile's reproduce_tables
runs through ``snakemake --executor slurm`` with the project's SLURM profile adapted to that
cluster the way docs/cluster.md tells a user to adapt it. Then: the tables are there, and every
job of the workflow was a SLURM job that completed on the node, in the partition and account
asked for; the training jobs, given a GPU request, were allocated the GPU and so ran one at a
time. The cluster's daemons are stopped by PID, whatever happens.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from slurm_cluster import ACCOUNT, PARTITION, Cluster, why_not_here
from system_packages import skip_unless_installed
from test_snakemake import REPO, snakemake, tiny_params

from cdrepro.runs import ProfilePaths, Run, run_id

PROFILES = REPO / "workflow" / "profiles"
PAPER = REPO / "workflow" / "configs" / "paper.yaml"
# Two runs keep the test short and still use both kinds of feature stage (head / projector).
RUNS = ("digits-bs128-cd-s42", "digits-bs128-no_head-s42")
GPU_RULES = {"train", "evaluate"}


def planned_resources(plan: str) -> dict[str, list[dict[str, str]]]:
    """rule -> the resources of each of its jobs, from a dry run's output."""
    jobs: dict[str, list[dict[str, str]]] = {}
    for rule, resources in re.findall(r"^(?:local)?rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", plan, flags=re.M):
        jobs.setdefault(rule, []).append(dict(item.split("=", 1) for item in resources.split(", ")))
    return jobs


def test_slurm_profile_plans_the_paper_with_each_rules_resources():
    result = snakemake(
        "-n", "reproduce_tables", f"--configfile={PAPER}", "--workflow-profile", str(PROFILES / "slurm"), cwd=REPO
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "workflow specific profile" in result.stderr and "profiles/slurm" in result.stderr
    jobs = planned_resources(result.stdout)
    assert {rule: len(j) for rule, j in jobs.items()} == {
        "prepare": 4,
        "split": 4,
        "baseline": 4,
        "train": 20,
        "evaluate": 20,
        "tables": 1,
        "reproduce_tables": 1,
    }
    profile = yaml.safe_load((PROFILES / "slurm" / "config.yaml").read_text())
    for rule, rule_jobs in jobs.items():
        wanted = {**profile["default-resources"], **profile["set-resources"].get(rule, {})}
        for resources in rule_jobs:
            assert {k: resources.get(k) for k in wanted} == {k: str(v) for k, v in wanted.items()}
            # The rules' GPU request, which the plugin passes on as sbatch --gpus.
            assert resources.get("gpu", "0") == ("1" if rule in GPU_RULES else "0"), (rule, resources)


def test_local_profile_plans_the_embedded_pipeline():
    result = snakemake("-n", "reproduce_tables", "--workflow-profile", str(PROFILES / "local"), cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "workflow specific profile" in result.stderr and "profiles/local" in result.stderr


def most_at_once(log: str, rule: str) -> int:
    """The most jobs of ``rule`` running at the same time, from Snakemake's log, where a job
    starts at "rule NAME: ... jobid: N" and ends at "Finished jobid: N (Rule: NAME)"."""
    events = re.finditer(
        rf"^(?:local)?rule {rule}:\n(?:    .*\n)*?    jobid: (\d+)$|^Finished jobid: (\d+) \(Rule: {rule}\)",
        log,
        flags=re.M,
    )
    running, most = set(), 0
    for event in events:
        started, finished = event.groups()
        running.add(started) if started else running.discard(finished)
        most = max(most, len(running))
    return most


@pytest.mark.slow
def test_local_profile_runs_no_more_gpu_jobs_than_slots(tmp_path):
    """Two trainings on a machine of one GPU with one run a GPU (simulated: gpus.count 1), on
    two free cores: the Snakefile's gpu_slot resource (GPUs x runs_per_gpu = 1) runs them one
    after the other, and neither waits for the slot. Given two slots with --resources,
    Snakemake starts both, and the slot's lock keeps them apart all the same: the second waits
    (its log says so). Only the trainings (and the data they need) run: the SLURM test below
    runs the whole pipeline."""
    params_file = two_run_params(tmp_path, gpus={"count": 1, "slot_dir": str(tmp_path / "slots")})
    models = [str(ProfilePaths(Path("results") / "tiny").model(rid)) for rid in RUNS]
    logs = [tmp_path / "results" / "tiny" / "logs" / "train" / f"{rid}.log" for rid in RUNS]
    args = ("--workflow-profile", str(PROFILES / "local"), "--cores", "2", *models, "--configfile", str(params_file))
    capped = snakemake(*args, cwd=tmp_path)
    assert capped.returncode == 0, capped.stderr[-4000:]
    assert most_at_once(capped.stderr, "train") == 1
    assert all((tmp_path / model).is_file() for model in models)
    assert not any("waiting for" in log.read_text() for log in logs)

    two = snakemake(*args, "--resources", "gpu_slot=2", "--forcerun", "train", cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-4000:]
    assert most_at_once(two.stderr, "train") == 2
    assert sum("waiting for 1 free GPU slot(s)" in log.read_text() for log in logs) == 1


# --------------------------------------------------------------------------- a real cluster


@pytest.fixture
def cluster(tmp_path_factory):
    skip_unless_installed(why_not_here())
    cluster = Cluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def two_run_params(folder: Path, gpus: dict | None = None) -> Path:
    path = tiny_params(folder)
    params = yaml.safe_load(path.read_text())
    if gpus:
        params["gpus"] = gpus
    params["runs"] = [
        r for r in params["runs"] if run_id(Run(r["dataset"], r["batch_size"], r["variant"], r["seed"])) in RUNS
    ]
    assert len(params["runs"]) == len(RUNS)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def profile_for(folder: Path) -> Path:
    """workflow/profiles/slurm adapted to the test cluster as docs/cluster.md says: its
    partition and account, memory that fits the node (the machine's memory), and,
    since the cluster has no accounting (no sacct), squeue for job states."""
    profile = yaml.safe_load((PROFILES / "slurm" / "config.yaml").read_text())
    profile["default-resources"].update(slurm_partition=PARTITION, slurm_account=ACCOUNT, mem_mb=2000)
    for resources in profile["set-resources"].values():
        resources["mem_mb"] = 2000
    # On the paper's profile the rules ask for a GPU for training themselves; the tiny profile
    # trains on the CPU, so ask here, for the node's one (fake) GPU.
    profile["set-resources"]["train"]["gpu"] = 1
    profile.update(
        {
            "slurm-status-command": "squeue",
            # The plugin falls back to sacct unless MinJobAge (an hour here) is at least 3x this.
            "slurm-init-seconds-before-status-checks": 2,
            "slurm-keep-successful-logs": True,
            # A failure fails the test at once, with its log, instead of being resubmitted.
            "retries": 0,
        }
    )
    path = folder / "profile" / "config.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(profile, sort_keys=False))
    return path.parent


@pytest.mark.slow
def test_tiny_pipeline_runs_through_slurm(cluster, tmp_path):
    params_file = two_run_params(tmp_path)
    profile = profile_for(tmp_path)
    result = snakemake(
        "--workflow-profile", str(profile), "reproduce_tables", "--configfile", str(params_file), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-6000:] + "\n" + cluster.log_tail()

    # The pipeline's results.
    paths = ProfilePaths(tmp_path / "results" / "tiny")
    ours = {
        (row["variant"], row["stage"])
        for row in csv.DictReader((paths.tables_dir() / "all.csv").open())
        if row["source"] == "ours"
    }
    assert ours == {
        ("cd", "backbone"),
        ("cd", "feature"),
        ("no_head", "backbone"),
        ("no_head", "projector"),
        ("kmeans_pixels", "pixels"),
    }  # the baseline job's
    assert r"\toprule" in (paths.tables_dir() / "table2.tex").read_text()
    for rid in RUNS:
        assert paths.metrics(rid).is_file() and (paths.logs_dir() / "train" / f"{rid}.log").is_file()

    # Every job of the workflow was a SLURM job of this workflow run, completed on the node.
    jobs = cluster.jobs()
    assert Counter(job["Comment"].split("_wildcards_")[0] for job in jobs) == {
        "rule_prepare": 1,
        "rule_split": 1,
        "rule_baseline": 1,
        "rule_train": 2,
        "rule_evaluate": 2,
        "rule_tables": 1,
    }
    assert {f"rule_{rule}_wildcards_{rid}" for rule in ("train", "evaluate") for rid in RUNS} <= {
        job["Comment"] for job in jobs
    }
    assert len({job["JobName"] for job in jobs}) == 1  # the plugin names jobs by the run's uuid
    for job in jobs:
        assert (job["JobState"], job["Partition"], job["Account"], job["NodeList"]) == (
            "COMPLETED",
            PARTITION,
            ACCOUNT,
            cluster.node,
        ), job
        # The plugin's own log of the job, under .snakemake/slurm_logs/rule_<rule>/...
        logs = list((tmp_path / ".snakemake" / "slurm_logs").glob(f"rule_*/**/{job['JobId']}.log"))
        assert len(logs) == 1, job["JobId"]

    # The GPU request reached SLURM (sbatch --gpus=1), which allocated the node's one GPU to
    # one training at a time: both were submitted together, and CPU slots were free for both
    # (the node has 4; the baseline job takes one), but the second started when the first
    # ended.
    trains = sorted((j for j in jobs if j["Comment"].startswith("rule_train_")), key=lambda j: j["StartTime"])
    assert [j["TresPerJob"] for j in trains] == ["gres:gpu:1", "gres:gpu:1"]
    submitted = [datetime.fromisoformat(j["SubmitTime"]) for j in trains]
    assert abs((submitted[1] - submitted[0]).total_seconds()) <= 2
    assert trains[1]["StartTime"] >= trains[0]["EndTime"]
    assert all("gpu" not in j.get("TresPerJob", "") for j in jobs if j not in trains)
