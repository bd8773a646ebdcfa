"""DDP (cdrepro.distributed): two gloo processes on the CPU compute the loss and the gradients
of one process at the same global batch, keep BatchNorm statistics over the global batch, write
one checkpoint from rank 0, resume, and load checkpoints of one process and vice versa.

The two ranks are forked from the test process (no second torch import, so seconds rather
than tens of seconds) and talk over 127.0.0.1; each writes what it computed to a file that the
test compares with the same computation done here in one process. Models are tiny (a width-4
ResNet-18 on 16x16 images); the end-to-end run through ``cdrepro train`` and torchrun is the
only one that starts fresh interpreters.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
import yaml

# The tiny runs of test_train (64 random 16x16 images, a width-4 ResNet-18, batch 16) and the
# process helpers of test_reliability.
from test_reliability import files_of, signal_after_first_epoch
from test_train import load, params, prepared, run_files, settings_of  # noqa: F401 (fixtures)

import cdrepro.train as train_module
from cdrepro import augment as aug
from cdrepro import cli, launcher, random_state
from cdrepro import distributed as ddp
from cdrepro.config import validate_params
from cdrepro.methods import METHODS, build_method
from cdrepro.methods.cd import ContrastiveDisentangling
from cdrepro.run_settings import resolve_run
from cdrepro.runs import Run
from cdrepro.step import make_optimizer, train_step
from cdrepro.train import NonFiniteLoss, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WORLD = 2  # processes; the global batch of the tiny runs (test_train's, 16) is 8 rows a rank
CPU = torch.device("cpu")
# float32 throughout. Gathering changes no arithmetic of the losses, but BatchNorm statistics
# are summed in another order (per rank, then merged) than one process sums them, which moves
# the last bits, and twenty layers of backward spread that: measured, every gradient tensor is
# within 3e-5 of its largest entry of one process's. A wrong factor (2, 1/2) would be 0.5 off.
LOSS_TOLERANCE = {"rtol": 1e-6, "atol": 1e-6}
GRAD_TOLERANCE = 2e-4  # of the tensor's largest entry


def assert_same_gradient(got: torch.Tensor, expected: torch.Tensor, name: str) -> None:
    """Equal up to float32 rounding, measured against the tensor's largest entry: entries
    near zero carry the same absolute rounding as the others, so an entry-wise rtol misfires."""
    scale = expected.abs().max()
    assert scale > 0, f"{name} gets no gradient"
    error = (got - expected).abs().max()
    assert error <= GRAD_TOLERANCE * scale, f"{name}: off by {error:.3g}, {error / scale:.3g} of its largest entry"


# --------------------------------------------------------------------------- two ranks


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _rank_main(
    rank: int, port: int, out_dir: Path, worker: Callable[..., Any], args: tuple, device: torch.device
) -> None:
    # What torchrun would set; process_group() reads it. On CUDA both ranks share GPU 0.
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        LOCAL_RANK=str(rank if device.type == "cpu" else 0),
    )
    torch.set_num_threads(1)  # a forked child must not use the parent's OpenMP pool
    torch.backends.cudnn.allow_tf32 = False  # fp32 convolutions on CUDA, as the tests ask of the parent
    # gloo on CUDA too: NCCL refuses two ranks on one GPU.
    with ddp.process_group(device, backend="gloo") as ranks:
        result = worker(ranks, *args)
    torch.save(result, out_dir / f"rank{rank}.pt")


def on_two_ranks(
    tmp_path: Path, worker: Callable[..., Any], *args: Any, device: torch.device = CPU, timeout: float = 120.0
) -> list[Any]:
    """``worker(ranks, *args)`` on two gloo ranks; what each returned, in rank order.

    Forked on the CPU (no second torch import); spawned for CUDA, which cannot be forked once
    the parent has used it."""
    out_dir = tmp_path / f"ranks-{worker.__name__}-{time.monotonic_ns()}"
    out_dir.mkdir()
    context = mp.start_processes(
        _rank_main,
        args=(_free_port(), out_dir, worker, args, device),
        nprocs=WORLD,
        join=False,
        start_method="fork" if device.type == "cpu" else "spawn",
    )
    deadline = time.monotonic() + timeout
    while not context.join(timeout=max(0.0, deadline - time.monotonic())):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"{worker.__name__} on two ranks did not finish in {timeout} s")
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


# --------------------------------------------------------------------------- gather with grad


def test_all_gather_with_grad_in_one_process_is_the_identity():
    rows = torch.randn(3, 2, requires_grad=True)
    assert ddp.all_gather_with_grad(rows) is rows
    out = torch.randn(3, 4)
    assert ddp.min_over_ranks(out) is out


def gather_and_backward(ranks: ddp.Ranks) -> dict[str, torch.Tensor]:
    rows = (torch.arange(6.0).reshape(3, 2) + 10 * ranks.rank).requires_grad_()  # (3, 2)
    gathered = ddp.all_gather_with_grad(rows)  # (6, 2)
    # Each rank weighs the gathered rows differently, so the sum over ranks shows in the gradient.
    weights = torch.arange(12.0).reshape(6, 2) * (ranks.rank + 1)
    (weights * gathered).sum().backward()
    first_bad = ddp.min_over_ranks(torch.tensor(5 - 3 * ranks.rank))
    return {"gathered": gathered.detach(), "grad": rows.grad, "min": first_bad}


def test_all_gather_with_grad_stacks_rows_in_rank_order_and_sums_the_gradients(tmp_path):
    results = on_two_ranks(tmp_path, gather_and_backward)
    expected_rows = torch.cat([torch.arange(6.0).reshape(3, 2), torch.arange(6.0).reshape(3, 2) + 10])
    # d/d(rows of rank r) of sum over ranks s of (weights_s * gathered).sum() = sum_s weights_s[r's rows]
    weight_sum = torch.arange(12.0).reshape(6, 2) * (1 + 2)
    for rank, result in enumerate(results):
        assert torch.equal(result["gathered"], expected_rows)
        assert torch.equal(result["grad"], weight_sum[3 * rank : 3 * rank + 3])
        assert int(result["min"]) == 2, "min_over_ranks: the smallest of 5 and 2 on every rank"


# --------------------------------------------------------------------------- BatchNorm


def batchnorm_on_slices(ranks: ddp.Ranks, x: torch.Tensor, upstream: torch.Tensor) -> dict[str, Any]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    if ranks.distributed:
        model = ddp.sync_batchnorm(model, CPU)
    rows = slice(ranks.rank * len(x) // ranks.world_size, (ranks.rank + 1) * len(x) // ranks.world_size)
    x = x[rows].clone().requires_grad_()
    out = model(x)
    for _ in range(2):  # a second update of the running statistics, as the second view's pass
        model(x.detach())
    # Each rank's own part of a loss; summed over ranks it is one process's (out * upstream).sum().
    (out * upstream[rows]).sum().backward()
    bn = model[1]
    return {
        "type": type(bn).__name__,
        "out": out.detach(),
        "x_grad": x.grad,
        "weight_grad": bn.weight.grad,
        "state": {k: v.clone() for k, v in model.state_dict().items()},
    }


def test_synced_batchnorm_normalises_over_the_global_batch(tmp_path):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 3, 5, 5, generator=g) * 3 + 1  # (8, 3, 5, 5): 4 rows a rank
    upstream = torch.randn(8, 4, 5, 5, generator=g)
    single = batchnorm_on_slices(ddp.SINGLE, x, upstream)
    ranks = on_two_ranks(tmp_path, batchnorm_on_slices, x, upstream)

    assert [r["type"] for r in ranks] == ["CpuSyncBatchNorm"] * 2 and single["type"] == "BatchNorm2d"
    torch.testing.assert_close(torch.cat([r["out"] for r in ranks]), single["out"], **LOSS_TOLERANCE)
    assert_same_gradient(torch.cat([r["x_grad"] for r in ranks]), single["x_grad"], "input")
    # Each rank holds its own part of the affine gradient (DDP then reduces it across ranks).
    assert_same_gradient(ranks[0]["weight_grad"] + ranks[1]["weight_grad"], single["weight_grad"], "weight")
    assert ranks[0]["state"].keys() == single["state"].keys()
    for name, expected in single["state"].items():  # running mean/var (unbiased) and the count
        assert torch.equal(ranks[0]["state"][name], ranks[1]["state"][name]), f"{name} differs between ranks"
        torch.testing.assert_close(ranks[0]["state"][name], expected, **LOSS_TOLERANCE, msg=name)


# --------------------------------------------------------------------------- one step


def one_step(
    ranks: ddp.Ranks, settings, view1: torch.Tensor, view2: torch.Tensor, device: torch.device = CPU
) -> dict[str, Any]:
    """The training step (cdrepro.step's, which train.py runs), on this rank's slice of fixed
    views; the gradients are those it stepped with (after clipping, where the run clips)."""
    torch.manual_seed(settings.seed)
    model = build_method(settings, num_classes=10)
    if ranks.distributed:
        model = ddp.sync_batchnorm(model, device)
    model = model.to(device)
    forward = ddp.data_parallel(model, ranks)
    local = ddp.local_batch_size(settings.batch_size, ranks, settings.run_id)
    rows = slice(ranks.rank * local, (ranks.rank + 1) * local)
    view1, view2 = view1[rows].to(device), view2[rows].to(device)
    terms = train_step(model, forward, make_optimizer(model), view1, view2)
    return {
        "terms": {name: value.detach().cpu() for name, value in terms.items()},
        "grads": {name: p.grad.cpu() for name, p in model.named_parameters()},
        "buffers": {name: b.cpu() for name, b in model.named_buffers()},
    }


def assert_one_step_equal(single: dict[str, Any], ranks: list[dict[str, Any]], terms: set[str]) -> None:
    """Every rank's step equals one process's: its ``terms`` (and ``loss``), every gradient and
    every BatchNorm buffer."""
    assert set(single["terms"]) == terms | {"loss"}
    for rank in ranks:
        assert rank["terms"].keys() == single["terms"].keys()
        for name, value in single["terms"].items():
            torch.testing.assert_close(rank["terms"][name], value, **LOSS_TOLERANCE, msg=name)
        assert rank["grads"].keys() == single["grads"].keys()
        for name, grad in single["grads"].items():
            assert_same_gradient(rank["grads"][name], grad, name)  # the value, not just the direction
        # Two BatchNorm passes (one per view) over the global batch: the same running statistics.
        for name, buffer in single["buffers"].items():
            torch.testing.assert_close(rank["buffers"][name], buffer, **LOSS_TOLERANCE, msg=name)
    for name in single["grads"]:
        assert torch.equal(ranks[0]["grads"][name], ranks[1]["grads"][name]), f"{name}: ranks disagree"


TERMS = {"cd": {"instance", "feature", "entropy"}, "no_head": {"instance"}}


def fixed_views(settings) -> tuple[torch.Tensor, torch.Tensor]:
    """Two (B, 3, S, S) views, the same for one process and two (no augmentation randomness)."""
    g = torch.Generator().manual_seed(2)
    view1, view2 = torch.rand(2, settings.batch_size, 3, settings.image_size, settings.image_size, generator=g)
    return view1, view2


@pytest.mark.parametrize("variant", ["cd", "no_head"])
def test_loss_and_every_gradient_equal_one_process_at_the_same_global_batch(params, tmp_path, variant):
    params["methods"]["cd"]["entropy_weight"] = 0.5  # a weight other than 1, so a lost factor shows
    settings = settings_of(params, variant)
    single = one_step(ddp.SINGLE, settings, *fixed_views(settings))
    assert_one_step_equal(single, on_two_ranks(tmp_path, one_step, settings, *fixed_views(settings)), TERMS[variant])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("variant", ["cd", "no_head"])
def test_on_cuda_torch_syncbatchnorm_and_ddp_give_one_process_gradients(params, tmp_path, monkeypatch, variant):
    """The CUDA path: torch's own SyncBatchNorm and DDP on CUDA tensors (two ranks sharing one
    GPU over gloo; a real run has a GPU a rank and nccl). TF32 off: its 10-bit inputs would
    differ between batch sizes by far more than rounding."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    params["methods"]["cd"]["entropy_weight"] = 0.5
    settings = settings_of(params, variant)
    cuda = torch.device("cuda", 0)
    ranks = on_two_ranks(tmp_path, one_step, settings, *fixed_views(settings), cuda, device=cuda)
    single = one_step(ddp.SINGLE, settings, *fixed_views(settings), cuda)
    assert_one_step_equal(single, ranks, TERMS[variant])


def test_a_global_batch_that_does_not_split_evenly_is_refused():
    with pytest.raises(ValueError, match=r"batch size 100.*batch_size under runs:.*3 processes.*gpus_per_run"):
        ddp.local_batch_size(100, ddp.Ranks(rank=0, world_size=3), "digits-bs100-cd-s0")
    assert ddp.local_batch_size(128, ddp.Ranks(rank=1, world_size=4), "x") == 32


# --------------------------------------------------------------------------- train()


def fixed_view_maker(config: aug.AugmentConfig, compile: bool = False):
    """Views that depend on the images alone (no random draws): then one process and two
    see the same views, and their training must agree. Odd calls make view 2."""
    calls = itertools.count()

    def make_view(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        view = aug.eval_transform(images, config.out_size)
        return view if next(calls) % 2 == 0 else 0.8 * view.flip(3)

    return make_view


def train_with_fixed_views(ranks: ddp.Ranks, settings, prepared: Path, root: Path) -> dict[str, Any]:
    train_module.aug.view_maker = fixed_view_maker  # this process only (a forked rank)
    files = run_files(root, settings)
    return train(settings, prepared, files, threads=1, progress=False, ranks=ranks)


def test_training_on_two_ranks_follows_one_process(params, prepared, tmp_path, monkeypatch):
    settings = settings_of(params, "cd", epochs=2)  # 2 epochs of 4 steps: Adam, clipping, schedule
    ranks = on_two_ranks(tmp_path, train_with_fixed_views, settings, prepared, tmp_path / "two")
    monkeypatch.setattr(aug, "view_maker", fixed_view_maker)
    single = train(settings, prepared, run_files(tmp_path / "one", settings), threads=1, progress=False)

    assert ranks[0]["processes"] == 2 and single["processes"] == 1
    for name in ("loss", "instance", "feature", "entropy"):
        assert ranks[0]["final"][name] == pytest.approx(single["final"][name], rel=1e-5), name
        assert ranks[1]["final"][name] == ranks[0]["final"][name]
    two, one = run_files(tmp_path / "two", settings), run_files(tmp_path / "one", settings)
    expected = load(one.model)["model"]
    got = load(two.model)["model"]
    assert got.keys() == expected.keys() == build_method(settings, 4).state_dict().keys(), (
        "no module. or _orig_mod. prefixes: checkpoints load with one process or many"
    )
    for name, tensor in expected.items():
        # Adam steps of lr 3e-4 each; rounding in the gradients moves them by far less.
        torch.testing.assert_close(got[name], tensor, rtol=1e-4, atol=2e-6, msg=name)
    assert sorted(p.name for p in two.model.parent.iterdir()) == [
        "checkpoint.pt",
        "curves.csv",
        "model.pt",
        "train.json",
    ], "rank 0 alone writes, atomically"
    rng = load(two.checkpoint)["rng"]
    assert len(rng["augment_by_rank"]) == 2 and not torch.equal(*rng["augment_by_rank"]), (
        "each rank has its own augmentation generator, and the checkpoint keeps both"
    )
    assert "augment_by_rank" not in load(one.checkpoint)["rng"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize(("precision", "compile_what", "rel"), [("fp32", "none", 1e-4), ("auto", "model", 2e-2)])
def test_on_cuda_training_on_two_ranks_follows_one_process(
    params, prepared, tmp_path, monkeypatch, precision, compile_what, rel
):
    """train() on CUDA under DDP: channels-last, fused Adam, bf16 autocast with the gathered
    outputs, torch.compile of the DDP-wrapped model. bf16 moves the loss by ~1e-3, so that
    case only checks that the two agree to 2%."""
    params["train"].update(device="cuda", precision=precision, compile=compile_what)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    settings = settings_of(params, "cd", epochs=2)
    ranks = on_two_ranks(
        tmp_path,
        train_with_fixed_views,
        settings,
        prepared,
        tmp_path / "two",
        device=torch.device("cuda", 0),
        timeout=600,
    )
    monkeypatch.setattr(aug, "view_maker", fixed_view_maker)
    single = train(settings, prepared, run_files(tmp_path / "one", settings), threads=1, progress=False)
    assert ranks[0]["processes"] == 2 and ranks[0]["device"] == "cuda:0"
    for name in ("loss", "instance", "feature", "entropy"):
        assert ranks[0]["final"][name] == pytest.approx(single["final"][name], rel=rel), name
    got = load(run_files(tmp_path / "two", settings).model)["model"]
    assert got.keys() == build_method(settings, 4).state_dict().keys(), "no _orig_mod. or module. prefix"


def train_then_stop_in_epoch(ranks: ddp.Ranks, settings, prepared: Path, root: Path, stop_in: int | None):
    """train(); with ``stop_in``, every rank stops (as a killed job would) at the end of that
    epoch, before its checkpoint. Returns the epochs checkpointed and whether it stopped."""
    saved: list[int] = []
    epochs_ended = itertools.count(1)
    real_states, real_save = random_state.augment_states, train_module.save_state

    def states_or_stop(generator, ranks):  # every rank calls it once an epoch, before the save
        if next(epochs_ended) == stop_in:
            raise InterruptedError(f"stopped in epoch {stop_in}")
        return real_states(generator, ranks)

    def save_and_note(path, state):
        real_save(path, state)
        if "epoch" in state:  # not the final model.pt
            saved.append(state["epoch"])

    random_state.augment_states, train_module.save_state = states_or_stop, save_and_note
    try:
        train(settings, prepared, run_files(root, settings), threads=1, progress=False, ranks=ranks)
    except InterruptedError:
        return {"saved": saved, "stopped": True}
    finally:
        random_state.augment_states, train_module.save_state = real_states, real_save
    return {"saved": saved, "stopped": False}


def test_two_ranks_resume_bit_identical_and_checkpoints_move_between_one_and_two_processes(params, prepared, tmp_path):
    settings = settings_of(params, "cd", epochs=2)
    straight = on_two_ranks(tmp_path, train_then_stop_in_epoch, settings, prepared, tmp_path / "straight", None)
    assert straight[0]["saved"] == [1, 2] and straight[1]["saved"] == [], "rank 0 alone checkpoints"

    stopped = on_two_ranks(tmp_path, train_then_stop_in_epoch, settings, prepared, tmp_path / "resumed", 2)
    assert all(r["stopped"] for r in stopped) and stopped[0]["saved"] == [1]
    run_dir = run_files(tmp_path / "resumed", settings).model.parent
    shutil.copytree(run_dir, tmp_path / "to-one" / "runs" / settings.run_id)  # for one process below
    resumed = on_two_ranks(tmp_path, train_then_stop_in_epoch, settings, prepared, tmp_path / "resumed", None)
    # Epoch 2 only: restored optimizer, schedule and every rank's generators decide it.
    assert resumed[0]["saved"] == [2], "resumed after epoch 1, not from scratch"
    expected = load(run_files(tmp_path / "straight", settings).model)["model"]
    got = load(run_files(tmp_path / "resumed", settings).model)["model"]
    for name in expected:
        assert torch.equal(got[name], expected[name]), f"{name} differs after resuming on two ranks"

    # A two-process checkpoint resumes in one process...
    one = train_then_stop_in_epoch(ddp.SINGLE, settings, prepared, tmp_path / "to-one", None)
    assert one["saved"] == [2]
    # ... and a one-process checkpoint on two.
    single_stop = train_then_stop_in_epoch(ddp.SINGLE, settings, prepared, tmp_path / "to-two", 2)
    assert single_stop == {"saved": [1], "stopped": True}
    two = on_two_ranks(tmp_path, train_then_stop_in_epoch, settings, prepared, tmp_path / "to-two", None)
    assert two[0]["saved"] == [2]
    assert load(run_files(tmp_path / "to-two", settings).model)["model"].keys() == expected.keys()


class NanOnRank1(ContrastiveDisentangling):
    """CD whose loss is NaN at the 6th step of rank 1 alone: a fault through the method seam."""

    name = "nan_on_rank_1"
    steps = itertools.count(1)

    def loss(self, out1, out2):
        terms = super().loss(out1, out2)
        if next(self.steps) == 6 and int(os.environ.get("RANK", "0")) == 1:
            terms["loss"] = terms["loss"] * float("nan")
        return terms


def train_with_nan_on_rank_1(ranks: ddp.Ranks, settings, prepared: Path, root: Path) -> str:
    METHODS[NanOnRank1.name] = NanOnRank1  # in this rank's process, whether forked or spawned
    try:
        train(settings, prepared, run_files(root, settings), threads=1, progress=False, ranks=ranks)
    except NonFiniteLoss as exc:
        return str(exc)
    return "finished"


def test_a_non_finite_loss_on_one_rank_stops_every_rank_at_that_step(params, prepared, tmp_path, monkeypatch):
    monkeypatch.setitem(METHODS, NanOnRank1.name, NanOnRank1)
    params["variants"]["nan_rank_1"] = dict(params["variants"]["cd"], method=NanOnRank1.name)
    settings = settings_of(params, "nan_rank_1", epochs=3)  # 4 steps an epoch: step 6 is epoch 2, step 2
    messages = on_two_ranks(tmp_path, train_with_nan_on_rank_1, settings, prepared, tmp_path)
    for message in messages:
        assert re.search(r"epoch 2, step 2 of 4\b", message), message
    assert load(run_files(tmp_path, settings).checkpoint)["epoch"] == 1


# --------------------------------------------------------------------------- cdrepro train


def digits_profile(root: Path, embedded: dict, *, epochs: int, gpus_per_run: int) -> tuple[Path, dict, str]:
    """The embedded digits at their own 8x8 size, a width-4 ResNet-18, batch 256 (7 steps)."""
    params = embedded
    params["profile"] = "ddp"
    params["results_dir"] = str(root / "results")
    params["model"]["backbone_width"] = 4
    params["train"].update(epochs=epochs, image_size=8, device="cpu", gpus_per_run=gpus_per_run)
    params["runs"] = [{"dataset": "digits", "batch_size": 256, "variant": "cd", "seed": 0}]
    params_file = root / "params.yaml"
    params_file.parent.mkdir(parents=True, exist_ok=True)
    params_file.write_text(yaml.safe_dump(validate_params(params), sort_keys=False))
    return params_file, params, "digits-bs256-cd-s0"


class Exec(Exception):
    """Stands in for os.execv: the command it would have become."""


def test_cdrepro_train_becomes_torchrun_when_gpus_per_run_is_above_one(embedded_params, tmp_path, monkeypatch):
    params_file, _, rid = digits_profile(tmp_path, embedded_params, epochs=1, gpus_per_run=2)
    monkeypatch.delenv("WORLD_SIZE", raising=False)

    def execve(path, argv, env):
        raise Exec(argv, env)

    monkeypatch.setattr(cli.os, "execve", execve)
    with pytest.raises(Exec) as became:
        cli.main(["train", "--params", str(params_file), "--run", rid, "--threads", "1"])
    argv, env = became.value.args
    assert argv == [
        sys.executable,
        "-m",
        "cdrepro.launcher",
        "--standalone",
        "--nproc-per-node=2",
        "-m",
        "cdrepro",
        "--",
        "train",
        "--params",
        str(params_file),
        "--run",
        rid,
        "--threads",
        "1",
    ]
    # torchrun keeps this pid (exec): its processes die with it (see test_distributed_kill.py).
    assert env[launcher.LAUNCHER_ENV] == str(os.getpid()) and launcher.LAUNCHER_ENV not in os.environ


def test_cdrepro_train_refuses_a_batch_that_does_not_split_among_gpus_per_run(embedded_params, tmp_path, capsys):
    params_file, params, rid = digits_profile(tmp_path, embedded_params, epochs=1, gpus_per_run=2)
    params["train"]["gpus_per_run"] = 3  # written unvalidated: the CLI's own check must catch it
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    assert cli.main(["train", "--params", str(params_file), "--run", rid]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train.gpus_per_run = 3" in err and "256" in err, err
    assert "runs[0].batch_size" in err  # names the key in the params file


@pytest.mark.slow
def test_cdrepro_train_on_two_processes_through_torchrun_resumes_after_sigterm(embedded_params, tmp_path):
    """gpus_per_run: 2 on the embedded digits; stopped with SIGTERM (what SLURM sends on
    pre-emption) after the first epoch, then run again. Slow: each start imports torch three
    times (torchrun and two processes), 20-30 s on two busy cores."""
    params_file, params, rid = digits_profile(tmp_path, embedded_params, epochs=2, gpus_per_run=2)
    assert cli.main(["prepare", "--params", str(params_file), "--dataset", "digits"]) == 0
    files = files_of(params, rid)
    command = [sys.executable, "-m", "cdrepro", "train", "--params", str(params_file), "--run", rid, "--threads", "1"]
    env = dict(os.environ, CDREPRO_TRACKING="off")

    log = tmp_path / "first.log"
    # cdrepro becomes torchrun (exec): the signal goes to torchrun, which stops its workers.
    signal_after_first_epoch(command, tmp_path, files.curves, log, signal.SIGTERM, timeout=240)
    text = log.read_text()
    assert "starting 2 training processes" in text, text[-3000:]
    assert load(files.checkpoint)["epoch"] == 1 and not files.model.exists(), text[-3000:]

    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count(f"resuming from {files.checkpoint} at epoch 1") == 1, "rank 0 alone reports"
    assert re.findall(rf"{rid} epoch (\d+)/2", again.stderr) == ["2"], again.stderr[-3000:]
    assert f"{rid}: trained 2 epochs" in again.stdout and "(2 processes)" in again.stdout

    summary = json.loads(files.summary.read_text())
    assert summary["processes"] == 2 and summary["epochs"] == 2 and summary["n_images"] == 1797
    settings = resolve_run(params, Run("digits", 256, "cd", 0))
    model = load(files.model)
    assert model["settings_digest"] == settings.digest()
    assert model["model"].keys() == build_method(settings, 4).state_dict().keys()
    # (A SIGTERM may leave the temporary file of a write it interrupted: dot-files are not listed.)
    assert sorted(p.name for p in files.model.parent.iterdir() if not p.name.startswith(".")) == [
        "checkpoint.pt",
        "curves.csv",
        "model.pt",
        "train.json",
    ]
