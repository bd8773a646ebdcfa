"""Nothing lost (issue 5, items 1, 3, 5, 7): a training process killed with SIGKILL resumes to
the same weights; every output is written whole or not at all; a non-finite loss stops the run
at the step it happened; a full disk leaves the last checkpoint intact and says so.

The runs are tiny (random 16x16 images, a width-4 ResNet-18, batch 16, one CPU thread).
"""

from __future__ import annotations

import csv
import errno
import json
import logging
import os
import pathlib
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cdrepro import atomic, cli, tables
from cdrepro.checkpoint import load_weights_only, save_state
from cdrepro.config import validate_params
from cdrepro.data.prepared import meta_path_for, save_prepared
from cdrepro.methods import METHODS
from cdrepro.methods.cd import ContrastiveDisentangling
from cdrepro.results import ProfileResults
from cdrepro.run_settings import resolve_run
from cdrepro.runs import ProfilePaths, Run
from cdrepro.train import NonFiniteLoss, RunFiles, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BATCH = 16
TIMING = {"seconds", "pairs_per_s"}


# --------------------------------------------------------------------------- helpers


def write_profile(root: Path, embedded: dict, *, epochs: int, n_images: int) -> tuple[Path, dict, str]:
    """A params file with one tiny run, and its prepared dataset (random images) in place."""
    params = embedded
    params["profile"] = "reliability"
    params["results_dir"] = str(root / "results")
    params["model"]["backbone_width"] = 4
    params["train"].update(epochs=epochs, image_size=16, device="cpu")
    params["datasets"]["digits"]["crop_min_scale"] = 0.2
    params["evaluate"]["knn"]["k"] = 10  # a bank of about 51 images
    params["runs"] = [{"dataset": "digits", "batch_size": BATCH, "variant": "cd", "seed": 0}]
    validate_params(params)
    params_file = root / "params.yaml"
    params_file.parent.mkdir(parents=True, exist_ok=True)
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n_images, 16, 16, 3), dtype=np.uint8)
    labels = np.arange(n_images) % 4
    npz = ProfilePaths.from_params(params).prepared("digits")
    save_prepared(npz, meta_path_for(npz), "digits", images, labels, ["a", "b", "c", "d"], {})
    return params_file, params, "digits-bs16-cd-s0"


def files_of(params: dict, rid: str) -> RunFiles:
    paths = ProfilePaths.from_params(params)
    return RunFiles(paths.checkpoint(rid), paths.model(rid), paths.curves(rid), paths.train_summary(rid))


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def curve_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(handle)]


def wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 180.0) -> None:
    """Poll ``condition`` until it holds; fail if the process ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the process ended (rc {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def signal_after_first_epoch(
    command: list[str], cwd: Path, curves: Path, log: Path, signum: int, timeout: float = 180.0
) -> subprocess.Popen:
    """Start ``command``; once ``curves`` has its first row (so the first checkpoint is on disk:
    curves.csv is rewritten right after each checkpoint), send ``signum``; wait for the end."""
    env = dict(os.environ, CDREPRO_TRACKING="off")
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: epochs_done(curves) >= 1, proc, "the first checkpoint", timeout)
        finally:
            proc.send_signal(signum)
            proc.wait(timeout=60)
    return proc


def epochs_done(curves: Path) -> int:
    try:
        return len(curve_rows(curves))
    except FileNotFoundError:
        return 0


# --------------------------------------------------------------------------- 1. SIGKILL and resume


def test_ctrl_c_of_a_training_says_so_in_one_line_and_it_resumes(embedded_params, tmp_path):
    params_file, params, rid = write_profile(tmp_path / "ctrl-c", embedded_params, epochs=40, n_images=128)
    files = files_of(params, rid)
    command = [sys.executable, "-m", "cdrepro", "train", "--params", str(params_file), "--run", rid, "--threads", "1"]
    log = tmp_path / "ctrl-c.log"
    proc = signal_after_first_epoch(command, tmp_path, files.curves, log, signal.SIGINT)
    text = log.read_text()
    assert proc.returncode == 130, text
    assert "Traceback" not in text
    errors = [line for line in text.splitlines() if line.startswith("cdrepro train:")]
    assert errors == [errors[-1]] and "interrupted" in errors[0] and "resumes" in errors[0], text
    assert text.rstrip().splitlines()[-1] == errors[0]  # the last word, after the progress lines
    assert load(files.checkpoint)["epoch"] >= 1 and not files.model.exists()


def test_training_killed_with_sigkill_mid_epoch_resumes_bit_identical(embedded_params, tmp_path):
    epochs = 5  # 128 images, batch 16: 8 steps an epoch, a few tenths of a second
    params_file, params, rid = write_profile(tmp_path / "killed", embedded_params, epochs=epochs, n_images=128)
    files = files_of(params, rid)
    command = [sys.executable, "-m", "cdrepro", "train", "--params", str(params_file), "--run", rid, "--threads", "1"]
    env = dict(os.environ, CDREPRO_TRACKING="off")

    log = tmp_path / "first.log"
    proc = signal_after_first_epoch(command, tmp_path, files.curves, log, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL, log.read_text()
    killed_at = load(files.checkpoint)["epoch"]
    assert 1 <= killed_at < epochs, "the kill must land before the run's end"
    assert not files.model.exists(), "a killed run must not leave a final model"

    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming from {files.checkpoint} at epoch {killed_at}" in again.stderr
    trained_again = [int(e) for e in re.findall(rf"{rid} epoch (\d+)/{epochs}", again.stderr)]
    assert trained_again == list(range(killed_at + 1, epochs + 1)), "only the epochs left are trained"

    # The same run, never interrupted, in this process (also one thread).
    straight_params = validate_params(yaml.safe_load(params_file.read_text()))
    straight_params["results_dir"] = str(tmp_path / "straight" / "results")
    straight_files = files_of(straight_params, rid)
    settings = resolve_run(straight_params, Run("digits", BATCH, "cd", 0))
    train(settings, ProfilePaths.from_params(params).prepared("digits"), straight_files, threads=1, progress=False)

    expected, got = load(straight_files.model)["model"], load(files.model)["model"]
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), f"{name} differs after SIGKILL and resume"
    assert curve_rows(files.curves) == curve_rows(straight_files.curves)
    assert len(curve_rows(files.curves)) == epochs
    final = {k: v for k, v in json.loads(files.summary.read_text())["final"].items() if k not in TIMING}
    expected_final = json.loads(straight_files.summary.read_text())["final"]
    assert final == {k: v for k, v in expected_final.items() if k not in TIMING}


# --------------------------------------------------------------------------- 3. atomic outputs


class Torn(OSError):
    """Stands in for a crash in the middle of writing a file."""


@pytest.fixture
def torn_writes(monkeypatch):
    """Every Path.write_bytes/write_text writes the first half of its data and then fails, as
    a process killed mid-write would leave it. A writer that wrote in place would leave a torn
    target; an atomic one leaves only (and then removes) its temporary file."""
    real_bytes, real_text = pathlib.Path.write_bytes, pathlib.Path.write_text

    def half_bytes(self, data):
        real_bytes(self, data[: len(data) // 2])
        raise Torn(errno.EIO, "killed mid-write")

    def half_text(self, data, *args, **kwargs):
        real_text(self, data[: len(data) // 2], *args, **kwargs)
        raise Torn(errno.EIO, "killed mid-write")

    monkeypatch.setattr(pathlib.Path, "write_bytes", half_bytes)
    monkeypatch.setattr(pathlib.Path, "write_text", half_text)


def assert_no_temporary_files(folder: Path) -> None:
    assert not [p.name for p in folder.rglob(".*.tmp")], "a failed write left its temporary file"


@pytest.fixture
def trained(embedded_params, tmp_path):
    params_file, params, rid = write_profile(tmp_path, embedded_params, epochs=1, n_images=64)
    settings = resolve_run(params, Run("digits", BATCH, "cd", 0))
    files = files_of(params, rid)
    train(settings, ProfilePaths.from_params(params).prepared("digits"), files, threads=1, progress=False)
    return params_file, params, rid, settings, files


def test_a_crash_mid_write_leaves_the_previous_checkpoint_and_model(trained, torn_writes):
    _, _, _, _, files = trained
    for path in (files.checkpoint, files.model):
        before = path.read_bytes()
        state = load(path)
        state["model"] = {k: torch.zeros_like(v) for k, v in state["model"].items()}
        with pytest.raises(Torn):
            save_state(path, state)
        assert path.read_bytes() == before, f"{path.name} was torn"
    assert_no_temporary_files(files.checkpoint.parent)


def checkpoint_epoch(path, settings) -> int:
    """The epoch of a readable checkpoint of ``settings``."""
    state = load_weights_only(path)
    assert state["settings_digest"] == settings.digest()
    return state["epoch"]


def test_a_crash_between_write_and_rename_leaves_the_previous_checkpoint(trained, monkeypatch):
    _, _, _, settings, files = trained
    before = files.checkpoint.read_bytes()

    def killed_before_rename(src, dst):
        raise Torn(errno.EIO, "killed before the rename")

    monkeypatch.setattr(atomic.os, "replace", killed_before_rename)
    with pytest.raises(Torn):
        save_state(files.checkpoint, {"settings_digest": settings.digest(), "epoch": 99})
    assert files.checkpoint.read_bytes() == before
    assert checkpoint_epoch(files.checkpoint, settings) == 1
    assert_no_temporary_files(files.checkpoint.parent)


def test_a_crash_while_writing_metrics_leaves_the_previous_metrics(trained, monkeypatch):
    params_file, params, rid, _, files = trained
    metrics = ProfilePaths.from_params(params).metrics(rid)
    assert cli.main(["split", "--params", str(params_file), "--dataset", "digits"]) == 0
    assert cli.main(["evaluate", "--params", str(params_file), "--run", rid, "--threads", "1"]) == 0
    before = metrics.read_text()
    metrics.write_text(before.replace('"n_images"', '"n_images_old"'))  # an older, complete file
    before = metrics.read_text()

    real_text = pathlib.Path.write_text

    def torn_metrics(self, data, *args, **kwargs):  # only the metrics file; MLflow etc. untouched
        if self.name.startswith(f".{metrics.name}.") or self == metrics:
            real_text(self, data[: len(data) // 2], *args, **kwargs)
            raise Torn(errno.EIO, "killed mid-write")
        return real_text(self, data, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", torn_metrics)
    # The CLI reports the I/O error in one line (exit 2); the old file stays whole.
    assert cli.main(["evaluate", "--params", str(params_file), "--run", rid, "--threads", "1"]) == 2
    assert metrics.read_text() == before
    json.loads(metrics.read_text())
    assert_no_temporary_files(metrics.parent)


def test_a_crash_while_writing_tables_leaves_each_table_old_or_new_never_torn(tmp_path, monkeypatch):
    out = tmp_path / "tables"
    nothing = ProfileResults([], [])
    old = {p.name: p.read_text() for p in tables.write_tables(nothing, out, results_label="old/run")}
    new = {p.name: p.read_text() for p in tables.write_tables(nothing, tmp_path / "new", results_label="new/run")}
    assert old != new

    real_text, calls = pathlib.Path.write_text, {"n": 0}

    def crash_on_the_third(self, data, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            real_text(self, data[: len(data) // 2], *args, **kwargs)
            raise Torn(errno.EIO, "killed mid-write")
        return real_text(self, data, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", crash_on_the_third)
    with pytest.raises(Torn):
        tables.write_tables(nothing, out, results_label="new/run")
    for name, text in old.items():
        assert (out / name).read_text() in (text, new[name]), f"{name} is torn"
    assert [(out / n).read_text() == new[n] for n in ("table2.tex", "table3.tex", "table4.tex")] == [
        True,
        True,
        False,
    ], "written in order: the first two replaced, the third left as it was"
    assert_no_temporary_files(out)


# --------------------------------------------------------------------------- 5. numerics


def test_non_finite_loss_names_epoch_and_step_and_checkpoints_no_bad_weights(embedded_params, tmp_path, monkeypatch):
    _, params, rid = write_profile(tmp_path, embedded_params, epochs=3, n_images=64)  # 4 steps/epoch
    settings, files = resolve_run(params, Run("digits", BATCH, "cd", 0)), files_of(params, rid)

    class NanAtStep7(ContrastiveDisentangling):  # a fault injected through the method seam
        steps = 0

        def loss(self, out1, out2):
            terms = super().loss(out1, out2)
            NanAtStep7.steps += 1
            if NanAtStep7.steps == 4 + 3:  # epoch 2, step 3; that one step only
                terms["loss"] = terms["loss"] * float("nan")
            return terms

    monkeypatch.setitem(METHODS, "cd", NanAtStep7)
    with pytest.raises(NonFiniteLoss, match=r"epoch 2, step 3 of 4\b") as info:
        train(settings, ProfilePaths.from_params(params).prepared("digits"), files, threads=1, progress=False)
    assert "global step 7" in str(info.value) and str(files.checkpoint) in str(info.value)
    checkpoint = load(files.checkpoint)
    assert checkpoint["epoch"] == 1, "the weights after the NaN step must never be checkpointed"
    assert all(torch.isfinite(t).all() for t in checkpoint["model"].values() if t.is_floating_point())
    assert not files.model.exists()


# --------------------------------------------------------------------------- 7. disk full


def test_a_full_disk_while_checkpointing_keeps_the_last_checkpoint_and_says_so(
    embedded_params, tmp_path, monkeypatch, capsys, caplog
):
    params_file, params, rid = write_profile(tmp_path, embedded_params, epochs=2, n_images=64)
    settings, files = resolve_run(params, Run("digits", BATCH, "cd", 0)), files_of(params, rid)
    real_bytes, saved = pathlib.Path.write_bytes, {}

    def disk_full_at_the_second_checkpoint(self, data):
        if not self.name.startswith(f".{files.checkpoint.name}."):
            return real_bytes(self, data)
        if not saved:  # epoch 1's checkpoint is written; keep its bytes to compare
            real_bytes(self, data)
            saved["epoch 1"] = data
            return None
        real_bytes(self, data[: len(data) // 3])  # part of it fits, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pathlib.Path, "write_bytes", disk_full_at_the_second_checkpoint)
    command = ["train", "--params", str(params_file), "--run", rid, "--threads", "1"]
    code = cli.main(command)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "disk is full" in err and f"while writing {files.checkpoint}" in err, err
    assert "Traceback" not in err
    assert files.checkpoint.read_bytes() == saved["epoch 1"], "the last checkpoint must stay intact"
    assert checkpoint_epoch(files.checkpoint, settings) == 1
    assert not files.model.exists()
    assert_no_temporary_files(files.checkpoint.parent)

    monkeypatch.setattr(pathlib.Path, "write_bytes", real_bytes)  # space freed: it resumes
    with caplog.at_level(logging.INFO, logger="cdrepro"):
        assert cli.main(command) == 0
    assert f"resuming from {files.checkpoint} at epoch 1" in caplog.text
    assert load(files.checkpoint)["epoch"] == 2 and files.model.is_file()
