"""Tests of the ``cdrepro`` command line: every subcommand, its files, and its one-line errors."""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path

import pytest
import yaml

from cdrepro.cli import main
from cdrepro.runs import ProfilePaths, Run, run_id

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RUN = Run("digits", 256, "cd", 42)
RID = run_id(RUN)


@pytest.fixture
def params(embedded_params, tmp_path, monkeypatch):
    """A one-run params dict, small enough for the whole pipeline to take seconds; the working
    directory is a temporary folder, where ``write_params`` puts it as params.yaml."""
    monkeypatch.chdir(tmp_path)
    embedded_params["results_dir"] = str(tmp_path / "results")
    embedded_params["data"]["download_dir"] = str(tmp_path / "downloads")
    embedded_params["model"]["backbone_width"] = 4
    embedded_params["train"].update(epochs=1, image_size=16, device="cpu")
    embedded_params["evaluate"]["kmeans_n_init"] = 1
    embedded_params["runs"] = [vars(RUN).copy()]
    return embedded_params


def write_params(params: dict, name: str = "params.yaml") -> Path:
    path = Path(name)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Run ``cdrepro ARGV``; return (exit status, stdout, stderr)."""
    capsys.readouterr()  # drop anything printed before
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def error_line(command: str, err: str) -> str:
    """The single error line a failing command must print; fails the test otherwise."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got: {err!r}"
    assert lines[0].startswith(f"cdrepro {command}: error: "), lines[0]
    return lines[0]


# --------------------------------------------------------------------------- validate / runs


def test_validate_reports_the_run_count_and_output_folder(params, capsys):
    params["runs"].append({"dataset": "digits", "batch_size": 128, "variant": "no_head", "seed": 1})
    params["gpus"] = {"count": 4, "runs_per_gpu": 2}  # a machine of 4 GPUs, simulated
    write_params(params)
    code, out, _ = cli(capsys, "validate")
    assert code == 0
    assert re.search(r"\b2 runs\b", out), out
    assert str(ProfilePaths.from_params(params).root) in out
    assert "GPU slots on this machine: 4 GPUs x 2 runs a GPU (gpus.runs_per_gpu) = up to 8 GPU jobs at once" in out


def test_validate_checks_batch_sizes_against_prepared_data(params, capsys):
    write_params(params)
    assert cli(capsys, "prepare", "--dataset", "digits")[0] == 0
    code, out, _ = cli(capsys, "validate")
    assert code == 0 and "digits" in out
    params["runs"][0]["batch_size"] = 4096  # digits has 1,797 images
    write_params(params)
    code, _, err = cli(capsys, "validate")
    assert code == 2
    assert "runs[0].batch_size" in error_line("validate", err) and "at most 1797" in err


def test_validate_accepts_the_repository_params(embedded_params, capsys):
    repo_params = Path(__file__).resolve().parents[1] / "params.yaml"
    code, out, _ = cli(capsys, "validate", "--params", str(repo_params))
    assert code == 0
    assert re.search(rf"\b{len(embedded_params['runs'])} runs\b", out), out


def test_runs_lists_every_run_id_in_order(params, capsys):
    params["runs"] = [
        {"dataset": "digits", "batch_size": 128, "variant": "single_view", "seed": 7},
        {"dataset": "digits", "batch_size": 256, "variant": "cd", "seed": 42},
    ]
    write_params(params, "other.yaml")
    code, out, _ = cli(capsys, "runs", "--params", "other.yaml")
    assert code == 0
    assert out.split() == ["digits-bs128-single_view-s7", "digits-bs256-cd-s42"]


def test_methods_prints_each_methods_evaluation_stages_as_its_help_promises(embedded_params, capsys):
    """`cdrepro methods --help` says "their evaluation stages": each method's block names the
    stages a run of it is evaluated at, as the built model declares them (CD's no-head ablation
    on the line of the switch that changes them)."""
    from cdrepro.methods import build_method
    from cdrepro.run_settings import resolve_run

    with pytest.raises(SystemExit):
        main(["methods", "--help"])
    assert "evaluation stages" in capsys.readouterr().out
    code, out, _ = cli(capsys, "methods")
    assert code == 0
    blocks = {block.split(":", 1)[0]: block.splitlines() for block in re.split(r"\n(?=\S)", out.strip())}
    embedded_params["model"]["backbone_width"] = 4
    for variant in ("cd", "no_head", "simclr", "cc", "cld", "cdc"):
        settings = resolve_run(embedded_params, Run("digits", 128, variant, 42))
        stages = build_method(settings, num_classes=10).stages()
        words = ", ".join(
            f"{name} ({'argmax of' if stage.assign == 'argmax' else 'K-means on'} {stage.output})"
            for name, stage in stages.items()
        )
        lead = (
            "    with head false: " if variant == "no_head" else "  evaluation stages (the last is the final stage): "
        )
        assert lead + words in blocks[settings.method], (variant, blocks[settings.method])
    assert "cluster (argmax of y)" in "\n".join(blocks["cc"])


@pytest.mark.parametrize(
    ("command", "break_params", "key"),
    [
        ("validate", lambda p: p["train"].update(lr=-1), "train.lr"),
        ("validate", lambda p: p["runs"][0].update(variant="nope"), "runs[0].variant"),
        ("validate", lambda p: p["model"].update(depth=3), "depth"),
        ("runs", lambda p: p["train"].pop("epochs"), "epochs"),  # required: it has no default
        ("train", lambda p: p["runs"][0].update(batch_size=1), "runs[0].batch_size"),
    ],
)
def test_a_bad_params_file_exits_2_with_one_line_naming_the_key(params, capsys, command, break_params, key):
    break_params(params)
    write_params(params)
    argv = [command] + (["--run", RID] if command == "train" else [])
    code, out, err = cli(capsys, *argv)
    assert code == 2
    assert out == ""
    assert key in error_line(command, err)


def test_a_missing_params_file_exits_2(params, capsys):
    code, _, err = cli(capsys, "validate", "--params", "nowhere.yaml")
    assert code == 2
    assert "nowhere.yaml" in error_line("validate", err)


def test_a_params_file_that_is_not_yaml_exits_2(params, capsys):
    Path("params.yaml").write_text("train: [unclosed\n")
    code, _, err = cli(capsys, "validate")
    assert code == 2
    assert "YAML" in error_line("validate", err)


# --------------------------------------------------------------------------- unknown names


@pytest.mark.parametrize(
    "command, option, unknown, known",
    [
        ("prepare", "--dataset", "mnist", "digits"),
        ("baseline", "--dataset", "mnist", "digits"),
        ("train", "--run", "digits-bs128-cd-s42", RID),
        ("evaluate", "--run", "digits-bs128-cd-s42", RID),
    ],
)
def test_an_unknown_name_exits_2_naming_the_known_ones(params, capsys, command, option, unknown, known):
    write_params(params)
    code, _, err = cli(capsys, command, option, unknown)
    assert code == 2
    line = error_line(command, err)
    assert f"'{unknown}'" in line and known in line


def test_steps_run_out_of_order_say_what_is_missing(params, capsys):
    write_params(params)
    code, _, err = cli(capsys, "train", "--run", RID, "--threads", "1")
    assert code == 2
    assert "cdrepro prepare --dataset digits" in error_line("train", err)
    code, _, err = cli(capsys, "baseline", "--dataset", "digits")
    assert code == 2
    assert "cdrepro prepare --dataset digits" in error_line("baseline", err)


# --------------------------------------------------------------------------- the pipeline


def test_prepare_baseline_train_evaluate_tables(params, capsys):
    write_params(params)
    paths = ProfilePaths.from_params(params)

    code, out, _ = cli(capsys, "prepare", "--dataset", "digits")
    assert code == 0 and "1797 images, 10 classes" in out
    assert paths.prepared("digits").is_file() and paths.prepared_meta("digits").is_file()

    code, _, _ = cli(capsys, "baseline", "--dataset", "digits")
    assert code == 0
    baseline = json.loads(paths.baseline("digits").read_text())
    assert baseline["dataset"] == "digits" and set(baseline["pixels"]) == {"nmi", "ari", "acc"}

    code, out, _ = cli(capsys, "split", "--dataset", "digits")
    assert code == 0 and "stratified split, 1438 train (the kNN bank, the probe's fit) and 359 test images" in out
    assert json.loads(paths.split("digits").read_text())["n_test"] == 359

    # Evaluation before training, tables before evaluation: exit 2, naming the missing file.
    code, _, err = cli(capsys, "evaluate", "--run", RID, "--threads", "1")
    assert code == 2 and "model.pt" in error_line("evaluate", err)
    code, _, err = cli(capsys, "tables")
    assert code == 2 and f"metrics.json: not found; make it with `cdrepro evaluate --run {RID}`" in error_line(
        "tables", err
    )

    code, out, _ = cli(capsys, "train", "--run", RID, "--threads", "1")
    assert code == 0 and RID in out
    for path in (paths.model(RID), paths.curves(RID), paths.train_summary(RID), paths.checkpoint(RID)):
        assert path.is_file(), path
    assert json.loads(paths.train_summary(RID).read_text())["epochs"] == 1
    code, _, _ = cli(capsys, "train", "--run", RID, "--threads", "1")  # finished: resumes, trains nothing
    assert code == 0

    code, out, _ = cli(capsys, "evaluate", "--run", RID, "--threads", "1")
    assert code == 0 and RID in out
    metrics = json.loads(paths.metrics(RID).read_text())
    assert metrics["run_id"] == RID and metrics["n_images"] == 1797 and metrics["num_classes"] == 10
    assert list(metrics["stages"]) == ["backbone", "feature"] and metrics["final_stage"] == "feature"
    assert {"knn", "linear"} <= set(metrics["stages"]["backbone"]) and "knn" in metrics["stages"]["feature"]

    code, out, _ = cli(capsys, "tables")
    assert code == 0
    written = [Path(line) for line in out.split()]
    expected = {f"table{n}.tex" for n in range(2, 11)} | {"table_other.tex", "all.csv", "differences.csv"}
    assert {p.name for p in written} == expected
    assert all(p.parent == paths.tables_dir() and p.is_file() for p in written)
    all_csv = paths.tables_dir().joinpath("all.csv").read_text().splitlines()
    assert "method" in all_csv[0].split(",") and any(line.startswith("ours,") and ",cd," in line for line in all_csv)
    # The held-out accuracies are rows of all.csv like NMI/ARI/ACC: metric knn (both stages), linear.
    held_out = [line for line in all_csv if line.startswith("ours,") and (",knn," in line or ",linear," in line)]
    assert len(held_out) == 3 and all(line.startswith("ours,,") for line in held_out)  # in no paper table

    # A metrics.json of another shape (here: from before there were methods): one line naming it.
    old = {k: v for k, v in metrics.items() if k not in ("stages", "final_stage")}
    paths.metrics(RID).write_text(json.dumps(old | {**metrics["stages"], "feature_stage": "feature"}))
    code, _, err = cli(capsys, "tables")
    assert code == 2 and f"{paths.metrics(RID)}: not a metrics file" in error_line("tables", err)
    assert f"re-run `cdrepro evaluate --run {RID}`" in err


def test_evaluate_refuses_a_model_trained_with_other_settings(params, capsys):
    write_params(params)
    assert cli(capsys, "prepare", "--dataset", "digits")[0] == 0
    assert cli(capsys, "split", "--dataset", "digits")[0] == 0
    assert cli(capsys, "train", "--run", RID, "--threads", "1")[0] == 0

    params["train"]["lr"] = 1e-3
    write_params(params)
    code, _, err = cli(capsys, "evaluate", "--run", RID, "--threads", "1")
    assert code == 2
    assert "other settings" in error_line("evaluate", err)
    # Training with the new settings starts afresh (the old state is set aside), after which
    # evaluation accepts the new model.
    assert cli(capsys, "train", "--run", RID, "--threads", "1")[0] == 0
    assert cli(capsys, "evaluate", "--run", RID, "--threads", "1")[0] == 0


@pytest.mark.parametrize(
    "command, advice",
    [
        ("train", "run cdrepro train again (training resumes from its last checkpoint, which is intact)"),
        ("evaluate", "run cdrepro evaluate again (the trained model is untouched: only the evaluation runs again)"),
        ("tables", "run cdrepro tables again"),
    ],
)
def test_a_full_disk_is_advised_for_the_command_that_failed(command, advice):
    """Training's advice (it resumes) was given whatever the command (tests/test_bad_inputs.py
    has the full disk while evaluating, through the CLI)."""
    from cdrepro.cli import _os_error

    line = _os_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "results/x/metrics.json"), command)
    assert line.startswith("the disk is full (No space left on device) while writing results/x/metrics.json. ")
    assert line.endswith(advice)
    assert ("resumes" in line) == (command == "train")


@pytest.mark.parametrize("command", ["evaluate", "tables"])
def test_ctrl_c_is_advised_for_the_command_that_was_interrupted(command, monkeypatch, capsys):
    """Ctrl-C of a step other than training does not promise a training's resume."""
    import cdrepro.cli as cli_module

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_module, f"cmd_{command}", interrupted)
    assert cli_module.main([command, *(["--run", RID] if command == "evaluate" else [])]) == 130
    line = capsys.readouterr().err.strip()
    assert line.startswith(f"cdrepro {command}: interrupted; nothing was left half-written: run the same command again")
    assert "\n" not in line and "training resumes" not in line
