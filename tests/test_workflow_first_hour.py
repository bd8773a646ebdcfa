"""The first hour through Snakemake: a minimal params file plans, with the schema's defaults in
Snakemake's config; a params file Snakemake cannot read is one line naming its line and column;
a run prints one line per job started and done, naming its log (the repository's default
profile: profiles/default, with the cdrepro logger plugin and `cores: all`)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_config import readme_params  # tests/ is on sys.path (pytest's rootdir-relative import)

from cdrepro.config import load_params

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
# Snakemake prints this first whenever a profile applies; everything after it is ours to check.
PROFILE_LINE = "Using workflow specific profile"


def snakemake(*args: str, cwd: Path, snakefile: Path = SNAKEFILE) -> subprocess.CompletedProcess:
    """Snakemake as a user with the venv activated runs it (no --cores: the default profile's)."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(snakefile), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def said(result: subprocess.CompletedProcess) -> list[str]:
    return [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.strip() and not line.startswith(PROFILE_LINE)
    ]


def test_a_minimal_params_file_plans_and_snakemake_sees_the_filled_defaults(tmp_path):
    minimal = tmp_path / "my.yaml"
    minimal.write_text(yaml.safe_dump(readme_params()))
    plan = snakemake("-n", "--configfile", str(minimal), cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert re.search(r"^train\s+1$", plan.stdout, flags=re.M) and "rule figures:" in plan.stdout
    # The workflow's config as its rules see it: a Snakefile that includes ours and writes it out.
    dump = tmp_path / "dump.smk"
    dump.write_text(
        f'include: "{SNAKEFILE}"\n\nimport json\n\nwith open("config.json", "w") as out:\n    json.dump(config, out)\n'
    )
    listed = snakemake("--list-rules", "--configfile", str(minimal), cwd=tmp_path, snakefile=dump)
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert json.loads((tmp_path / "config.json").read_text()) == load_params(minimal)


@pytest.mark.parametrize(
    "content, problem",
    [
        (
            "profile: x\ntrain:\n  lr: 1\n   epochs: 2\n",
            "{path} line 4 column 10: not valid YAML: mapping values are not allowed here; fix the YAML there",
        ),
        (
            "profile: x\ntrain: [1, 2\n",
            "{path} line 3 column 1: not valid YAML: expected ',' or ']', but got '<stream end>' (while "
            "parsing a flow sequence at line 2 column 8); fix the YAML there",
        ),
        (None, "params file not found: {path}; check the path"),
    ],
    ids=["bad indentation", "unclosed list", "no such file"],
)
def test_a_params_file_snakemake_cannot_read_is_one_line_naming_it(tmp_path, content, problem):
    path = tmp_path / "broken.yaml"
    if content is not None:
        path.write_text(content)
    for args in (["-n", "--configfile", str(path)], ["-n", f"--configfile={path}", "reproduce_tables"]):
        result = snakemake(*args, cwd=tmp_path)
        assert result.returncode != 0
        assert said(result) == [f"cdrepro: error: {problem.format(path=path)}"], result.stderr[-3000:]


def test_a_params_file_not_in_utf8_is_one_line_naming_its_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("profile: x\n# caf\xe9 au lait\n".encode("latin-1"))
    result = snakemake("-n", "--configfile", str(path), cwd=tmp_path)
    assert result.returncode != 0
    (line,) = said(result)  # not Python's 49-line UnicodeDecodeError
    assert line.startswith(f"cdrepro: error: {path} line 2: byte 0xe9 is not UTF-8 text"), result.stderr[-3000:]
    assert "save the file as UTF-8" in line


def test_an_empty_params_file_is_refused_not_replaced_by_params_yaml(tmp_path):
    """`{}` is a mapping Snakemake accepts; the Snakefile read params.yaml (here a copy of the
    embedded profile) whenever the config was empty, so the embedded profile ran unasked."""
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    (tmp_path / "empty.yaml").write_text("{}\n")
    result = snakemake("-n", "--configfile", "empty.yaml", cwd=tmp_path)
    assert result.returncode != 0
    assert said(result) == [
        "cdrepro: error: empty.yaml holds no settings: put the params there (cp params.yaml "
        "empty.yaml to start from the embedded profile), or leave --configfile out to run "
        "params.yaml"
    ], result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.slow
def test_a_target_after_configfile_is_named_as_such_and_the_advice_works(tmp_path):
    """--configfile takes several files, so a target after it is read as one more; the line says
    so, and the form it advises (`--` before the target) plans that target."""
    params = tiny_params(tmp_path, [(128, "cd")]).name
    result = snakemake("-n", "--configfile", params, "reproduce_tables", cwd=tmp_path)
    assert result.returncode != 0
    assert said(result) == [
        f"cdrepro: error: reproduce_tables was read as a params file, as it follows --configfile (which "
        f"takes several files); if it is a target, put it before --configfile (snakemake reproduce_tables "
        f"--configfile {params}) or end the files with -- (snakemake --configfile {params} -- reproduce_tables)"
    ]
    advised = snakemake("-n", "--configfile", params, "--", "reproduce_tables", cwd=tmp_path)
    assert advised.returncode == 0, advised.stderr[-3000:]
    assert "rule tables:" in advised.stdout and "rule figures:" not in advised.stdout  # that target, not `all`


def test_the_slurm_profile_still_plans_beside_the_default_one():
    # --forceall: the whole plan, whatever a developer's results/ already holds.
    result = snakemake("--profile", "workflow/profiles/slurm", "-n", "--forceall", cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"^train\s+12$", result.stdout, flags=re.M)


def tiny_params(folder: Path, runs: list[tuple[int, str]]) -> Path:
    """The embedded profile shrunk to seconds per job, with the given (batch size, variant) runs."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["profile"] = "tiny"
    params["model"]["backbone_width"] = 4
    params["train"].update(epochs=1, image_size=16)
    params["evaluate"]["kmeans_n_init"] = 1
    params["runs"] = [{"dataset": "digits", "batch_size": b, "variant": v, "seed": 42} for b, v in runs]
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@pytest.mark.slow
def test_a_job_that_fails_is_one_line_with_its_error_and_its_log(tmp_path):
    """The lines of a run that succeeds are checked by tests/test_new_user.py."""
    failing = tiny_params(tmp_path, [(4096, "cd")])  # digits has 1,797 images
    result = snakemake("reproduce_tables", "--configfile", str(failing), cwd=tmp_path)
    text = "\n".join(said(result))
    failed = [line for line in said(result) if "FAILED" in line]
    assert result.returncode != 0 and "CalledProcessError" not in text, text
    log = "results/tiny/logs/train/digits-bs4096-cd-s42.log"
    assert len(failed) == 1 and "FAILED train digits-bs4096-cd-s42: cdrepro train: error:" in failed[0], text
    assert "batch size 4096" in failed[0] and failed[0].endswith(f"log: {log}"), failed


def test_the_logger_finds_the_params_files_on_the_command_line():
    """Snakemake does not tell its logger which config file failed: the plugin reads argv."""
    from snakemake_logger_plugin_cdrepro import configfiles

    assert configfiles(["-n", "--configfile", "a.yaml", "b.yaml", "--cores", "2"]) == ["a.yaml", "b.yaml"]
    assert configfiles(["--configfile=a.yaml", "reproduce_tables"]) == ["a.yaml"]
    assert configfiles(["-n", "all"]) == []
    assert configfiles(["--configfile", "a.yaml", "--", "all"]) == ["a.yaml"]


def test_only_a_word_after_the_first_params_file_is_taken_for_a_target():
    from snakemake_logger_plugin_cdrepro import taken_target

    assert "put it before --configfile" in taken_target("all", ["--configfile", "a.yaml", "all"])
    assert taken_target("b.yaml", ["--configfile", "a.yaml", "b.yaml"]) is None  # meant as a params file
    assert taken_target("all", ["--configfile", "all"]) is None  # the option's own file
    assert taken_target("all", ["--configfile=a.yaml", "all"]) is None  # not taken: a target
