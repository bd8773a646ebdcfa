"""A new method is one module and its registry entry, and nothing else (issue 21).

The test copies the project, adds ``methods/toy.py`` and its entry in the registry
(``cdrepro/methods/__init__.py``: the import and the ``METHODS`` line), edits nothing else, and
checks that DVC's stages are still current for it (the methods package is one folder of code
deps), that the DVC/Snakemake consistency tests pass, and that a tiny workflow trains,
evaluates and tabulates the new method beside CD.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

TOY = '''"""A toy method for the new-method test: SimCLR under its own name."""

from cdrepro.methods.simclr import SimCLR


class Toy(SimCLR):
    name = "toy"
    label = "Toy"
'''


def copy_project(dest: Path) -> Path:
    # The working tree as a clone would have it (committed or not, less what git ignores).
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout
    for name in filter(None, tracked.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target, follow_symlinks=False)
    return dest


def add_toy_method(root: Path) -> None:
    (root / "src/cdrepro/methods/toy.py").write_text(TOY)
    registry = root / "src/cdrepro/methods/__init__.py"
    text = registry.read_text()
    anchor = "from cdrepro.methods.simclr import SimCLR\n"
    assert anchor in text and '    "cdc": ' in text
    text = text.replace(anchor, anchor + "from cdrepro.methods.toy import Toy\n", 1)
    text = text.replace('    "cdc": ', '    "toy": Toy,\n    "cdc": ', 1)
    registry.write_text(text)


def run(root: Path, *command: str, timeout: int = 600) -> subprocess.CompletedProcess:
    # The copy's package first: its cdrepro is the one with the new method.
    env = dict(
        os.environ,
        PYTHONPATH=str(root / "src"),
        CDREPRO_TRACKING="off",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        DVC_SITE_CACHE_DIR=str(root / ".dvc/tmp/site"),
    )
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (command, result.stdout[-3000:], result.stderr[-3000:])
    return result


def tiny_params(root: Path) -> Path:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params.update(profile="toy")
    params["model"]["backbone_width"] = 4
    params["train"].update(epochs=1, image_size=8)
    params["evaluate"]["kmeans_n_init"] = 1
    params["variants"] = {"cd": {}, "toy": {"method": "toy"}}
    params["runs"] = [
        {"dataset": "digits", "batch_size": 128, "variant": v, "seed": 42, "targets": ["compare_methods"]}
        for v in ("cd", "toy")
    ]
    path = root / "toy.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_a_new_method_is_one_module_and_its_registry_entry(tmp_path):
    root = copy_project(tmp_path / "project")
    git(root, "init", "-q")  # DVC works in a git repository
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "the project")
    add_toy_method(root)
    assert sorted(git(root, "status", "--porcelain").splitlines()) == [
        " M src/cdrepro/methods/__init__.py",
        "?? src/cdrepro/methods/toy.py",
    ]
    run(root, sys.executable, "-m", "cdrepro.dvc_stages", "--check")  # dvc.yaml needs no edit
    run(
        root,
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/workflow/test_dvc.py",
        "-k",
        "generated or code_deps or no_list or stages_are_the_snakemake_jobs and embedded",
    )
    params = tiny_params(root)
    run(root, sys.executable, "-m", "snakemake", "--cores", "2", "compare_methods", "--configfile", str(params))
    rows = list(csv.DictReader((root / "results/toy/tables/methods.csv").open()))
    assert {row["method"] for row in rows if row["source"] == "ours"} >= {"cd", "toy"}
    assert "Toy" in (root / "results/toy/tables/methods.tex").read_text()
