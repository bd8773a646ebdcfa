"""Why CD's feature loss stays near its chance value (issue 20, item 7): runs, probes, figure.

The feature loss is NT-Xent over the 2K columns of the two views' sigmoid outputs (cosine
similarity / tau_F). Its chance value, every logit equal, is ln(2K - 1). This script

* ``train``: trains one run exactly as ``cdrepro train`` does (``cdrepro.train.train``, same
  settings, same files in the run's folder) and, after every epoch, probes the checkpoint just
  written: on fixed probe batches (train-mode BatchNorm, as in the loss) it measures the cosine
  similarities between head columns (positives: head k of view 1 and of view 2; negatives: all
  other pairs), the per-column coefficient of variation, the Pearson correlations behind them,
  the last BatchNorm's gamma and beta, the kurtosis of the heads' pre-activations (3 for a
  Gaussian), the share of outputs within 0.1 of 1/2, and the analytic lower bounds below. It writes
  ``feature_probe.csv`` beside ``curves.csv``. ``--head-lr-mult M`` is an experiment switch only:
  for this process it replaces the optimiser by Adam with two groups, the feature predictor at
  M x lr (a temporary patch of ``cdrepro.train.make_optimizer``; the method is unchanged), so
  the run must live in a results_dir of its own.
* ``probe``: the same measurements on a finished run's model.pt (e.g. one ``cdrepro train`` made).
* ``bound``: the analytic numbers (chance, the bound for non-negative columns, the NE bound).
* ``figure``: feature loss and normalised entropy per epoch for the runs named, with the chance
  line and the bounds, from their curves.csv (and feature_probe.csv where present).

The bounds (2K rows i; s_ij = cos(c_i, c_j) / tau; p(i) the positive of i):
  (1) L_F = mean_i [ln sum_{j != i} e^{s_ij} - s_ip] >= ln(2K - 1) - mean_i [s_ip - mean_{j != i} s_ij]
      (Jensen: log-mean-exp >= mean).
  (2) Non-negative columns (sigmoid outputs) have cos in [0, 1], so the logits span at most
      1/tau: L_F >= ln(e^{1/tau} + 2K - 2) - 1/tau  (4.548 at K = 128, 5.237 at K = 256, tau 1).
  (3) With c_i = m_i / sqrt(m_i^2 + sd_i^2) the cosine of column i with the constant vector
      (m, sd: the column's mean and standard deviation over the batch) and cbar = mean_i c_i:
      sum_{i != j} cos_ij = |sum_i c_hat_i|^2 - 2K >= (2K cbar)^2 - 2K, and cos_ip <= 1, so
      L_F >= ln(2K - 1) - 2K / (2K - 1) * (1 - cbar^2) / tau.
      1 - c_i^2 = r_i^2 / (1 + r_i^2), r_i = sd_i / m_i the column's coefficient of variation.
  (4) The normalised entropy caps r: H_bits(1/2 + x) <= 1 - 2 x^2 / ln 2, so the mean squared
      distance of the outputs from 1/2 is at most (1 - NE) ln 2 / 2; near p = 1/2 that gives
      1 - cbar^2 ~ r^2 <~ 2 ln 2 (1 - NE), i.e. L_F >~ ln(2K - 1) - 2 ln 2 (1 - NE) / tau:
      0.055 nats of room at NE = 0.96, 0.18 at NE = 0.87, whatever the number of steps.
  (5) Why NE wins at lambda = tau = 1: to second order in r, L_F ~ ln(2K - 1) - r^2 drho / tau
      and lambda * NE ~ lambda (1 - r^2 / (2 ln 2)) (balanced heads, p near 1/2), where drho is
      the positives' Pearson correlation minus the negatives' mean. The heads' spread r grows
      only if drho > lambda tau / (2 ln 2) = 0.72 lambda tau; otherwise the total loss falls as
      the outputs are pulled to 1/2 (NE -> 1, L_F -> ln(2K - 1)), through the last BatchNorm's
      gamma or, as measured on CIFAR-10, through heavy-tailed pre-activations (most outputs at
      1/2, the unit variance carried by a few samples).
  (6) An ideal case: Gaussian heads p = sigmoid(gamma x + beta), x ~ N(0, 1) as the last
      BatchNorm makes it, identical in the two views, centred parts uncorrelated across heads
      (cos_neg = m^2 / E[p^2]). At lambda = tau = 1 the optimum of L_F - lambda NE with the
      heads kept balanced (beta = 0) is gamma 0.75, NE 0.915, only 0.10 nats below ln(2K - 1);
      with beta free it is gamma 1.8, beta -1.7 (heads mostly off), NE 0.57, 0.49 below. NE is
      flat in beta at beta = 0 while L_F falls as the mean drops (r = sd / mean grows), so the
      contrast pushes every beta down from the first step, but Adam moves a parameter by about
      lr per step at most: sum_t lr_t = 0.04-0.16 in the CPU runs, against the 1.7 needed.
      ``bound`` prints these numbers.

Commands that produced the runs and the figure in docs/evidence.md ("Why CD's feature loss
stays near its chance value"); machine: the project's 2-core CPU (shared), one thread per run,
one or two runs at a time. ``params`` writes the eight params files (params.yaml or
workflow/configs/quick-cpu.yaml with results_dir under --out, the variants below, seed 42):

    export CDREPRO_TRACKING=off; T=/tmp/cdfeat; B="python bench/cd_feature_loss.py"
    $B params --out $T     # digits.yaml: batch 128, K = 128, 25 epochs; variants cd, no_ne,
                           # ew025/ew05 (entropy_weight 0.25/0.5), tf05/tf02 (feature_temperature);
                           # digits-75ep.yaml (cd, 75 epochs); digits-headlr10.yaml (cd, no_ne);
                           # cifar.yaml: 200 images per class at 16 px, batch 256, K = 256,
                           # 40 epochs, the same variants; cifar-120ep.yaml; cifar-headlr10.yaml;
                           # digits-75ep-headlr10.yaml, cifar-120ep-headlr10.yaml (cd)
    A=$PWD/../shared/data/cifar10-train.tar.gz   # the first 200 images of each class:
    tar tzf $A | grep -E '^cifar10-train/[a-z]+/0[01][0-9]{2}[.]jpg$' > $T/subset.txt
    tar xzf $A -C $T -T $T/subset.txt
    for f in digits digits-75ep digits-headlr10 digits-75ep-headlr10; do
      cdrepro prepare --params $T/$f.yaml --dataset digits; done
    for f in cifar cifar-120ep cifar-headlr10 cifar-120ep-headlr10; do
      cdrepro prepare --params $T/$f.yaml --dataset cifar10; done
    for v in cd no_ne ew025 ew05 tf05 tf02; do
      $B train --params $T/digits.yaml --run digits-bs128-$v-s42
      $B train --params $T/cifar.yaml --run cifar10-bs256-$v-s42
    done
    $B train --params $T/digits-75ep.yaml --run digits-bs128-cd-s42
    $B train --params $T/cifar-120ep.yaml --run cifar10-bs256-cd-s42
    for v in cd no_ne; do $B train --params $T/digits-headlr10.yaml --run digits-bs128-$v-s42 --head-lr-mult 10; done
    $B train --params $T/cifar-headlr10.yaml --run cifar10-bs256-cd-s42 --head-lr-mult 10
    $B train --params $T/digits-75ep-headlr10.yaml --run digits-bs128-cd-s42 --head-lr-mult 10
    $B train --params $T/cifar-120ep-headlr10.yaml --run cifar10-bs256-cd-s42 --head-lr-mult 10
    # then, for every (params file, run) above: cdrepro evaluate --params FILE --run RUN --threads 1
    D=$T/results/embedded/runs; C=$T/results-cifar/quick-cpu/runs
    $B figure --out docs/img/cd-feature-loss.png \
      --run "cd=$D/digits-bs128-cd-s42" --run "no_ne=$D/digits-bs128-no_ne-s42" \
      --run "lambda 0.25=$D/digits-bs128-ew025-s42" --run "lambda 0.5=$D/digits-bs128-ew05-s42" \
      --run "tau_F 0.5=$D/digits-bs128-tf05-s42" --run "tau_F 0.2=$D/digits-bs128-tf02-s42" \
      --run "cd, 3x epochs=$T/results-75ep/embedded/runs/digits-bs128-cd-s42@--" \
      --run "cd, head lr x10=$T/results-headlr10/embedded/runs/digits-bs128-cd-s42@-." \
      --run "cd, 3x epochs, head lr x10=$T/results-75ep-headlr10/embedded/runs/digits-bs128-cd-s42@:" \
      --run "cd=$C/cifar10-bs256-cd-s42" --run "no_ne=$C/cifar10-bs256-no_ne-s42" \
      --run "lambda 0.25=$C/cifar10-bs256-ew025-s42" --run "lambda 0.5=$C/cifar10-bs256-ew05-s42" \
      --run "tau_F 0.5=$C/cifar10-bs256-tf05-s42" --run "tau_F 0.2=$C/cifar10-bs256-tf02-s42" \
      --run "cd, 3x epochs=$T/results-cifar-120ep/quick-cpu/runs/cifar10-bs256-cd-s42@--" \
      --run "cd, head lr x10=$T/results-cifar-headlr10/quick-cpu/runs/cifar10-bs256-cd-s42@-." \
      --run "cd, 3x epochs, head lr x10=$T/results-cifar-120ep-headlr10/quick-cpu/runs/cifar10-bs256-cd-s42@:"

``train`` gives the same weights and curves as ``cdrepro train`` for the same run (checked for
digits cd: curves.csv equal, model.pt byte-identical); it refuses a run folder that already
holds a run, because the probe needs every epoch.
Only the ``train`` subcommand trains; ``probe``, ``bound`` and ``figure`` take seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import math
import os
import sys
from pathlib import Path
from typing import Any

import torch

PROBE_BATCHES = 4  # fixed probe batches per measurement (the same images and views every epoch)
PROBE_SEED = 1234

PROBE_COLUMNS = [
    "epoch",
    "feature_loss",
    "feature_loss_tau1",
    "ne",
    "cos_pos_mean",
    "cos_pos_min",
    "cos_neg_mean",
    "cos_neg_p01",
    "cos_neg_min",
    "cos_neg_max",
    "logit_span",
    "cv_rms",
    "cbar",
    "rho_pos",
    "rho_neg",
    "drho",
    "pre_kurtosis",
    "near_half",
    "gamma_rms",
    "beta_rms",
    "beta_mean",
    "bound_jensen",
    "bound_nonneg",
    "bound_ne",
    "quadratic",
    "threshold_drho",
]


# ----------------------------------------------------------------------------- analytic bounds


def chance(k: int) -> float:
    """The feature loss when every logit of a row is equal: ln(2K - 1)."""
    return math.log(2 * k - 1)


def bound_nonneg(k: int, tau: float) -> float:
    """Lower bound for non-negative columns: cosines in [0, 1], positive at 1, negatives at 0."""
    return math.log(math.exp(1 / tau) + 2 * k - 2) - 1 / tau


def bound_cbar(k: int, tau: float, cbar: float) -> float:
    """Bound (3): Jensen + the columns' common component (cbar = mean cosine with the constant)."""
    return chance(k) - 2 * k / (2 * k - 1) * (1 - cbar**2) / tau


def bound_ne(k: int, tau: float, ne: float) -> float:
    """Bound (4), to second order around p = 1/2: the room NE leaves, 2 ln 2 (1 - NE) / tau."""
    return chance(k) - 2 * math.log(2) * (1 - ne) / tau


def gaussian_heads_optimum(
    k: int, tau: float, entropy_weight: float, free_beta: bool = True
) -> tuple[float, float, float, float]:
    """(6): heads p = sigmoid(gamma x + beta), x ~ N(0, 1) (the last BatchNorm's output),
    identical in the two views, centred parts uncorrelated across heads, so that
    cos_neg = m^2 / E[p^2]. The (gamma, beta) minimising L_F - lambda NE on a grid
    (beta = 0 only, if not ``free_beta``): returns gamma, beta, NE, L_F."""
    from statistics import NormalDist

    import numpy as np

    x = np.array([NormalDist().inv_cdf((i + 0.5) / 1000) for i in range(1000)])
    gammas = np.linspace(0.05, 4, 80)  # a grid: an optimum on its edge (gamma 4 or beta -4) means
    betas = np.linspace(-4, 0, 81) if free_beta else np.zeros(1)  # "further out": very sparse heads
    u = gammas[:, None, None] * x[None, None, :] + betas[None, :, None]
    p = np.clip(1 / (1 + np.exp(-u)), 1e-12, 1 - 1e-12)
    ne = ((-p * np.log(p) - (1 - p) * np.log(1 - p)) / math.log(2)).mean(axis=2)
    cos_neg = p.mean(axis=2) ** 2 / (p**2).mean(axis=2)
    lf = np.log(math.exp(1 / tau) + (2 * k - 2) * np.exp(cos_neg / tau)) - 1 / tau
    i, j = np.unravel_index(np.argmin(lf - entropy_weight * ne), lf.shape)
    return float(gammas[i]), float(betas[j]), float(ne[i, j]), float(lf[i, j])


def threshold_drho(entropy_weight: float, tau: float) -> float:
    """(5): the correlation gap drho above which the heads' scale grows: lambda tau / (2 ln 2)."""
    return entropy_weight * tau / (2 * math.log(2))


# ----------------------------------------------------------------------------- the probe


def head_statistics(f1: torch.Tensor, f2: torch.Tensor, tau: float) -> dict[str, float]:
    """Column statistics of one batch's sigmoid outputs f1, f2 (B, K) of the two views."""
    from cdrepro.losses import feature_loss, normalized_entropy

    k = f1.shape[1]
    cols = torch.cat([f1.T, f2.T], dim=0).double()  # (2K, B), rows = head columns
    unit = torch.nn.functional.normalize(cols, dim=1)
    cos = unit @ unit.T  # (2K, 2K)
    pos_index = torch.cat([torch.arange(k, 2 * k), torch.arange(0, k)])
    cos_pos = cos[torch.arange(2 * k), pos_index]  # (2K,)
    neg_mask = ~torch.eye(2 * k, dtype=torch.bool)
    neg_mask[torch.arange(2 * k), pos_index] = False
    cos_neg = cos[neg_mask]  # (2K * (2K - 2),)
    centred = cols - cols.mean(dim=1, keepdim=True)
    corr = torch.nn.functional.normalize(centred, dim=1) @ torch.nn.functional.normalize(centred, dim=1).T
    rho_pos = corr[torch.arange(2 * k), pos_index]
    rho_neg = corr[neg_mask]
    mean, sd = cols.mean(dim=1), cols.std(dim=1, unbiased=False)
    c = mean / torch.sqrt(mean**2 + sd**2)  # cosine of each column with the constant vector
    cbar = float(c.mean())
    # the widest logit span any row has: its largest minus smallest cosine (self excluded)
    off = cos.masked_fill(torch.eye(2 * k, dtype=torch.bool), float("nan"))
    span = (torch.nan_to_num(off, nan=-2).amax(dim=1) - torch.nan_to_num(off, nan=2).amin(dim=1)).max()
    return {
        "feature_loss": float(feature_loss(f1, f2, tau)),
        "feature_loss_tau1": float(feature_loss(f1, f2, 1.0)),
        "ne": float(normalized_entropy(f1, f2)),
        "cos_pos_mean": float(cos_pos.mean()),
        "cos_pos_min": float(cos_pos.min()),
        "cos_neg_mean": float(cos_neg.mean()),
        "cos_neg_p01": float(torch.quantile(cos_neg, 0.01)),
        "cos_neg_min": float(cos_neg.min()),
        "cos_neg_max": float(cos_neg.max()),
        "logit_span": float(span) / tau,
        "cv_rms": float(torch.sqrt(((sd / mean) ** 2).mean())),
        "cbar": cbar,
        "rho_pos": float(rho_pos.mean()),
        "rho_neg": float(rho_neg.mean()),
        "drho": float(rho_pos.mean() - rho_neg.mean()),
    }


def probe_batches(settings, images: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """PROBE_BATCHES fixed batches of two augmented views, the same at every epoch."""
    from cdrepro import augment as aug
    from cdrepro.step import augment_config, make_views

    gen = torch.Generator().manual_seed(PROBE_SEED)
    make_view = aug.view_maker(augment_config(settings))
    b = settings.batch_size
    batches = []
    for _ in range(PROBE_BATCHES):
        idx = torch.randperm(len(images), generator=gen)[:b]
        x = aug.to_float(images[idx])
        batches.append(make_views(x, settings.views, settings.image_size, make_view, gen))
    return batches


def probe_model(settings, num_classes: int, state: dict[str, torch.Tensor], batches, epoch: int) -> dict[str, float]:
    """The probe's row for the weights ``state``: statistics averaged over the probe batches."""
    from cdrepro.methods import build_method

    opts = settings.options
    tau, lam = opts["feature_temperature"], opts["entropy_weight"] if opts["entropy"] else 0.0
    with torch.random.fork_rng(devices=[]):  # never disturb the training's RNG
        model = build_method(settings, num_classes)
    model.load_state_dict(state)
    model.train()  # batch statistics, as in the loss; this copy's running stats are thrown away
    rows = []
    pre_sigmoid = model.feature_predictor[:-1]  # the heads' pre-activations (after the last BN)
    with torch.no_grad():
        for view1, view2 in batches:
            out1, out2 = model(view1), model(view2)
            stats = head_statistics(out1["f"], out2["f"], tau)
            u = torch.cat([pre_sigmoid(out1["z"]), pre_sigmoid(out2["z"])], dim=0).double()  # (2B, K)
            u = u - u.mean(dim=0)
            stats["pre_kurtosis"] = float(((u**4).mean(dim=0) / (u**2).mean(dim=0) ** 2).mean())
            f = torch.cat([out1["f"], out2["f"]], dim=0)
            stats["near_half"] = float(((f - 0.5).abs() < 0.1).double().mean())
            rows.append(stats)
    row: dict[str, float] = {"epoch": epoch}
    for key in rows[0]:
        row[key] = sum(r[key] for r in rows) / len(rows)
    k = opts["feature_num"]
    last = model.feature_predictor[-2]
    if isinstance(last, torch.nn.BatchNorm1d):
        row["gamma_rms"] = float(last.weight.detach().pow(2).mean().sqrt())
        row["beta_rms"] = float(last.bias.detach().pow(2).mean().sqrt())
        row["beta_mean"] = float(last.bias.detach().mean())
    else:
        row["gamma_rms"] = row["beta_rms"] = row["beta_mean"] = float("nan")
    row["bound_jensen"] = bound_cbar(k, tau, row["cbar"])
    row["bound_nonneg"] = bound_nonneg(k, tau)
    row["bound_ne"] = bound_ne(k, tau, row["ne"])
    row["quadratic"] = chance(k) - row["cv_rms"] ** 2 * row["drho"] / tau
    row["threshold_drho"] = threshold_drho(lam, tau)
    return row


def _write_rows(path: Path, rows: list[dict[str, float]]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=PROBE_COLUMNS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def _context(params_file: str, run_id: str):
    from cdrepro import config as cfg
    from cdrepro.data.prepared import load_prepared
    from cdrepro.runs import ProfilePaths

    try:
        from cdrepro.run_settings import find_run, resolve_run
    except ImportError:  # before run_settings was split out of config
        find_run, resolve_run = cfg.find_run, cfg.resolve_run

    params = cfg.load_params(params_file)
    paths = ProfilePaths.from_params(params)
    settings = resolve_run(params, find_run(params, run_id))
    if settings.method != "cd" or not settings.options.get("head", False):
        sys.exit(f"{run_id}: not a CD run with feature heads")
    data = load_prepared(paths.prepared(settings.dataset))
    return params, paths, settings, data


class ProbeSink:
    """cdrepro.train's EpochSink: after each epoch, probe the checkpoint train() has just written."""

    def __init__(self, settings, data, checkpoint: Path, out: Path) -> None:
        self.settings, self.data, self.checkpoint, self.out = settings, data, checkpoint, out
        self.batches = probe_batches(settings, torch.from_numpy(data.images))
        self.rows: list[dict[str, float]] = []

    def start(self, history) -> None:
        if history:
            sys.exit(f"{self.checkpoint} exists: the probe needs a run trained from the start")
        with torch.random.fork_rng(devices=[]):  # the initial weights, as setup() drew them
            from cdrepro.methods import build_method

            torch.manual_seed(self.settings.seed)
            init = build_method(self.settings, self.data.num_classes).state_dict()
        self.rows.append(probe_model(self.settings, self.data.num_classes, init, self.batches, 0))

    def log_epoch(self, row) -> None:
        from cdrepro.checkpoint import load_weights_only

        state = load_weights_only(self.checkpoint)["model"]
        self.rows.append(probe_model(self.settings, self.data.num_classes, state, self.batches, int(row["epoch"])))
        _write_rows(self.out, self.rows)


def _two_group_adam(multiplier: float):
    from cdrepro.step import run_settings_of

    def make_optimizer(method, fused: bool = False) -> torch.optim.Adam:
        settings = run_settings_of(method)
        head = list(method.feature_predictor.parameters())
        ids = {id(p) for p in head}
        rest = [p for p in method.parameters() if id(p) not in ids]
        return torch.optim.Adam(
            [{"params": rest}, {"params": head, "lr": settings.lr * multiplier}],
            lr=settings.lr,
            weight_decay=settings.weight_decay,
            fused=fused,
        )

    return make_optimizer


VARIANTS = {  # name: CD's options on top of the cd variant
    "cd": {},
    "no_ne": {"entropy": False},
    "ew025": {"entropy_weight": 0.25},
    "ew05": {"entropy_weight": 0.5},
    "tf05": {"feature_temperature": 0.5},
    "tf02": {"feature_temperature": 0.2},
}


def cmd_params(args: argparse.Namespace) -> None:
    """The params files of the runs in docs/evidence.md, under --out (results_dir there too)."""
    import yaml

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    root = Path(__file__).resolve().parent.parent

    def write(
        name: str, base: str, results: str, epochs: int | None, variants: list[str], dataset: str, batch: int, edit=None
    ) -> None:
        p = yaml.safe_load((root / base).read_text())
        p["results_dir"] = str(out / results)
        if epochs:
            p["train"]["epochs"] = epochs
        cd = {k: v for k, v in p["variants"]["cd"].items()}
        p["variants"] = {v: {**cd, **VARIANTS[v]} for v in variants}
        p["runs"] = [{"dataset": dataset, "batch_size": batch, "variant": v, "seed": 42} for v in variants]
        if edit:
            edit(p)
        (out / f"{name}.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
        print(out / f"{name}.yaml")

    def cifar_subset(p):
        p["datasets"]["cifar10"]["path"] = str(out / "cifar10-train")
        p["datasets"]["cifar10"]["images_per_class"] = 200

    digits_variants = ["cd", "no_ne", "ew025", "ew05", "tf05", "tf02"]
    cifar_variants = ["cd", "no_ne", "tf05", "tf02", "ew025", "ew05"]
    write("digits", "params.yaml", "results", None, digits_variants, "digits", 128)
    write("digits-75ep", "params.yaml", "results-75ep", 75, ["cd"], "digits", 128)
    write("digits-headlr10", "params.yaml", "results-headlr10", None, ["cd", "no_ne"], "digits", 128)
    write("digits-75ep-headlr10", "params.yaml", "results-75ep-headlr10", 75, ["cd"], "digits", 128)
    write("cifar", "workflow/configs/quick-cpu.yaml", "results-cifar", 40, cifar_variants, "cifar10", 256, cifar_subset)
    write(
        "cifar-120ep",
        "workflow/configs/quick-cpu.yaml",
        "results-cifar-120ep",
        120,
        ["cd"],
        "cifar10",
        256,
        cifar_subset,
    )
    write(
        "cifar-headlr10",
        "workflow/configs/quick-cpu.yaml",
        "results-cifar-headlr10",
        40,
        ["cd"],
        "cifar10",
        256,
        cifar_subset,
    )
    write(
        "cifar-120ep-headlr10",
        "workflow/configs/quick-cpu.yaml",
        "results-cifar-120ep-headlr10",
        120,
        ["cd"],
        "cifar10",
        256,
        cifar_subset,
    )


def cmd_train(args: argparse.Namespace) -> None:
    import cdrepro.train as tr
    from cdrepro.train import RunFiles

    params, paths, settings, data = _context(args.params, args.run)
    files = RunFiles(
        paths.checkpoint(args.run), paths.model(args.run), paths.curves(args.run), paths.train_summary(args.run)
    )
    files.model.parent.mkdir(parents=True, exist_ok=True)
    if files.checkpoint.exists() or files.model.exists():
        sys.exit(f"{files.model.parent} already holds a run: the probe needs a fresh one")
    if args.head_lr_mult != 1.0:
        tr.make_optimizer = _two_group_adam(args.head_lr_mult)  # this process only
    sink = ProbeSink(settings, data, files.checkpoint, files.model.parent / "feature_probe.csv")
    summary = tr.train(
        settings, paths.prepared(settings.dataset), files, threads=args.threads, progress=False, sink=sink
    )
    print(f"{args.run}: trained {summary['epochs']} epochs in {summary['train_seconds']} s; probe -> {sink.out}")


def cmd_probe(args: argparse.Namespace) -> None:
    from cdrepro.checkpoint import load_weights_only

    params, paths, settings, data = _context(args.params, args.run)
    batches = probe_batches(settings, torch.from_numpy(data.images))
    state = load_weights_only(paths.model(args.run))["model"]
    row = probe_model(settings, data.num_classes, state, batches, settings.epochs)
    for key in PROBE_COLUMNS:
        print(f"{key:16s} {row[key]:.4f}" if isinstance(row[key], float) else f"{key:16s} {row[key]}")


def cmd_bound(args: argparse.Namespace) -> None:
    for k in args.k:
        print(f"K = {k}: chance ln(2K-1) = {chance(k):.4f}")
        for tau in args.tau:
            print(
                f"  tau {tau}: non-negative bound {bound_nonneg(k, tau):.4f}; "
                + "; ".join(f"NE {ne}: {bound_ne(k, tau, ne):.4f}" for ne in (0.84, 0.87, 0.96))
            )
    for lam in (1.0, 0.5, 0.25):
        print(
            f"lambda {lam}: drho threshold "
            + ", ".join(f"tau {tau}: {threshold_drho(lam, tau):.3f}" for tau in args.tau)
        )
    print("ideal case (6): the optimum of L_F - lambda NE for Gaussian heads sigmoid(gamma x + beta)")
    for k in args.k:
        for tau in args.tau:
            for lam in (1.0, 0.5, 0.25, 0.0):
                g0, _, ne0, lf0 = gaussian_heads_optimum(k, tau, lam, free_beta=False)
                g, b, ne, lf = gaussian_heads_optimum(k, tau, lam)
                print(
                    f"  K {k} tau {tau} lambda {lam}: beta = 0: gamma {g0:.2f}, NE {ne0:.3f}, "
                    f"chance - {chance(k) - lf0:.3f}; free beta: gamma {g:.2f}, beta {b:.2f}, "
                    f"NE {ne:.3f}, chance - {chance(k) - lf:.3f}"
                )


# ----------------------------------------------------------------------------- the figure


def _read_csv(path: Path) -> list[dict[str, float]]:
    with open(path) as fh:
        return [{k: float(v) for k, v in r.items() if v != ""} for r in csv.DictReader(fh)]


def cmd_figure(args: argparse.Namespace) -> None:
    """One column per dataset (K): feature loss per epoch above, normalised entropy below."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = []
    for spec in args.run:
        label, _, rest = spec.partition("=")
        folder, _, style = rest.partition("@")
        folder = Path(folder)
        settings = json.loads((folder / "train.json").read_text())["settings"]
        probe = folder / "feature_probe.csv"
        runs.append(
            (
                label,
                settings,
                _read_csv(folder / "curves.csv"),
                _read_csv(probe) if probe.exists() else None,
                style or "-",
            )
        )
    groups: dict[tuple[str, int], list] = {}
    for run in runs:
        groups.setdefault((run[1]["dataset"], run[1]["feature_num"]), []).append(run)
    fig, axes = plt.subplots(
        2,
        len(groups),
        figsize=(args.width / args.dpi, args.height / args.dpi),
        dpi=args.dpi,
        squeeze=False,
        sharex="col",
        gridspec_kw={"height_ratios": [1.6, 1]},
    )
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colour_of = {label: colours[i % len(colours)] for i, label in enumerate(dict.fromkeys(r[0] for r in runs))}
    for col, ((dataset, k), members) in enumerate(groups.items()):
        top, bottom = axes[0][col], axes[1][col]
        top.axhline(chance(k), color="black", lw=1.2, label="chance ln(2K-1)")
        top.axhline(bound_nonneg(k, 1.0), color="grey", lw=1, ls="--", label="bound (2): cos in [0,1], tau 1")
        for label, _settings, curves, probe, style in members:
            colour = colour_of[label]
            epochs = [r["epoch"] for r in curves]
            top.plot(epochs, [r["feature"] for r in curves], color=colour, lw=1.5, ls=style, label=label)
            if probe:  # bound (3) from the measured columns, at the run's own tau
                top.plot([r["epoch"] for r in probe], [r["bound_jensen"] for r in probe], color=colour, lw=0.8, ls=":")
            bottom.plot(epochs, [r["entropy"] for r in curves], color=colour, lw=1.5, ls=style)
        top.set_title(
            f"{dataset}, K = {k}: feature loss at the run's tau_F (chance "
            f"{chance(k):.2f}, bound (2) {bound_nonneg(k, 1.0):.2f});\n"
            "dotted: each run's bound (3) from its measured columns",
            fontsize=8.3,
        )
        top.tick_params(labelsize=7.5)
        bottom.set_title("heads' normalised entropy", fontsize=8.5)
        bottom.set_xlabel("epoch", fontsize=8)
        bottom.tick_params(labelsize=7.5)
    handles: dict[str, Any] = {}
    for ax in axes[0]:  # one legend for all panels, below them: the lines stay visible
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    fig.legend(
        list(handles.values()), list(handles), loc="lower center", ncol=6, fontsize=6.8, frameon=False, handlelength=2.6
    )
    fig.tight_layout(pad=0.6, h_pad=0.4, w_pad=0.8, rect=(0, 0.075, 1, 1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=args.dpi)
    print(f"wrote {args.out}")


def main() -> None:
    os.environ.setdefault("CDREPRO_TRACKING", "off")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train one CD run as cdrepro train does, probing every epoch")
    p.add_argument("--params", required=True)
    p.add_argument("--run", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--head-lr-mult",
        type=float,
        default=1.0,
        help="experiment only: the feature predictor's lr x this (temporary patch)",
    )
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("params", help="write the params files of the runs in docs/evidence.md")
    p.add_argument("--out", default="/tmp/cdfeat")
    p.set_defaults(func=cmd_params)
    p = sub.add_parser("probe", help="probe a finished run's model.pt")
    p.add_argument("--params", required=True)
    p.add_argument("--run", required=True)
    p.set_defaults(func=cmd_probe)
    p = sub.add_parser("bound", help="the analytic numbers")
    p.add_argument("--k", type=int, nargs="+", default=[128, 256])
    p.add_argument("--tau", type=float, nargs="+", default=[1.0, 0.5, 0.2])
    p.set_defaults(func=cmd_bound)
    p = sub.add_parser("figure", help="feature loss and NE per epoch, with chance and bounds")
    p.add_argument(
        "--run",
        action="append",
        required=True,
        help="LABEL=RUN_FOLDER[@LINESTYLE] (repeat; runs are grouped by dataset and K)",
    )
    p.add_argument("--out", required=True)
    p.add_argument("--width", type=int, default=900)
    p.add_argument("--height", type=int, default=540)
    p.add_argument("--dpi", type=int, default=90)
    p.set_defaults(func=cmd_figure)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        args.func(args)


if __name__ == "__main__":
    main()
