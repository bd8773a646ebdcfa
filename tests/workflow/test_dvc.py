"""DVC (dvc.yaml) runs exactly the Snakemake workflow, and the two agree about finished results.

The fast tests check the definitions: DVC's stages and Snakemake's jobs are the same steps with
the same commands and outputs (params.yaml and the paper's profile), each stage's code deps are
the modules its command imports, and the DVC config stays offline and local.

The slow tests run a tiny profile (2 runs) in fresh git clones of the current working tree:
``dvc repro`` against Snakemake (same tables, same numbers), ``dvc exp run -S``, the tracking
step after Snakemake, ``dvc push`` and a ``dvc pull`` into another clone. Every command runs with
sockets to other hosts refused and logged, and the tests check that none was attempted.
"""

from __future__ import annotations

import configparser
import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from cdrepro.config import load_params
from cdrepro.run_settings import runs_of
from cdrepro.runs import ProfilePaths, run_id

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# Outputs DVC has and Snakemake has not (docs/dvc.md, "The checkpoint").
DVC_ONLY = re.compile(r"/runs/[^/]+/checkpoint\.pt$")
UP_TO_DATE = "Data and pipelines are up to date."
NOTHING_TO_DO = "Nothing to be done"
# Snakemake's target for everything DVC runs: the tables and the figures.
EVERYTHING = "all"

# Loaded first by every Python process of a test (PYTHONPATH): refuses and logs any connection
# or name lookup for another host, so "no network call on any command" is checked, not assumed.
# (DVC's own daemons escape it; test_dvc_config_is_offline_and_local checks none is started.)
NETWORK_GUARD = """
import os, socket
_LOG = os.environ.get("CDREPRO_NETWORK_LOG")
_LOCAL = {None, "", "localhost", "127.0.0.1", "::1"}

def _refuse(what):
    with open(_LOG, "a") as log:
        log.write(f"pid {os.getpid()}: {what}\\n")
    raise OSError(f"network access refused in tests: {what}")

_connect, _connect_ex, _getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

def _check(sock, address):
    if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in _LOCAL:
        _refuse(f"connect {address!r}")

def connect(self, address):
    _check(self, address)
    return _connect(self, address)

def connect_ex(self, address):
    _check(self, address)
    return _connect_ex(self, address)

def getaddrinfo(host, *args, **kwargs):
    if (host.decode() if isinstance(host, bytes) else host) not in _LOCAL:
        _refuse(f"getaddrinfo {host!r}")
    return _getaddrinfo(host, *args, **kwargs)

if _LOG:
    socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
"""


# --- helpers ---------------------------------------------------------------------------------


def environment(root: Path, base: Path) -> dict[str, str]:
    """Commands in a clone use the clone's own package, DVC offline, state under ``base``."""
    guard = base / "guard"
    if not guard.exists():
        guard.mkdir()
        (guard / "sitecustomize.py").write_text(NETWORK_GUARD)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return dict(
        env,
        CDREPRO_TRACKING="off",  # the tests' rule (conftest.py), here for module-scoped fixtures too
        PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
        PYTHONPATH=f"{guard}{os.pathsep}{root / 'src'}",
        CDREPRO_NETWORK_LOG=str(base / "network.log"),
        DVC_NO_ANALYTICS="1",
        MLFLOW_DISABLE_TELEMETRY="true",  # as the Makefile and CI set it
        DVC_SITE_CACHE_DIR=str(base / "dvc-site-cache"),
        GIT_AUTHOR_NAME="cdrepro tests",
        GIT_AUTHOR_EMAIL="tests@cdrepro.invalid",
        GIT_COMMITTER_NAME="cdrepro tests",
        GIT_COMMITTER_EMAIL="tests@cdrepro.invalid",
    )


def run(args: list[str], root: Path, base: Path, *, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=root, env=environment(root, base), capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, args))} failed ({result.returncode}) in {root}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def dvc(root: Path, base: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "dvc", *args], root, base, check=check)


def snakemake(root: Path, base: Path, *args: str) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "snakemake", *args], root, base)


def bridge(root: Path, base: Path, action: str, *, check: bool = True) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "cdrepro.dvc_bridge", action], root, base, check=check)


def git(root: Path, base: Path, *args: str) -> str:
    return run(["git", *args], root, base).stdout


def dvc_changes(root: Path, base: Path) -> dict:
    return json.loads(dvc(root, base, "status", "--json").stdout or "{}")


def output(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


def snapshot(dest: Path, base: Path, params: dict | None = None) -> Path:
    """A git repository at ``dest`` holding the working tree as it is now (tracked files and
    untracked ones git does not ignore), committed on ``main``: what a clone of the next commit
    will hold. ``params`` replaces params.yaml; a dvc.lock is dropped (it belongs to other params)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for rel in filter(None, listed.split("\0")):
        if (REPO / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dest / rel)
    if params is not None:
        (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (dest / "dvc.lock").unlink(missing_ok=True)
    git(dest, base, "init", "-q", "-b", "main")
    git(dest, base, "add", "-A")
    git(dest, base, "commit", "-q", "-m", "snapshot of the working tree")
    return dest


def tiny_params() -> dict:
    """The embedded profile shrunk to seconds per run (as in test_snakemake.py), with two runs:
    CD and the no-head ablation (a projector instead of a feature stage)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["profile"] = "tiny"
    params["model"]["backbone_width"] = 8
    params["train"].update(epochs=1, image_size=16, cpu_threads=1)
    params["evaluate"]["kmeans_n_init"] = 2
    params["figures"]["tsne"].update(sample=100, max_iter=250)
    params["figures"]["lime"].update(heads=1, images_per_head=2, num_samples=10)
    params["runs"] = [{"dataset": "digits", "batch_size": 128, "variant": v, "seed": 42} for v in ("cd", "no_head")]
    return params


def snakemake_jobs(root: Path, base: Path) -> list[dict]:
    """Every job of ``snakemake --dry-run --printshellcmds`` with its rule, files and command.
    --cores is large so that no job's threads are capped below train.cpu_threads."""
    text = snakemake(root, base, "--dry-run", "--printshellcmds", "--cores", "1024", EVERYTHING).stdout
    jobs: list[dict] = []
    for line in text.splitlines():
        if match := re.match(r"^(?:local)?rule (\w+):$", line):
            jobs.append({"rule": match[1], "input": set(), "output": set(), "cmd": None})
        elif jobs and (match := re.match(r"^\s+(input|output): (.*)$", line)):
            jobs[-1][match[1]] = set(match[2].split(", "))
        elif jobs and line.startswith("Shell command: "):
            # The rules send each step's output to its log; DVC shows it on the terminal.
            jobs[-1]["cmd"] = re.sub(r"\s*> \S+ 2>&1$", "", line.removeprefix("Shell command: "))
    return jobs


def dvc_stages(root: Path) -> list[dict]:
    """Every stage of dvc.yaml as DVC itself expands it (foreach over params.yaml)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return [
            {
                "name": stage.name,
                "rule": stage.name.split("@")[0],
                "cmd": " ".join(stage.cmd.split()),
                "deps": {dep.def_path for dep in stage.deps if not hasattr(dep, "params")},
                "params": {key for dep in stage.deps if hasattr(dep, "params") for key in dep.params},
                "outs": {out.def_path for out in stage.outs},
                "metrics": {out.def_path for out in stage.outs if out.metric},
                "plots": {out.def_path for out in stage.outs if out.plot},
            }
            for stage in repo.index.stages
        ]


def same_command(dvc_cmd: str, snakemake_cmd: str) -> bool:
    """The same command line, but for how it names params.yaml: dvc.yaml passes
    `--params params.yaml` (the only file DVC tracks params of) where a rule may leave it to the
    default or to CDREPRO_PARAMS, which the workflow sets to params.yaml."""

    def norm(cmd: str) -> str:
        return re.sub(r" --params params\.yaml(?= |$)", "", " ".join(cmd.split()))

    return "--params params.yaml" in dvc_cmd and norm(dvc_cmd) == norm(snakemake_cmd)


def covered(path: str, deps: set[str]) -> bool:
    return any(path == dep or path.startswith(dep.rstrip("/") + "/") for dep in deps)


def as_dvc_declares(outputs: set[str], dvc_outs: set[str]) -> frozenset[str]:
    """Snakemake's outputs with each file inside one of DVC's folder outputs replaced by that
    folder: a stage whose files depend on the run list (the figures) declares their folder."""
    return frozenset(
        next((out for out in dvc_outs if path.startswith(out.rstrip("/") + "/")), path) for path in outputs
    )


def assert_no_network(base: Path) -> None:
    log = base / "network.log"
    assert not log.exists(), f"a command tried to reach the network:\n{log.read_text()}"


# --- the definitions (fast) ------------------------------------------------------------------


@pytest.fixture(params=["params.yaml", "workflow/configs/paper.yaml"], ids=["embedded", "paper"])
def profile_snapshot(request, tmp_path, monkeypatch):
    """The working tree with params.yaml set to one profile (DVC reads params.yaml)."""
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(tmp_path / "dvc-site-cache"))
    params = yaml.safe_load((REPO / request.param).read_text())
    return snapshot(tmp_path / "repo", tmp_path, params), tmp_path, params


def test_dvc_stages_are_the_snakemake_jobs(profile_snapshot):
    root, base, params = profile_snapshot
    jobs = [job for job in snakemake_jobs(root, base) if job["output"]]  # not the target rule
    stages = dvc_stages(root)
    paths = ProfilePaths.from_params(params)
    run_ids = [run_id(run) for run in runs_of(params)]

    # Same steps with the same outputs, DVC's checkpoint aside.
    dvc_outs = {out for st in stages for out in st["outs"]}
    smk = {(job["rule"], as_dvc_declares(job["output"], dvc_outs)): job for job in jobs}
    dvc_ = {(st["rule"], frozenset(o for o in st["outs"] if not DVC_ONLY.search(o))): st for st in stages}
    assert len(smk) == len(jobs) and len(dvc_) == len(stages)
    assert set(dvc_) == set(smk), set(dvc_) ^ set(smk)
    checkpoints = {o for st in stages for o in st["outs"] if DVC_ONLY.search(o)}
    assert checkpoints == {str(paths.checkpoint(rid)) for rid in run_ids}

    for key, job in smk.items():
        stage = dvc_[key]
        assert same_command(stage["cmd"], job["cmd"]), (stage["name"], stage["cmd"], job["cmd"])
        missing = [i for i in job["input"] if not covered(i, stage["deps"])]
        assert not missing, f"{stage['name']} lacks Snakemake's inputs {missing}"

    # One stage per run, in the order of the run list; metrics and plots declared.
    for rule in ("train", "evaluate"):
        assert [st["name"] for st in stages if st["rule"] == rule] == [f"{rule}@{i}" for i in range(len(run_ids))]
    for i, rid in enumerate(run_ids):
        by_name = {st["name"]: st for st in stages}
        assert by_name[f"evaluate@{i}"]["metrics"] == {str(paths.metrics(rid))}
        assert by_name[f"train@{i}"]["plots"] == {str(paths.curves(rid))}
    expected = {
        "prepare": len(params["datasets"]),
        "baseline": len(params["datasets"]),
        "train": len(run_ids),
        "evaluate": len(run_ids),
        "tables": 1,
        "methods_table": 1,
        "many_clusters_table": 1,
        "long_tail_table": 1,
        "tsne": len(run_ids),
        "figures": 1,
    }
    assert {r: sum(st["rule"] == r for st in stages) for r in expected} == expected


def test_stages_read_only_their_params(profile_snapshot):
    """The params sections each step reads, as the Snakemake rules' params hold them (DVC
    tracks whole sections: e.g. train.cpu_threads and datasets.<name>.title re-run training)."""
    root, _, params = profile_snapshot
    for stage in dvc_stages(root):
        rule, _, key = stage["name"].partition("@")
        if rule == "train":
            run = params["runs"][int(key)]
            expected = {f"datasets.{run['dataset']}", "model", "methods", f"variants.{run['variant']}", "train"}
        else:
            expected = {
                "prepare": {f"datasets.{key}", "data"},
                "split": {"evaluate.split", "evaluate.knn.k"},
                "baseline": {"evaluate.kmeans_n_init", "evaluate.kmeans_seed"},
                "evaluate": {"evaluate"},
                "tables": {"runs", "datasets"},
                "methods_table": {"runs", "datasets", "variants"},
                "many_clusters_table": {"runs", "datasets", "variants"},
                "long_tail_table": {"runs", "datasets", "variants"},
                "tsne": {"figures.tsne", "figures.dpi", "evaluate.batch_size"},
                "figures": {"figures.dpi", "figures.heads", "figures.lime", "evaluate.batch_size", "runs", "datasets"},
            }[rule]
        assert stage["params"] == expected, stage["name"]


def test_dvc_yaml_is_generated_from_the_steps_contract():
    """dvc.yaml is what `make dvc-yaml` writes from cdrepro.steps: never edited by hand."""
    from cdrepro.dvc_stages import render

    assert (REPO / "dvc.yaml").read_text() == render(), "dvc.yaml is stale: run `make dvc-yaml`"


def test_stage_code_deps_cover_every_module_their_command_loads(tmp_path, monkeypatch):
    """Each ``cdrepro <rule>`` command imports its step's modules inside ``cmd_<rule>`` in
    cli.py; those modules and everything they load, less the plumbing, are covered by the stage's
    code deps, the methods package as one folder (a new method needs no list edited)."""
    from cdrepro.code_deps import PLUMBING, SRC, command_modules, imported_files

    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(tmp_path / "dvc-site-cache"))
    stages = dvc_stages(REPO)
    for stage in stages:
        loaded = {
            f"src/{p.relative_to(SRC).as_posix()}"
            for p in imported_files(command_modules(stage["rule"]))
            if p.name not in PLUMBING
        }
        assert loaded, stage["name"]
        assert [f for f in loaded if not covered(f, stage["deps"])] == [], stage["name"]
        assert not any(d.startswith("src/cdrepro/methods/") for d in stage["deps"]), stage["name"]
        assert any(d == "src/cdrepro/methods" for d in stage["deps"]) == any(
            f.startswith("src/cdrepro/methods/") for f in loaded
        ), stage["name"]
    references = {f"src/cdrepro/references/{p.name}" for p in (REPO / "src/cdrepro/references").glob("*.csv")}
    tables = next(st for st in stages if st["name"] == "tables")
    assert references and references <= tables["deps"]


def test_no_list_of_method_files_outside_the_methods_package():
    """The registry (cdrepro/methods/__init__.py) is the one list of methods: no workflow file,
    DVC file or test names the method modules one by one."""
    files = [
        REPO / "dvc.yaml",
        REPO / "Snakefile",
        *(REPO / "workflow").rglob("*.smk"),
        *(REPO / "tests").rglob("*.py"),
    ]
    pattern = re.compile(r"methods/(cd|cc|cld|cdc|simclr)\.py")
    listed = [
        f"{f.relative_to(REPO)}" for f in files if len(set(pattern.findall(f.read_text()))) > 1 and f != Path(__file__)
    ]
    assert listed == []


def test_paper_profile_plans_with_dvc(tmp_path):
    """The paper's configuration, copied over params.yaml, is a 197-stage DVC pipeline that
    `dvc dag` and `dvc status` handle (docs/dvc.md)."""
    params = yaml.safe_load((REPO / "workflow" / "configs" / "paper.yaml").read_text())
    root = snapshot(tmp_path / "repo", tmp_path, params)
    dag = dvc(root, tmp_path, "dag", "--md").stdout
    assert "train@19" in dag and "tables" in dag
    changes = dvc_changes(root, tmp_path)
    runs = len(params["runs"])  # the paper's 20, the methods' 12, many clusters' 9, long tail's 15
    datasets = len(params["datasets"])  # the paper's 4, CIFAR-100's fine classes, CIFAR-10 x 3 training sets
    # prepare, split, baseline, train, evaluate, tables, methods, many clusters, long tail, tsne, figures
    assert runs == 56 and datasets == 8
    assert len(changes) == 3 * datasets + runs + runs + 1 + 1 + 1 + 1 + runs + 1 == 197
    assert_no_network(tmp_path)


def test_the_network_guard_sees_a_connection(tmp_path):
    """The check behind "no command reached the network" does catch an attempt."""
    probe = "import socket\ntry:\n    socket.create_connection(('dvc.org', 443), timeout=1)\nexcept OSError:\n    pass"
    run([sys.executable, "-c", probe], tmp_path, tmp_path)
    assert "getaddrinfo 'dvc.org'" in (tmp_path / "network.log").read_text()


def test_dvc_config_is_offline_and_local(tmp_path):
    # DVC's analytics and updater run as detached daemons that DVC starts with its own
    # PYTHONPATH, out of the network guard's reach: check that the committed config alone
    # (without DVC_NO_ANALYTICS) keeps DVC from starting any.
    root = snapshot(tmp_path / "repo", tmp_path)
    env = {k: v for k, v in environment(root, tmp_path).items() if k != "DVC_NO_ANALYTICS"}
    result = subprocess.run(
        [sys.executable, "-m", "dvc", "status", "--verbose"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, output(result)
    assert "Analytics is disabled." in output(result) and "Trying to spawn" not in output(result)
    assert_no_network(tmp_path)

    config = configparser.ConfigParser()
    config.read(REPO / ".dvc" / "config")
    assert config.get("core", "analytics") == "false"
    assert config.get("core", "check_update") == "false"
    # No remote in the committed config: users add their own (docs/dvc.md); the cache is the
    # default .dvc/cache, inside the project and ignored by git.
    assert not [s for s in config.sections() if s.startswith("'remote")] and not config.has_option("core", "remote")
    assert not config.has_option("cache", "dir")
    assert {"/cache", "/tmp"} <= set((REPO / ".dvc" / ".gitignore").read_text().split())
    makefile = (REPO / "Makefile").read_text()
    assert "export DVC_SITE_CACHE_DIR := $(CURDIR)/.dvc/tmp/site" in makefile
    assert "export DVC_NO_ANALYTICS := 1" in makefile


DAMAGED_LOCKS = {
    "not YAML": ("schema: '2.0'\nstages:\n  prepare: [unclosed\n", "YAML file structure is corrupted"),
    "a merge conflict": (
        "schema: '2.0'\n<<<<<<< HEAD\nstages: {}\n=======\nstages: {}\n>>>>>>> b\n",
        "possible merge conflicts",
    ),
    "not UTF-8": (b"schema: '2.0'\nstages: \xff\xfe\n", "is not valid utf-8"),
    "not DVC's schema": ("schema: '2.0'\nstages: 5\n", "validation failed"),
}


@pytest.mark.parametrize("damage", list(DAMAGED_LOCKS))
@pytest.mark.parametrize("action", ["touch", "track"])
def test_a_damaged_dvc_lock_is_one_line_naming_it_and_the_fix(tmp_path, action, damage):
    """make dvc-touch / dvc-track on a dvc.lock DVC cannot read: one line, before any slow step
    (track's Snakemake dry run), instead of DVC's 80-line traceback."""
    root = tmp_path / "repo"
    for rel in ("dvc.yaml", "params.yaml", ".dvcignore", ".dvc/config", ".dvc/.gitignore"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, root / rel)
    git(root, tmp_path, "init", "-q", "-b", "main")
    text, said = DAMAGED_LOCKS[damage]
    (root / "dvc.lock").write_bytes(text if isinstance(text, bytes) else text.encode())
    result = bridge(root, tmp_path, action, check=False)
    assert result.returncode == 1
    assert result.stdout == "" and len(result.stderr.splitlines()) == 1, output(result)
    line = result.stderr.strip()
    assert line.startswith(f"cdrepro.dvc_bridge {action}: error: dvc.lock cannot be read ("), line
    assert said in line and "git checkout -- dvc.lock" in line and "make dvc-track" in line, line


# --- runs of a tiny profile in fresh clones (slow) -------------------------------------------


@pytest.fixture(scope="module")
def origin(tmp_path_factory):
    """A bare git repository holding the working tree with the tiny params; its DVC remote is
    a local folder."""
    base = tmp_path_factory.mktemp("dvc")
    work = snapshot(base / "work", base, tiny_params())
    dvc(work, base, "remote", "add", "--default", "shared", str(base / "dvc-remote"))
    git(work, base, "commit", "-q", "-am", "a local DVC remote")
    git(base, base, "clone", "-q", "--bare", str(work), str(base / "origin.git"))
    return SimpleNamespace(base=base, url=str(base / "origin.git"))


def clone(origin, name: str, branch: str = "main") -> Path:
    dest = origin.base / name
    git(origin.base, origin.base, "clone", "-q", "-b", branch, origin.url, str(dest))
    return dest


@pytest.fixture(scope="module")
def snakemake_clone(origin):
    """A fresh clone where Snakemake ran the tiny profile."""
    root = clone(origin, "snakemake")
    snakemake(root, origin.base, "--cores", "2", EVERYTHING)
    return root


@pytest.fixture(scope="module")
def dvc_clone(origin):
    """A fresh clone where `dvc repro` ran the tiny profile."""
    root = clone(origin, "dvc")
    result = dvc(root, origin.base, "repro")
    return SimpleNamespace(root=root, repro=output(result))


# The tiny profile's stages: those of its dataset, and those of its two runs and after.
DATA_STAGES = {"prepare@digits", "split@digits", "baseline@digits"}
RUN_STAGES = {
    *(f"{stage}@{i}" for stage in ("train", "evaluate", "tsne") for i in (0, 1)),
    "tables",
    "methods_table",
    "many_clusters_table",
    "long_tail_table",
    "figures",
}


def numbers(all_csv: Path) -> list[tuple]:
    return [tuple(row.values()) for row in csv.DictReader(all_csv.open())]


@pytest.mark.slow
def test_dvc_repro_in_a_fresh_clone_gives_the_snakemake_tables(origin, snakemake_clone, dvc_clone):
    params = tiny_params()
    smk, dvc_ = (ProfilePaths(root / "results" / "tiny") for root in (snakemake_clone, dvc_clone.root))
    assert set(re.findall(r"Running stage '([^']+)'", dvc_clone.repro)) == DATA_STAGES | RUN_STAGES

    # Training and evaluation are deterministic on the CPU: every number is bit-identical.
    ours = [row for row in numbers(dvc_.tables_dir() / "all.csv") if "ours" in row]
    assert len(ours) >= 2 * 2 * 3  # 2 runs x backbone/feature x NMI/ARI/ACC
    assert numbers(dvc_.tables_dir() / "all.csv") == numbers(smk.tables_dir() / "all.csv")
    for name in ("all.csv", "table2.tex", "table3.tex", "table6.tex", "table9.tex"):
        assert (dvc_.tables_dir() / name).read_text() == (smk.tables_dir() / name).read_text(), name
    for run in runs_of(params):
        rid = run_id(run)
        assert json.loads(dvc_.metrics(rid).read_text()) == json.loads(smk.metrics(rid).read_text())
        ours, theirs = (torch.load(p.model(rid), weights_only=True)["model"] for p in (dvc_, smk))
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)

    # Snakemake after dvc repro: nothing to retrain (DVC wrote the files in pipeline order).
    assert NOTHING_TO_DO in output(snakemake(dvc_clone.root, origin.base, "--dry-run", EVERYTHING))
    assert_no_network(origin.base)


@pytest.mark.slow
def test_dvc_exp_run_reruns_only_what_reads_the_changed_param(origin, dvc_clone):
    root, base = dvc_clone.root, origin.base
    git(root, base, "add", "dvc.lock")
    git(root, base, "commit", "-q", "-m", "dvc repro of the tiny profile")

    result = output(dvc(root, base, "exp", "run", "--name", "two-epochs", "-S", "train.epochs=2"))
    ran = set(re.findall(r"Running stage '([^']+)'", result))
    skipped = set(re.findall(r"Stage '([^']+)' didn't change, skipping", result))
    assert ran == RUN_STAGES and skipped == DATA_STAGES

    # dvc exp show lists the experiment with its param and every run's metrics.
    shown = json.loads(dvc(root, base, "exp", "show", "--json").stdout)
    experiments = [
        exp for commit in shown for exp in (commit.get("experiments") or []) if exp.get("name") == "two-epochs"
    ]
    assert len(experiments) == 1
    data = experiments[0]["revs"][0]["data"]
    assert data["params"]["params.yaml"]["data"]["train"]["epochs"] == 2
    for run in runs_of(load_params(root / "params.yaml")):
        path = str(ProfilePaths(Path("results/tiny")).metrics(run_id(run)))
        metrics = data["metrics"][path]["data"]
        # kNN on every stage; the linear probe on the backbone's h only.
        assert set(metrics["stages"]["backbone"]) == {"nmi", "ari", "acc", "knn", "linear"}
        assert set(metrics["stages"][metrics["final_stage"]]) == {"nmi", "ari", "acc", "knn"}
    curves = list(csv.DictReader((root / "results/tiny/runs/digits-bs128-cd-s42/curves.csv").open()))
    assert [row["epoch"] for row in curves] == ["1", "2"]

    diff = json.loads(dvc(root, base, "metrics", "diff", "--json").stdout)
    assert any("stages.backbone.nmi" in changes for changes in diff.values())

    # Which stages read a param: after one change, `dvc status` names the stages it reaches
    # directly (their downstream stages follow through the data).
    assert dvc_changes(root, base) == {}
    original = (root / "params.yaml").read_text()
    for key, value, reached in [
        (
            "variants.no_head.views",
            1,
            {"train@1", "methods_table", "many_clusters_table", "long_tail_table"},
        ),  # labels read variants
        ("evaluate.kmeans_n_init", 3, {"baseline@digits", "evaluate@0", "evaluate@1"}),
        ("model.backbone_width", 4, {"train@0", "train@1"}),
    ]:
        params = yaml.safe_load(original)
        section, name = key.rsplit(".", 1)
        parent = params
        for part in section.split("."):
            parent = parent[part]
        parent[name] = value
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        assert set(dvc_changes(root, base)) == reached, key
    (root / "params.yaml").write_text(original)
    assert_no_network(base)


@pytest.fixture(scope="module")
def tracked(origin, snakemake_clone):
    """The tracking step after the Snakemake run; its results pushed to the DVC remote and its
    dvc.lock to git (branch `tracked`), as a user shares them."""
    root, base = snakemake_clone, origin.base
    before = dvc_changes(root, base)
    track = bridge(root, base, "track", check=False)
    state = SimpleNamespace(
        before=before,
        track=track,
        after=dvc_changes(root, base),
        snakemake=output(snakemake(root, base, "--dry-run", EVERYTHING)),
    )
    if track.returncode == 0:
        state.push = output(dvc(root, base, "push"))
        git(root, base, "add", "dvc.lock")
        git(root, base, "commit", "-q", "-m", "Snakemake results, tracked by DVC")
        git(root, base, "push", "-q", "origin", "HEAD:tracked")
    return state


@pytest.mark.slow
def test_snakemake_run_then_tracking_step_leaves_dvc_status_clean(origin, tracked):
    assert set(tracked.before) >= {"train@0", "train@1", "tables", "figures"}  # DVC did not know them
    assert tracked.track.returncode == 0, output(tracked.track)
    assert tracked.after == {}
    assert NOTHING_TO_DO in tracked.snakemake  # the tracking step did not disturb Snakemake
    assert "files pushed" in tracked.push
    assert_no_network(origin.base)


@pytest.fixture(scope="module")
def pulled(origin, tracked):
    """A fresh clone of the tracked commit, with `dvc pull` then the DVC -> Snakemake step."""
    assert tracked.track.returncode == 0, output(tracked.track)
    root = clone(origin, "pulled", branch="tracked")
    assert not (root / "results").exists()
    pull = output(dvc(root, origin.base, "pull"))
    touch = bridge(root, origin.base, "touch", check=False)
    return SimpleNamespace(root=root, pull=pull, touch=touch)


@pytest.mark.slow
def test_push_then_pull_in_a_fresh_clone_has_nothing_to_do(origin, snakemake_clone, pulled):
    root, base = pulled.root, origin.base
    smk, back = (ProfilePaths(r / "results" / "tiny") for r in (snakemake_clone, root))
    for name in ("all.csv", "table2.tex", "table6.tex"):
        assert (back.tables_dir() / name).read_bytes() == (smk.tables_dir() / name).read_bytes()
    for run in runs_of(load_params(root / "params.yaml")):
        rid = run_id(run)
        for path in (back.metrics(rid), back.model(rid), back.checkpoint(rid)):
            assert path.read_bytes() == (smk.root / path.relative_to(back.root)).read_bytes()

    repro = output(dvc(root, base, "repro"))
    assert UP_TO_DATE in repro and "Running stage" not in repro
    assert pulled.touch.returncode == 0, output(pulled.touch)
    assert NOTHING_TO_DO in output(snakemake(root, base, "--dry-run", EVERYTHING))
    assert dvc_changes(root, base) == {}
    assert_no_network(base)


@pytest.mark.slow
def test_bridge_refuses_results_it_cannot_vouch_for(origin, pulled):
    root, base = pulled.root, origin.base
    # Snakemake ignores package code, so a changed train.py must not be recorded as the code
    # that made the models...
    train_py = root / "src" / "cdrepro" / "train.py"
    train_py.write_text(train_py.read_text() + "\n# changed after training\n")
    refused = bridge(root, base, "track", check=False)
    assert refused.returncode == 1 and "train@0: src/cdrepro/train.py" in refused.stderr
    git(root, base, "checkout", "src/cdrepro/train.py")
    assert bridge(root, base, "track").returncode == 0  # same content as dvc.lock again

    # ... and results DVC does not vouch for are not declared current to Snakemake.
    metrics = ProfilePaths(root / "results" / "tiny").metrics("digits-bs128-cd-s42")
    metrics.write_text("{}")
    refused = bridge(root, base, "touch", check=False)
    assert refused.returncode == 1 and "evaluate@0" in refused.stderr
    dvc(root, base, "checkout", "--force")
    assert bridge(root, base, "touch").returncode == 0
    assert_no_network(base)
