"""The quick profile's six runs on one GPU inside one command's time budget (issue 20), run by
``bash bench/gpu_session.sh quick``; every phase has a deadline, so a slow machine gets fewer
epochs, not an overrun.

Phases (seconds from the script's start; BUDGET_S = 510 of a 540-s command by default):
  1. setup     unpack the archive, derive the params from workflow/configs/quick.yaml
               (bench/quick_params.py); ``cdrepro prepare``, ``split`` and ``baseline`` start in the
               background (CPU only) and run on through phases 2 and 3.
  2. probe     bench/packing_probe.py: 1, 2, 3 and 6 processes at once, each timing every run's
               real step for 1 s (--probe-seconds); rank 0 alone also times model-only and
               augment-only steps, profiles kernels and counts FLOPs. Ends by --probe-max-s (150).
  3. plan      for each packing factor p: p slots, the runs spread over them by cost; the epochs
               E that let the slowest slot end (start-up, E epochs at the rate measured at p, the
               last evaluation) before the budget less REPORT_S, times MARGIN. The p with the
               most epochs wins; every run gets the same E (one protocol for every method).
  4. train     the slots run ``cdrepro train`` one run after another; each finished run is
               evaluated in the background while the slot trains its next run. A run still
               training at the deadline is stopped and reported as such.
  5. report    the methods table (of the runs evaluated), the training curves, a summary of
               rates, memory and what bounds the step (summary.md, summary.json).
Everything lands in --out; gpu_session.sh packs it as one tarball.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import quick_params  # noqa: E402  (bench/ is not a package)

PY = sys.executable


@dataclass
class Clock:
    """The budget, counted from the shell script's start."""

    started: float
    budget: float

    def elapsed(self) -> float:
        return time.time() - self.started

    def until(self, at: float) -> float:
        """Seconds from now to ``at`` seconds after the start (negative: past)."""
        return self.started + at - time.time()


CLOCK = Clock(time.time(), 510.0)


def log(message: str) -> None:
    print(f"[{CLOCK.elapsed():6.1f} s] {message}", flush=True)


def cdrepro(*args: str) -> list[str]:
    return [PY, "-m", "cdrepro", *args]


def run_logged(command: list[str], log_path: Path, timeout: float, env: dict | None = None) -> dict[str, Any]:
    """Run ``command`` to ``log_path`` within ``timeout`` seconds; its exit status and wall time
    (status None: stopped at the deadline)."""
    started = time.time()
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        status = wait_or_stop(proc, timeout)
    return {"status": status, "wall_s": round(time.time() - started, 2), "log": log_path.name}


def wait_or_stop(proc: subprocess.Popen, timeout: float) -> int | None:
    """The exit status, or None after stopping the process group at ``timeout`` (TERM, then KILL)."""
    try:
        return proc.wait(timeout=max(timeout, 0.1))
    except subprocess.TimeoutExpired:
        for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=grace)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        return None


# --------------------------------------------------------------------------- 1. setup


@dataclass
class Session:
    args: argparse.Namespace
    out: Path
    logs: Path
    params_path: Path
    params: dict[str, Any]
    runs: list[str]
    background: dict[str, Any] = field(default_factory=dict)


def unpack(args: argparse.Namespace, data_dir: Path) -> Path:
    """The archive's ``cifar10-train/<class>/<image>`` under ``data_dir`` (once)."""
    folder = data_dir / "cifar10-train"
    if not folder.is_dir():
        data_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(["tar", "xzf", str(args.archive), "-C", str(data_dir)], check=True)
    if not folder.is_dir():
        raise SystemExit(f"{args.archive} holds no cifar10-train/ folder")
    return folder


def write_params(
    s_args: argparse.Namespace, folder: Path, epochs: int, path: Path, runs: list[str] | None = None
) -> dict[str, Any]:
    """quick.yaml's params for this session (bench/quick_params.py), ``runs`` only if given."""
    base = yaml.safe_load(quick_params.BASE.read_text())
    params = quick_params.derive(
        base,
        str(folder),
        epochs,
        s_args.device,
        s_args.images_per_class,
        results_dir=str(s_args.work),
        sets=tuple(s_args.sets),
        batch_size=s_args.batch_size,
    )
    if runs is not None:
        params["runs"] = [r for r in params["runs"] if run_id_of(r) in runs]
    # Atomic: the background baseline may be reading this file when the plan rewrites it.
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        f"# Derived from {quick_params.BASE.name} by bench/quick_session.py\n" + yaml.safe_dump(params, sort_keys=False)
    )
    os.replace(tmp, path)
    return params


def run_id_of(raw: dict[str, Any]) -> str:
    from cdrepro.runs import Run, run_id

    return run_id(Run(raw["dataset"], raw["batch_size"], raw["variant"], raw["seed"]))


def prepare_in_background(s: Session) -> threading.Thread:
    """``prepare``, ``split`` then ``baseline``, on the CPU, while the GPU is probed and trains."""
    params = ["--params", str(s.params_path)]
    # A few BLAS threads for the baseline's K-means: the training processes need CPU too.
    env = dict(os.environ, OMP_NUM_THREADS=str(s.args.baseline_threads))

    def work() -> None:
        s.background["prepare"] = run_logged(
            cdrepro("prepare", *params, "--dataset", "cifar10"), s.logs / "prepare.log", CLOCK.until(s.args.budget)
        )
        if s.background["prepare"]["status"] == 0:
            # The held-out split evaluation reads (seconds: CIFAR-10's official test split).
            s.background["split"] = run_logged(
                cdrepro("split", *params, "--dataset", "cifar10"), s.logs / "split.log", CLOCK.until(s.args.budget)
            )
            s.background["baseline"] = run_logged(
                cdrepro("baseline", *params, "--dataset", "cifar10"),
                s.logs / "baseline.log",
                CLOCK.until(s.args.budget),
                env,
            )

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def setup(args: argparse.Namespace) -> tuple[Session, threading.Thread]:
    out = Path(args.out)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    folder = unpack(args, Path(args.data_dir))
    params_path = out / "quick-gpu.yaml"
    params = write_params(args, folder, args.max_epochs, params_path)
    if args.threads is None:  # as the workflow gives each job
        args.threads = params["train"]["cpu_threads"]
    s = Session(args, out, logs, params_path, params, [run_id_of(r) for r in params["runs"]])
    s.background["folder"] = str(folder)
    log(f"setup: {len(s.runs)} runs, params {params_path}")
    return s, prepare_in_background(s)


# --------------------------------------------------------------------------- 2. probe


def probe(s: Session) -> dict[str, Any]:
    """Start the probe's processes together; merge what they wrote by the probe's deadline."""
    a = s.args
    rates = run_probe(
        s.params_path,
        s.runs,
        a.packs,
        s.out,
        s.logs,
        seconds=a.probe_seconds,
        warmup=a.probe_warmup,
        threads=a.threads,
        deadline=CLOCK.started + a.probe_max_s,
    )
    (s.out / "rates.json").write_text(json.dumps(rates, indent=2) + "\n")
    log(f"probe: exit {rates['statuses']}; total pairs/s by packing factor {rates['total_pairs_per_s']}")
    return rates


def run_probe(
    params_path: Path,
    runs: list[str],
    packs: list[int],
    out: Path,
    logs: Path,
    *,
    seconds: float,
    warmup: int,
    threads: int | None,
    deadline: float,
    name: str = "probe",
) -> dict[str, Any]:
    """bench/packing_probe.py in max(packs) processes started together, rank 0 also timing what
    bounds the step; each stopped at ``deadline`` (epoch seconds). Their JSON files
    (``<name>-rank<r>.json`` in ``out``) merged by ``merge_probe``."""
    sync_dir = out / f"{name}-sync"
    shutil.rmtree(sync_dir, ignore_errors=True)
    sync_dir.mkdir()
    procs = []
    for rank in range(max(packs)):
        command = [
            PY,
            str(BENCH / "packing_probe.py"),
            "--params",
            str(params_path),
            "--runs",
            ",".join(runs),
            "--rank",
            str(rank),
            "--packs",
            ",".join(map(str, packs)),
            "--sync-dir",
            str(sync_dir),
            "--seconds",
            str(seconds),
            "--warmup",
            str(warmup),
            "--launched-at",
            str(time.time()),
            "--json",
            str(out / f"{name}-rank{rank}.json"),
        ]
        command += ["--anatomy"] * (rank == 0) + (["--threads", str(threads)] if threads else [])
        with open(logs / f"{name}-rank{rank}.log", "wb") as log_file:  # the process keeps its own copy
            procs.append(subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True))
    statuses = [wait_or_stop(proc, deadline - time.time()) for proc in procs]
    shutil.rmtree(sync_dir, ignore_errors=True)
    return merge_probe([out / f"{name}-rank{r}.json" for r in range(len(procs))], statuses)


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def merge_probe(paths: list[Path], statuses: list[int | None]) -> dict[str, Any]:
    """Per packing factor and run: each process's pairs/s, their total, memory; and the mean
    total over runs (``total_pairs_per_s``) for the packing factors every run was timed at."""
    ranks = [read_json(p) for p in paths]
    packs: dict[str, dict[str, Any]] = {}
    for rank in ranks:
        for p, runs in rank.get("packs", {}).items():
            for rid, result in runs.items():
                packs.setdefault(p, {}).setdefault(rid, []).append(result)
    merged = {p: {rid: summarize_run(results) for rid, results in runs.items()} for p, runs in packs.items()}
    complete = {p: runs for p, runs in merged.items() if runs and all(r["processes"] == int(p) for r in runs.values())}
    totals = {
        p: round(sum(r["total_pairs_per_s"] for r in runs.values()) / len(runs), 1)
        for p, runs in sorted(complete.items(), key=lambda kv: int(kv[0]))
    }
    return {
        "statuses": statuses,
        "ranks": ranks,
        "packs": merged,
        "total_pairs_per_s": totals,
        "anatomy": ranks[0].get("anatomy", {}) if ranks else {},
        "ready_s": [r.get("ready_s") for r in ranks],
        "first_step_s": [r.get("first_step_s") for r in ranks],
    }


def summarize_run(results: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [r["pairs_per_s"] for r in results]
    peaks = [r.get("peak_allocated_gib") for r in results if r.get("peak_allocated_gib") is not None]
    used = [r.get("device_used_gib") for r in results if r.get("device_used_gib") is not None]
    return {
        "processes": len(results),
        "per_process_pairs_per_s": rates,
        "total_pairs_per_s": round(sum(rates), 1),
        "ms_per_step": [r["ms_per_step"] for r in results],
        "peak_allocated_gib_per_process": max(peaks) if peaks else None,
        "device_used_gib": max(used) if used else None,
    }


# --------------------------------------------------------------------------- 3. plan


def spread(costs: dict[str, float], slots: int) -> list[list[str]]:
    """Runs over ``slots`` by cost, dearest first, each to the least loaded slot."""
    loads, assigned = [0.0] * slots, [[] for _ in range(slots)]
    for rid in sorted(costs, key=costs.get, reverse=True):
        k = loads.index(min(loads))
        assigned[k].append(rid)
        loads[k] += costs[rid]
    return [a for a in assigned if a]


def plan_for(p: int, epoch_s: dict[str, float], available: float, a: argparse.Namespace) -> dict[str, Any]:
    """The epochs E that fit ``available`` seconds with p runs at once: per slot, start-up per
    run, E epochs of each, the last evaluation; times the margin."""
    slots = spread(epoch_s, p)
    fits = [
        a.margin * (available - len(runs) * a.startup_s - a.eval_s) / sum(epoch_s[r] for r in runs) for runs in slots
    ]
    epochs = max(a.min_epochs, min(a.max_epochs, math.floor(min(fits))))
    predicted = max(len(runs) * a.startup_s + epochs * sum(epoch_s[r] for r in runs) + a.eval_s for runs in slots)
    return {
        "packing": p,
        "slots": slots,
        "epochs": epochs,
        "epochs_that_fit": round(min(fits), 2),
        "epoch_s": {r: round(v, 2) for r, v in epoch_s.items()},
        "predicted_s": round(predicted, 1),
    }


def epoch_seconds(
    rates: dict[str, Any], p: str, pairs_per_epoch: int, a: argparse.Namespace
) -> dict[str, float] | None:
    """Each run's predicted seconds per epoch at packing ``p`` (its slowest process's rate)."""
    runs = rates["packs"].get(p, {})
    if not runs or rates["total_pairs_per_s"].get(p) is None:
        return None
    return {rid: pairs_per_epoch / min(r["per_process_pairs_per_s"]) + a.epoch_overhead_s for rid, r in runs.items()}


def plan(s: Session, rates: dict[str, Any], n_images: int) -> dict[str, Any]:
    a = s.args
    batch = max(r["batch_size"] for r in s.params["runs"])
    pairs_per_epoch = (n_images // batch) * batch
    available = CLOCK.until(a.budget - a.report_s)
    options = []
    for p in map(str, a.packs):
        epoch_s = epoch_seconds(rates, p, pairs_per_epoch, a)
        if epoch_s and set(epoch_s) == set(s.runs):
            options.append(plan_for(int(p), epoch_s, available, a))
    fallback = not options
    if fallback:  # the probe measured nothing usable: one at a time, at an assumed rate
        options = [
            plan_for(1, {r: pairs_per_epoch / a.fallback_rate + a.epoch_overhead_s for r in s.runs}, available, a)
        ]
    best = max(options, key=lambda o: (o["epochs"], -o["predicted_s"]))  # most epochs, then soonest done
    chosen = {
        **best,
        "options": options,
        "available_s": round(available, 1),
        "n_images": n_images,
        "pairs_per_epoch": pairs_per_epoch,
        "fallback_rate_used": fallback,
        "startup_s": a.startup_s,
        "eval_s": a.eval_s,
        "margin": a.margin,
        "report_s": a.report_s,
        "budget_s": a.budget,
        "at_s": round(CLOCK.elapsed(), 1),
    }
    (s.out / "plan.json").write_text(json.dumps(chosen, indent=2) + "\n")
    log(
        f"plan: packing {best['packing']}, {best['epochs']} epochs (fits {best['epochs_that_fit']}), "
        f"slots {best['slots']}, predicted {best['predicted_s']} s of {available:.0f} s"
    )
    return chosen


def prepared_images(s: Session) -> int:
    """The prepared dataset's size, once ``prepare`` has written it (waits for it)."""
    from cdrepro.runs import ProfilePaths

    meta = ProfilePaths.from_params(s.params).prepared_meta("cifar10")
    deadline = time.time() + CLOCK.until(s.args.budget - s.args.report_s)
    while "prepare" not in s.background and time.time() < deadline:
        time.sleep(0.5)
    if s.background.get("prepare", {}).get("status") != 0:
        raise SystemExit(f"prepare failed or did not finish: {s.background.get('prepare')}; see logs/prepare.log")
    return int(json.loads(meta.read_text())["n_images"])


# --------------------------------------------------------------------------- 4. train


def train_slot(
    s: Session, runs: list[str], epoch_s: dict[str, float], epochs: int, outcomes: dict[str, Any], evaluations: list
) -> None:
    """The slot's runs one after another; each trained run's evaluation starts in the background."""
    a = s.args
    deadline = a.budget - a.report_s
    params = ["--params", str(s.params_path)] + (["--threads", str(a.threads)] if a.threads else [])
    for rid in runs:
        # Not started unless it can end: a run stopped at the deadline only slows the others.
        needed = 0.9 * (a.startup_s + epochs * epoch_s[rid])
        if CLOCK.until(deadline) < needed:
            outcomes[rid] = {"train": {"status": None, "skipped": f"{needed:.0f} s needed, less left"}}
            log(f"train {rid}: skipped, {needed:.0f} s needed")
            continue
        log(f"train {rid}")
        outcomes[rid] = {
            "train": run_logged(
                cdrepro("train", *params, "--run", rid), s.logs / f"train-{rid}.log", CLOCK.until(deadline)
            )
        }
        if outcomes[rid]["train"]["status"] == 0:
            with open(s.logs / f"evaluate-{rid}.log", "wb") as handle:  # the child keeps its own copy
                evaluations.append(
                    (
                        rid,
                        time.time(),
                        subprocess.Popen(
                            cdrepro("evaluate", *params, "--run", rid),
                            stdout=handle,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        ),
                    )
                )
        log(f"train {rid}: {outcomes[rid]['train']}")


def train_all(s: Session, chosen: dict[str, Any]) -> dict[str, Any]:
    outcomes: dict[str, Any] = {}
    evaluations: list = []
    threads = [
        threading.Thread(target=train_slot, args=(s, runs, chosen["epoch_s"], chosen["epochs"], outcomes, evaluations))
        for runs in chosen["slots"]
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for rid, started, proc in evaluations:  # the last ones get until the budget less the report
        status = wait_or_stop(proc, CLOCK.until(s.args.budget - s.args.report_s + s.args.eval_grace_s))
        outcomes[rid]["evaluate"] = {"status": status, "wall_s": round(time.time() - started, 2)}
    log(f"train: {sum(o.get('evaluate', {}).get('status') == 0 for o in outcomes.values())} runs evaluated")
    return outcomes


# --------------------------------------------------------------------------- 5. report


def evaluated(outcomes: dict[str, Any]) -> list[str]:
    return [rid for rid, o in outcomes.items() if o.get("evaluate", {}).get("status") == 0]


def report(
    s: Session, chosen: dict[str, Any], outcomes: dict[str, Any], rates: dict[str, Any], prep: threading.Thread
) -> None:
    """The methods table and curves of the evaluated runs, their files, and the summary."""
    a = s.args
    prep.join(timeout=max(CLOCK.until(a.budget - 20), 0))
    done = evaluated(outcomes)
    results = Path(s.params["results_dir"]) / s.params["profile"]
    if done:
        table_params = s.out / "quick-gpu-evaluated.yaml"
        write_params(a, Path(s.background["folder"]), chosen["epochs"], table_params, runs=done)
        s.background["methods_table"] = run_logged(
            cdrepro("methods-table", "--params", str(table_params)),
            s.logs / "methods-table.log",
            CLOCK.until(a.budget - 12),
        )
        s.background["curves"] = curves_figure(s, done)
    copy_results(results, s.out, s.runs)
    import quick_summary  # noqa: E402  (bench/)

    quick_summary.write(s.out, rates, chosen, outcomes, s.background, time_s=round(CLOCK.elapsed(), 1))
    log(f"report: {len(done)} runs evaluated; files in {s.out}")


def curves_figure(s: Session, done: list[str]) -> dict[str, Any]:
    """The training curves of the runs in ``done`` (one figure), as ``cdrepro figures`` draws them."""
    try:
        from cdrepro import config as cfg
        from cdrepro.figures import curves
        from cdrepro.figures.output import save_figure
        from cdrepro.run_settings import runs_of
        from cdrepro.runs import ProfilePaths, run_id

        paths = ProfilePaths.from_params(s.params)
        runs = [run for run in runs_of(s.params) if run_id(run) in done]
        methods = {v: cfg.method_of(s.params, v) for v in s.params["variants"]}
        frame = curves.curves_frame([(run, paths.curves(run_id(run))) for run in runs], methods)
        written = save_figure(
            curves.plot_curves(frame, "CIFAR-10, 50,000 images, one H200"),
            s.out / "curves_cifar10",
            frame,
            s.params["figures"]["dpi"],
        )
        return {"status": 0, "files": [p.name for p in written]}
    except Exception as exc:  # the report goes on without the figure; the summary says why
        return {"status": 1, "error": f"{type(exc).__name__}: {exc}"}


def copy_results(results: Path, out: Path, runs: list[str]) -> None:
    """Each run's curves, train.json and metrics, the tables and the baseline: no weights."""
    for rid in runs:
        for name in ("curves.csv", "train.json", "metrics.json"):
            src = results / "runs" / rid / name
            if src.is_file():
                (out / "runs" / rid).mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, out / "runs" / rid / name)
    for folder in ("tables", "baselines"):
        if (results / folder).is_dir():
            shutil.copytree(results / folder, out / folder, dirs_exist_ok=True)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="where every file of the session goes")
    p.add_argument("--work", default="results", help="the profile's results_dir (weights stay there)")
    p.add_argument("--data-dir", default="data", help="where the archive is unpacked")
    p.add_argument("--archive", default="data/cifar10-train.tar.gz")
    p.add_argument("--device", default="cuda")
    p.add_argument("--images-per-class", type=int, default=5000)
    p.add_argument("--budget", type=float, default=510.0, help="seconds from --started-at to the end")
    p.add_argument("--started-at", type=float, default=None, help="epoch seconds; default: now")
    # 6: all six runs at once, one wave, their start-ups paid once in parallel.
    p.add_argument("--packs", default="1,2,3,6", help="packing factors to probe and plan with")
    p.add_argument("--probe-seconds", type=float, default=1.0, help="timed seconds per run and packing")
    p.add_argument("--probe-warmup", type=int, default=5)
    p.add_argument("--probe-max-s", type=float, default=150.0, help="the probe ends by then (from the start)")
    p.add_argument("--startup-s", type=float, default=25.0, help="planned start-up of one training process")
    p.add_argument("--eval-s", type=float, default=30.0, help="planned time of one evaluation")
    p.add_argument("--eval-grace-s", type=float, default=10.0)
    p.add_argument("--report-s", type=float, default=40.0, help="kept for the table, curves and packing")
    p.add_argument("--epoch-overhead-s", type=float, default=0.5, help="per epoch: checkpoint, sync")
    p.add_argument("--margin", type=float, default=0.85)
    p.add_argument("--min-epochs", type=int, default=1)
    p.add_argument("--max-epochs", type=int, default=None, help="default: quick.yaml's epochs")
    p.add_argument("--fallback-rate", type=float, default=4000.0, help="pairs/s if the probe gives none")
    p.add_argument("--baseline-threads", type=int, default=8)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads of every process")
    p.add_argument("--batch-size", type=int, default=None, help="every run's (CPU test only)")
    p.add_argument(
        "--set", action="append", default=[], dest="sets", metavar="KEY=VALUE", help="a params override (CPU test only)"
    )
    args = p.parse_args(argv)
    args.packs = sorted({int(x) for x in args.packs.split(",") if x})
    if args.max_epochs is None:
        args.max_epochs = int(yaml.safe_load(quick_params.BASE.read_text())["train"]["epochs"])
    args.work = str(Path(args.work).resolve())
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    CLOCK.started, CLOCK.budget = args.started_at or time.time(), args.budget
    s, prep = setup(args)
    rates = probe(s)
    chosen = plan(s, rates, prepared_images(s))
    write_params(args, Path(s.background["folder"]), chosen["epochs"], s.params_path)
    outcomes = train_all(s, chosen)
    report(s, chosen, outcomes, rates, prep)
    return 0 if evaluated(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
