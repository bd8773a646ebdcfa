"""``cdrepro``: every pipeline step is a subcommand; Snakemake rules only call these.

Each command reads one params file, does one step and exits non-zero with a one-line message
on any error the user can fix.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from cdrepro import config as cfg
from cdrepro.runs import ProfilePaths, run_id

log = logging.getLogger("cdrepro")


def _context(args: argparse.Namespace) -> tuple[dict, ProfilePaths]:
    params = cfg.load_params(args.params)
    return params, ProfilePaths.from_params(params)


def cmd_validate(args: argparse.Namespace) -> None:
    params, paths = _context(args)
    print(f"{args.params}: valid; profile '{params['profile']}', {len(params['runs'])} runs, "
          f"outputs under {paths.root}")


def cmd_runs(args: argparse.Namespace) -> None:
    params, _ = _context(args)
    for run in cfg.runs_of(params):
        print(run_id(run))


def cmd_prepare(args: argparse.Namespace) -> None:
    from cdrepro.data.sources import prepare_dataset

    params, paths = _context(args)
    settings = cfg.dataset_settings(params, args.dataset)
    data = cfg.data_settings(params)
    meta = prepare_dataset(args.dataset, settings, Path(data["download_dir"]), data["download"],
                           paths.prepared(args.dataset), paths.prepared_meta(args.dataset))
    print(f"{args.dataset}: {meta['n_images']} images, {meta['num_classes']} classes -> "
          f"{paths.prepared(args.dataset)}")


def cmd_baseline(args: argparse.Namespace) -> None:
    from cdrepro.atomic import write_json
    from cdrepro.evaluate import pixel_baseline_file

    params, paths = _context(args)
    cfg.dataset_settings(params, args.dataset)
    result = pixel_baseline_file(paths.prepared(args.dataset), params["evaluate"])
    write_json(paths.baseline(args.dataset), result)
    print(f"{args.dataset} raw-pixel K-means: {json.dumps(result['pixels'])}")


def cmd_train(args: argparse.Namespace) -> None:
    from cdrepro.train import RunFiles, train

    params, paths = _context(args)
    settings = cfg.resolve_run(params, cfg.find_run(params, args.run))
    files = RunFiles(paths.checkpoint(args.run), paths.model(args.run), paths.curves(args.run),
                     paths.train_summary(args.run))
    summary = train(settings, paths.prepared(settings.dataset), files, threads=args.threads)
    print(f"{args.run}: trained {summary['epochs']} epochs in {summary['train_seconds']} s "
          f"on {summary['device']}; final loss {summary['final'].get('loss', float('nan')):.4f}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from cdrepro.atomic import write_json
    from cdrepro.evaluate import evaluate

    params, paths = _context(args)
    settings = cfg.resolve_run(params, cfg.find_run(params, args.run))
    metrics = evaluate(settings, paths.prepared(settings.dataset), paths.model(args.run),
                       params["evaluate"], threads=args.threads)
    write_json(paths.metrics(args.run), metrics)
    print(f"{args.run}: backbone {json.dumps(metrics['backbone'])}, "
          f"{metrics['feature_stage']} {json.dumps(metrics['feature'])}")


def cmd_tables(args: argparse.Namespace) -> None:
    from cdrepro.tables import write_tables

    params, paths = _context(args)
    runs = cfg.runs_of(params)
    metrics = [json.loads(paths.metrics(run_id(r)).read_text()) for r in runs]
    datasets = sorted({r.dataset for r in runs})
    baselines = [json.loads(paths.baseline(d).read_text()) for d in datasets]
    titles = {name: ds.get("title", name) for name, ds in params["datasets"].items()}
    written = write_tables(metrics, baselines, titles, paths.tables_dir())
    for path in written:
        print(path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cdrepro", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func, help_text: str, *, dataset: bool = False, run: bool = False,
            threads: bool = False) -> None:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
        if dataset:
            p.add_argument("--dataset", required=True, help="a dataset name under datasets:")
        if run:
            p.add_argument("--run", required=True, help="a run id, e.g. digits-bs128-cd-s42")
        if threads:
            p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
        p.set_defaults(func=func)

    add("validate", cmd_validate, "check a params file and say where its outputs go")
    add("runs", cmd_runs, "list the run ids of a params file")
    add("prepare", cmd_prepare, "download/read a dataset into one uint8 array file", dataset=True)
    add("baseline", cmd_baseline, "raw-pixel K-means baseline of a prepared dataset", dataset=True)
    add("train", cmd_train, "train (or resume) one run", run=True, threads=True)
    add("evaluate", cmd_evaluate, "K-means NMI/ARI/ACC of one trained run", run=True, threads=True)
    add("tables", cmd_tables, "LaTeX tables (paper Tables 2-10) and all.csv from every run")
    return parser


def _one_line(exc: BaseException) -> str:
    """The exception's message on one line (YAML errors, for one, span several with a caret
    under the offending column; the caret lines mean nothing once joined, so they go)."""
    lines = (line.strip() for line in str(exc).splitlines())
    return " ".join(line for line in lines if line and set(line) != {"^"})


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        args.func(args)
    except (cfg.ParamsError, FileNotFoundError, ValueError, RuntimeError) as exc:
        if args.verbose:
            raise
        print(f"cdrepro {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
