"""``cdrepro``: every pipeline step is a subcommand; Snakemake rules only call these.

Each command reads one params file, does one step and exits non-zero with a one-line message
on any error the user can fix.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdrepro import config as cfg
from cdrepro import run_settings as rs
from cdrepro.runs import ProfilePaths, run_id

if TYPE_CHECKING:
    from cdrepro.gpu_slots import Placement

log = logging.getLogger("cdrepro")

# The workflow tells its jobs which params file to read through this variable.
PARAMS_ENV = "CDREPRO_PARAMS"


def _context(args: argparse.Namespace) -> tuple[dict, ProfilePaths]:
    params = cfg.load_params(args.params)
    return params, ProfilePaths.from_params(params)


def cmd_validate(args: argparse.Namespace) -> None:
    params, paths = _context(args)
    checked = cfg.check_against_prepared(params, str(args.params))
    if checked:
        print(f"batch sizes fit the prepared datasets: {', '.join(checked)}")
    print(
        f"{args.params}: valid; profile '{params['profile']}', {len(params['runs'])} runs, outputs under {paths.root}"
    )
    print(_slots_line(params))


def _slots_line(params: dict) -> str:
    """What the jobs of ``params`` take of this machine's GPUs (docs/cluster.md, "One machine")."""
    from cdrepro.gpu_slots import gpu_count

    gpus, per_gpu = gpu_count(params), params["gpus"]["runs_per_gpu"]
    if not gpus:
        return "GPU slots on this machine: none (no GPU to train on, or gpus.count 0): GPU jobs take no slots"
    return (
        f"GPU slots on this machine: {gpus} GPUs x {per_gpu} runs a GPU (gpus.runs_per_gpu) = up to "
        f"{gpus * per_gpu} GPU jobs at once"
    )


def cmd_methods(args: argparse.Namespace) -> None:
    from cdrepro.methods import describe_methods

    print(describe_methods())


def cmd_runs(args: argparse.Namespace) -> None:
    params, _ = _context(args)
    for run in rs.runs_of(params):
        print(run_id(run))


def cmd_prepare(args: argparse.Namespace) -> None:
    from cdrepro.data.sources import prepare_dataset

    params, paths = _context(args)
    settings = cfg.dataset_settings(params, args.dataset)
    data = cfg.data_settings(params)
    meta = prepare_dataset(
        args.dataset,
        settings,
        Path(data["download_dir"]),
        data["download"],
        paths.prepared(args.dataset),
        paths.prepared_meta(args.dataset),
        eval_size=params["train"]["image_size"],
    )
    print(f"{args.dataset}: {meta['n_images']} images, {meta['num_classes']} classes -> {paths.prepared(args.dataset)}")


def cmd_split(args: argparse.Namespace) -> None:
    from cdrepro.data.heldout import make_split, write_split
    from cdrepro.data.prepared import load_prepared

    params, paths = _context(args)
    cfg.dataset_settings(params, args.dataset)
    evaluate = params["evaluate"]
    split = make_split(load_prepared(paths.prepared(args.dataset)), evaluate["split"], evaluate["knn"]["k"])
    write_split(paths.split(args.dataset), split)
    print(
        f"{args.dataset}: {split.kind} split, {split.train.size} train (the kNN bank, the probe's fit) "
        f"and {split.test.size} test images -> {paths.split(args.dataset)}"
    )


def cmd_baseline(args: argparse.Namespace) -> None:
    from cdrepro.atomic import write_json
    from cdrepro.evaluate import pixel_baseline_file

    params, paths = _context(args)
    cfg.dataset_settings(params, args.dataset)
    result = pixel_baseline_file(paths.prepared(args.dataset), params["evaluate"])
    write_json(paths.baseline(args.dataset), result)
    print(f"{args.dataset} raw-pixel K-means: {json.dumps(result['pixels'])}")


def _start_processes(
    args: argparse.Namespace, settings: rs.RunSettings, lock: Path, placement: Placement | None
) -> None:
    """Become torchrun, which starts ``train.gpus_per_run`` copies of this train command.

    Replaces this process (exec) rather than waiting on a child, so that a SIGTERM from the
    scheduler or Snakemake reaches torchrun, which passes it on to the training processes.
    torchrun runs under ``cdrepro.launcher.launch``: its failures read as one line, and the
    processes die with it (they know it by its pid, this one's). torch is not imported first:
    torchrun and each process import it anyway. The GPU slots this process holds
    (``placement``; None where it takes none) stay held by torchrun, and its processes inherit
    CUDA_VISIBLE_DEVICES naming their GPUs."""
    from cdrepro.runlock import run_lock

    processes = settings.gpus_per_run
    if settings.batch_size % processes:  # said here once, rather than by every process
        raise ValueError(
            f"run {args.run}: the global batch size {settings.batch_size} (the run's batch_size "
            f"under runs:) does not divide among train.gpus_per_run = {processes} processes; "
            "choose a train.gpus_per_run that divides it"
        )
    # A run being written is said here in one line, not after torchrun's start (tens of
    # seconds); rank 0 takes the lock for the training.
    with run_lock(lock, args.run, "training"):
        pass
    # "--": without it torchrun's own parser takes our --run for an abbreviation of its --run-path.
    command = [
        sys.executable,
        "-m",
        "cdrepro.launcher",
        "--standalone",
        f"--nproc-per-node={processes}",
        "-m",
        "cdrepro",
        "--",
    ]
    command += ["--verbose"] if args.verbose else []
    command += ["train", "--params", str(args.params), "--run", args.run]
    command += ["--threads", str(args.threads)] if args.threads else []
    log.info("%s: starting %d training processes: %s", args.run, processes, " ".join(command[1:]))
    sys.stdout.flush()
    sys.stderr.flush()
    if placement is not None:
        placement.keep_across_exec()
    # launcher.LAUNCHER_ENV (not imported: it imports torch).
    os.execve(sys.executable, command, dict(os.environ, CDREPRO_LAUNCHER_PID=str(os.getpid())))


def cmd_train(args: argparse.Namespace) -> None:
    from cdrepro.gpu_slots import placed

    params, paths = _context(args)
    settings = rs.resolve_run(params, rs.find_run(params, args.run))
    # The GPUs first: CUDA_VISIBLE_DEVICES must name them before CUDA starts.
    with placed(params, settings.gpus_per_run, args.run) as placement:
        if settings.gpus_per_run > 1 and "WORLD_SIZE" not in os.environ:  # not under torchrun yet
            _start_processes(args, settings, paths.lock(args.run), placement)

        from cdrepro import distributed as ddp
        from cdrepro.device import select_device
        from cdrepro.launcher import launched_worker
        from cdrepro.runlock import run_lock
        from cdrepro.tracking import Tracker
        from cdrepro.train import RunFiles, train

        files = RunFiles(
            paths.checkpoint(args.run), paths.model(args.run), paths.curves(args.run), paths.train_summary(args.run)
        )
        tags = {"train_gpu_slots": placement.names} if placement is not None else {}
        with launched_worker(), ddp.process_group(select_device(settings.device)) as ranks:
            if not ranks.is_main:  # rank 0 speaks for the run
                logging.getLogger("cdrepro").setLevel(logging.WARNING)
            # Rank 0 holds the run's lock (one writer per run) and alone tracks; the tracker
            # closes the MLflow run, whatever happens.
            lock = run_lock(paths.lock(args.run), args.run, "training") if ranks.is_main else contextlib.nullcontext()
            active = None if ranks.is_main else False
            with lock, Tracker(params, paths, settings, active=active, extra_tags=tags) as tracker:
                summary = train(
                    settings, paths.prepared(settings.dataset), files, threads=args.threads, sink=tracker, ranks=ranks
                )
    if not ranks.is_main:
        return
    where = summary["device"] + (f" ({ranks.world_size} processes)" if ranks.distributed else "")
    print(
        f"{args.run}: trained {summary['epochs']} epochs in {summary['train_seconds']} s "
        f"on {where}; final loss {summary['final'].get('loss', float('nan')):.4f}"
    )


def cmd_evaluate(args: argparse.Namespace) -> None:
    from cdrepro.evaluate import evaluate
    from cdrepro.gpu_slots import placed
    from cdrepro.results import write_metrics
    from cdrepro.runlock import run_lock
    from cdrepro.tracking import Tracker

    params, paths = _context(args)
    settings = rs.resolve_run(params, rs.find_run(params, args.run))
    if args.checkpoint is not None:
        with placed(params, 1, args.run):
            _evaluate_checkpoint(args, params, paths, settings)
        return
    with run_lock(paths.lock(args.run), args.run, "evaluation"), placed(params, 1, args.run) as placement:
        metrics = evaluate(
            settings,
            paths.prepared(settings.dataset),
            paths.model(args.run),
            paths.split(settings.dataset),
            params["evaluate"],
            threads=args.threads,
        )
        write_metrics(paths.metrics(args.run), metrics)
        tags = {"evaluate_gpu_slots": placement.names} if placement is not None else {}
        Tracker(params, paths, settings, extra_tags=tags).log_evaluation(metrics)
    print(f"{args.run}: {_stage_scores(metrics)}")


def _stage_scores(metrics: dict) -> str:
    return ", ".join(f"{stage} {json.dumps(scores)}" for stage, scores in metrics["stages"].items())


def _evaluate_checkpoint(args: argparse.Namespace, params: dict, paths: ProfilePaths, settings: rs.RunSettings) -> None:
    """``evaluate --checkpoint``: a checkpoint from elsewhere (the authors' released models, say)
    in the run's architecture and on its dataset. Not logged to MLflow, and written beside the
    profile's runs (unless --out says otherwise): it is not the run's own training."""
    from cdrepro.data.heldout import read_split
    from cdrepro.data.prepared import load_prepared
    from cdrepro.evaluate import evaluate_model
    from cdrepro.methods import build_method
    from cdrepro.released import default_metrics_path, load_checkpoint
    from cdrepro.results import write_metrics

    data = load_prepared(paths.prepared(settings.dataset))
    split = read_split(paths.split(settings.dataset), data)
    model = build_method(settings, data.num_classes)
    layout = load_checkpoint(args.checkpoint, model, args.run)
    metrics = evaluate_model(model, settings, data, split, params["evaluate"], threads=args.threads)
    metrics.update(checkpoint=str(args.checkpoint), layout=layout)
    out = args.out or default_metrics_path(paths, args.run, args.checkpoint)
    write_metrics(out, metrics)
    print(f"{args.checkpoint} ({layout} layout) as {args.run}: {_stage_scores(metrics)} -> {out}")


def cmd_tsne(args: argparse.Namespace) -> None:
    from cdrepro.figures.tsne import tsne_figure
    from cdrepro.gpu_slots import placed

    params, _ = _context(args)
    with placed(params, 1, f"t-SNE of {args.run}"):
        for path in tsne_figure(params, args.run, threads=args.threads):
            print(path)


def cmd_figures(args: argparse.Namespace) -> None:
    from cdrepro.figures.profile import profile_figures
    from cdrepro.gpu_slots import placed
    from cdrepro.results import ProfileResults

    params, _ = _context(args)
    with placed(params, 1, "figures"):
        for path in profile_figures(params, ProfileResults.load(params), threads=args.threads):
            print(path)


def cmd_tables(args: argparse.Namespace) -> None:
    from cdrepro.results import TABLES_TARGET, ProfileResults
    from cdrepro.tables import write_tables

    params, paths = _context(args)
    for path in write_tables(ProfileResults.load(params, target=TABLES_TARGET), paths.tables_dir()):
        print(path)


def _comparison_table(args: argparse.Namespace, target: str, write: Callable[..., list[Path]]) -> None:
    """Load the results of the runs for ``target`` (every run if none is) and ``write`` a table."""
    from cdrepro.results import ProfileResults, comparison_target

    params, paths = _context(args)
    results = ProfileResults.load(params, target=comparison_target(params, target))
    for path in write(results, paths.tables_dir()):
        print(path)


def cmd_methods_table(args: argparse.Namespace) -> None:
    from cdrepro.comparison.table import write_comparison_table
    from cdrepro.results import COMPARISON_TARGET

    _comparison_table(args, COMPARISON_TARGET, write_comparison_table)


def cmd_many_clusters_table(args: argparse.Namespace) -> None:
    from cdrepro.comparison.clusters import write_clusters_table
    from cdrepro.results import CLUSTERS_TARGET

    _comparison_table(args, CLUSTERS_TARGET, write_clusters_table)


def cmd_long_tail_table(args: argparse.Namespace) -> None:
    from cdrepro.comparison.long_tail import write_long_tail_table
    from cdrepro.results import LONG_TAIL_TARGET

    _comparison_table(args, LONG_TAIL_TARGET, write_long_tail_table)


def cmd_tracking_init(args: argparse.Namespace) -> None:
    from cdrepro import tracking

    params, paths = _context(args)
    if not tracking.enabled():
        print("tracking is off (CDREPRO_TRACKING); nothing to create")
        return
    try:
        uri, name, experiment_id = tracking.init_store(params)
    except Exception as exc:  # tracking never stops the workflow: the jobs will warn again
        log.debug("tracking-init failed", exc_info=True)
        log.warning(
            "MLflow store not ready, so jobs will run without tracking if it stays so: %s",
            tracking.store_problem(exc, tracking.tracking_uri(paths)),
        )
        return
    print(
        f"MLflow experiment '{name}' (id {experiment_id}) in {uri}; its runs: "
        f"{tracking.ui_address(uri, tracking.runs_page(experiment_id))}"
    )


def cmd_tracking_summary(args: argparse.Namespace) -> None:
    from cdrepro import tracking
    from cdrepro.tracking_summary import log_summary

    params, paths = _context(args)
    if not tracking.enabled():
        print("tracking is off (CDREPRO_TRACKING); no summary run logged")
        return
    try:
        summary = log_summary(params)
    except Exception as exc:  # tracking never stops the workflow
        log.debug("tracking-summary failed", exc_info=True)
        log.warning(
            "MLflow summary run not logged: %s. Once fixed, log it with: cdrepro tracking-summary",
            tracking.store_problem(exc, tracking.tracking_uri(paths)),
        )
        return
    if summary is None:
        print(f"no tables or figures under {paths.root} yet; no summary run logged")
        return
    print(
        f"summary run {summary.mlflow_run_id} ({summary.files} files; {summary.replaced} older replaced) "
        f"in {summary.uri}: {tracking.ui_address(summary.uri, summary.page())}"
    )


def cmd_sync(args: argparse.Namespace) -> None:
    from cdrepro import tracking

    params, paths = _context(args)
    rids = [args.run] if args.run else [run_id(r) for r in rs.runs_of(params)]
    synced = 0
    for rid in rids:
        logged = tracking.sync_run(params, rid)
        if logged is None:
            print(f"{rid}: not trained yet; skipped")
            continue
        epochs, with_metrics = logged
        synced += 1
        print(f"{rid}: {epochs} epochs{' and metrics' if with_metrics else ''} logged")
    print(f"{synced} runs synced to {tracking.tracking_uri(paths)}")


def cmd_compare(args: argparse.Namespace) -> None:
    from cdrepro import tracking

    params, _ = _context(args)
    comparison = tracking.compare_with_files(params)
    if args.csv:
        comparison.table.to_csv(args.csv, index=False)
    print(comparison.text())
    if comparison.problems:
        raise RuntimeError("MLflow disagrees with the metrics files: " + "; ".join(comparison.problems))


def cmd_ui(args: argparse.Namespace) -> None:
    from cdrepro import tracking

    params, paths = _context(args)
    uri = tracking.tracking_uri(paths)
    if uri.startswith(("http://", "https://")):
        print(f"MLFLOW_TRACKING_URI is a server: open {uri}")
        return
    try:
        _, name, experiment_id = tracking.init_store(params)
    except Exception as exc:  # MLflow's errors are no RuntimeError: one line, as main() gives those
        raise RuntimeError(tracking.store_problem(exc, uri)) from exc
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(args.port),
        "--workers",
        "1",
    ]
    artifacts = tracking.artifact_location(uri)
    if artifacts:
        command += ["--artifacts-destination", artifacts]
    print(
        f"MLflow UI on http://127.0.0.1:{args.port} (store {uri}); the runs of '{name}': "
        f"http://127.0.0.1:{args.port}/{tracking.runs_page(experiment_id)}; Ctrl-C stops it",
        flush=True,
    )
    # Replaced by the server, so that Ctrl-C and kill reach it (and its workers) directly.
    os.execve(sys.executable, command, dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true"))


# Every subcommand: name, help, and which of the shared arguments (--dataset, --run, --threads)
# it takes; --params all take. Their own arguments are in _add_own_arguments. Subcommand NAME runs
# cmd_NAME (dashes as underscores), looked up as the parser is built.
COMMANDS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("validate", "check a params file and say where its outputs go", ()),
    ("runs", "list the run ids of a params file", ()),
    ("methods", "the methods, their evaluation stages and their options with defaults", ()),
    ("prepare", "download/read a dataset into one uint8 array file", ("dataset",)),
    (
        "split",
        "the held-out split of a prepared dataset (its official test split, else evaluate.split's)",
        ("dataset",),
    ),
    ("baseline", "raw-pixel K-means baseline of a prepared dataset", ("dataset",)),
    ("train", "train (or resume) one run", ("run", "threads")),
    (
        "evaluate",
        "K-means NMI/ARI/ACC of one trained run, and its kNN and linear-probe accuracy on the held-out split",
        ("run", "threads"),
    ),
    (
        "tables",
        "LaTeX tables (paper Tables 2-10), all.csv and differences.csv from the runs for reproduce_tables",
        (),
    ),
    (
        "methods-table",
        "the methods table (methods.tex, methods.csv, methods_differences.csv): every method "
        "beside its published numbers, from the runs for compare_methods (every run if none is)",
        (),
    ),
    (
        "many-clusters-table",
        "each method at its runs' fewest and most clusters (many_clusters.tex, .csv), from the runs "
        "for many_clusters (every run if none is)",
        (),
    ),
    (
        "long-tail-table",
        "each method on balanced and long-tailed training sets, and what it loses (long_tail.tex, "
        ".csv), from the runs for long_tail (every run if none is)",
        (),
    ),
    ("tsne", "t-SNE figure of one run's backbone and final outputs", ("run", "threads")),
    (
        "figures",
        "training curves, ablation charts, head statistics, LIME views and the summary table of every run",
        ("threads",),
    ),
    (
        "tracking-init",
        "create the MLflow store and the profile's experiment (once, before parallel jobs)",
        (),
    ),
    (
        "tracking-summary",
        "log the profile's tables and figures as one MLflow run named summary (replacing the last)",
        (),
    ),
    ("sync", "log runs' files (curves, metrics) to MLflow, e.g. after a tracking failure", ()),
    (
        "compare",
        "the profile's runs from MLflow: method and variant vs every "
        "stage's metrics, checked against each run's metrics.json",
        (),
    ),
    ("ui", "the MLflow UI on the profile's store, bound to 127.0.0.1", ()),
)
SHARED_ARGUMENTS: dict[str, dict[str, Any]] = {
    "dataset": dict(required=True, help="a dataset name under datasets:"),
    "run": dict(required=True, help="a run id, e.g. digits-bs128-cd-s42"),
    "threads": dict(type=int, default=None, help="torch CPU threads"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cdrepro", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text, shared in COMMANDS:
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.add_argument(
            "--params",
            default=os.environ.get(PARAMS_ENV, "params.yaml"),
            help=f"params file (default: ${PARAMS_ENV}, else params.yaml)",
        )
        for argument in shared:
            command.add_argument(f"--{argument}", **SHARED_ARGUMENTS[argument])
        command.set_defaults(func=globals()["cmd_" + name.replace("-", "_")])
    _add_own_arguments(sub.choices)
    return parser


def _add_own_arguments(commands: dict[str, argparse.ArgumentParser]) -> None:
    commands["evaluate"].add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="evaluate this checkpoint instead of the run's model.pt: ours or the authors' released "
        "layout (resnet.*, instance_projector.*, feature_predictor.*), in the run's architecture",
    )
    commands["evaluate"].add_argument(
        "--out",
        type=Path,
        default=None,
        help="with --checkpoint: where the metrics go (default: "
        "<results_dir>/<profile>/released/<run>/<checkpoint name>.metrics.json)",
    )
    commands["sync"].add_argument("--run", default=None, help="one run id (default: every run)")
    commands["compare"].add_argument("--csv", default=None, help="also write the table here")
    commands["ui"].add_argument("--port", type=int, default=5000, help="port (default: 5000)")


def _one_line(exc: BaseException) -> str:
    """The exception's message on one line (YAML errors, for one, span several with a caret
    under the offending column; the caret lines mean nothing once joined, so they go)."""
    lines = (line.strip() for line in str(exc).splitlines())
    return " ".join(line for line in lines if line and set(line) != {"^"})


# What running a command again redoes (after a full disk, Ctrl-C), where that is worth saying:
# the advice must fit the command (an evaluation does not resume a training).
RERUN_NOTES = {
    "train": " (training resumes from its last checkpoint, which is intact)",
    "evaluate": " (the trained model is untouched: only the evaluation runs again)",
}


def _os_error(exc: OSError, command: str) -> str:
    """A file-system error of ``cdrepro <command>`` as one line that names the file and says
    what to do."""
    where = f" {exc.filename}" if exc.filename else ""
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return (
            f"the disk is full ({exc.strerror}) while writing{where or ' a file'}. Files are "
            "written to a temporary name and renamed, so the previous version of every output "
            f"is intact: free some space and run cdrepro {command} again"
            f"{RERUN_NOTES.get(command, '')}"
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (
            f"cannot write or read{where}: {exc.strerror}. Make it (and its folder) writable "
            "for this user, or point results_dir in the params at a folder that is"
        )
    return (
        f"{exc.strerror or type(exc).__name__}{':' if where else ''}{where}; check that path "
        "and run the step again (--verbose shows the traceback)"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        args.func(args)
    except (cfg.ParamsError, FileNotFoundError, ValueError, RuntimeError) as exc:
        if args.verbose:
            raise
        print(f"cdrepro {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        if args.verbose:
            raise
        print(f"cdrepro {args.command}: error: {_os_error(exc, args.command)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.verbose:
            raise
        # Every output is written atomically, so nothing is torn; training resumes.
        print(
            f"cdrepro {args.command}: interrupted; nothing was left half-written: run the same "
            f"command again{RERUN_NOTES.get(args.command, '')}",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
