"""Keep DVC and Snakemake agreeing about finished results, without re-running anything.

``dvc.yaml`` runs the same steps as the Snakemake rules, but each tool keeps its own record of
what is up to date: DVC hashes in ``dvc.lock``, Snakemake file times plus ``.snakemake/metadata``.
When one tool made or restored the results, the other is told (docs/dvc.md):

``python -m cdrepro.dvc_bridge track`` (``make dvc-track``)
    After a Snakemake run: ``dvc commit`` every stage, so ``dvc.lock`` and the DVC cache hold
    Snakemake's results; ``dvc status`` is then clean and ``dvc push`` shares them.
``python -m cdrepro.dvc_bridge touch`` (``make dvc-touch``)
    After ``dvc pull``, ``dvc checkout``, ``dvc exp apply`` (or ``dvc repro`` in a workspace
    where Snakemake ran before with other params): ``snakemake --touch``, so Snakemake sees
    DVC's results as up to date instead of re-running steps because of file times or its old
    metadata.

Each direction refuses unless the results are finished by the other tool's own account, so
neither can pass off stale results: ``track`` needs ``snakemake --dry-run`` to have nothing to do
and no source file (code, reference numbers) changed after the outputs of a step that reads it
(Snakemake does not watch package code; DVC does); ``touch`` needs ``dvc status`` to be clean.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path

# Everything dvc.yaml runs (the tables and the figures): the Snakefile's `all`.
TARGET = "all"


class BridgeError(RuntimeError):
    """The results are not finished by one tool's account; nothing was recorded."""


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _snakemake(root: Path, *args: str) -> str:
    # The workflow calls `cdrepro` (its onstart hook, for one): this environment's, as make does.
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", *args], cwd=root, env=env, capture_output=True, text=True
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise BridgeError(f"snakemake {' '.join(args)} failed:\n{_tail(output)}")
    return output


def snakemake_pending(root: Path, target: str = TARGET) -> dict[str, int]:
    """The jobs Snakemake would run for ``target``, as {rule: count}; empty when none."""
    output = _snakemake(root, "--dry-run", target)
    if "Nothing to be done" in output:
        return {}
    stats = output.split("Job stats:", 1)[-1].split("\ntotal", 1)[0]
    pending = {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", stats, flags=re.M)}
    if not pending:
        raise BridgeError(f"cannot read the jobs of snakemake --dry-run:\n{_tail(output)}")
    return pending


def _inside(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def stale_sources(repo) -> list[str]:
    """Source deps (files no stage makes: code, reference numbers) that changed since
    ``dvc.lock`` and are newer than the oldest output of a stage that reads them."""
    outs = [out.def_path for stage in repo.index.stages for out in stage.outs]
    problems = []
    for stage in repo.index.stages:
        made = [os.path.getmtime(out.fs_path) for out in stage.outs if os.path.exists(out.fs_path)]
        if not made:
            continue
        for dep in stage.deps:
            if hasattr(dep, "params") or not os.path.exists(dep.fs_path):
                continue
            if any(_inside(dep.def_path, out) or _inside(out, dep.def_path) for out in outs):
                continue  # made by the pipeline: Snakemake checks those by file time itself
            if dep.status() and os.path.getmtime(dep.fs_path) > min(made):
                problems.append(f"{stage.addressing}: {dep.def_path}")
    return problems


@contextlib.contextmanager
def _repo(root: Path):
    """The DVC repository, its dvc.yaml and dvc.lock read first: a damaged one is one line
    (DVC's own error is an 80-line traceback), before any slow step."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        try:
            repo.index  # noqa: B018 - reads and validates dvc.yaml and dvc.lock
        except DvcException as exc:
            raise BridgeError(_unreadable(exc)) from exc
        yield repo


def _unreadable(exc: Exception) -> str:
    """What a DVC file that DVC cannot read needs, naming it (DVC's message names it too)."""
    path = os.path.normpath(str(getattr(exc, "path", "") or "dvc.yaml or dvc.lock"))
    said = f"{str(exc).splitlines()[0]}{_where(exc)}{getattr(exc, 'hint', '')}"
    if Path(path).name == "dvc.lock":
        fix = (
            f"restore it (git checkout -- {path}), or delete it and record Snakemake's finished "
            "results again (make dvc-track)"
        )
    else:
        fix = f"fix it, or restore it (git checkout -- {path})"
    return f"{path} cannot be read ({said}): {fix}"


def _where(exc: BaseException) -> str:
    """Where in the file DVC's error is: the schema's complaint, or the YAML error's line."""
    inner = getattr(exc, "exc", None)
    if type(inner).__name__ == "MultipleInvalid":  # voluptuous: "expected a dictionary @ data['stages']"
        return f": {inner}"
    while inner is not None:
        mark = getattr(inner, "problem_mark", None)
        if mark is not None:
            return f" at line {mark.line + 1}"
        inner = inner.__cause__ or inner.__context__
    return ""


def track(root: Path = Path(".")) -> None:
    """Snakemake -> DVC: record Snakemake's finished results in dvc.lock and the DVC cache."""
    from dvc.exceptions import DvcException

    with _repo(root) as repo:
        pending = snakemake_pending(root)
        if pending:
            jobs = ", ".join(f"{rule} x{n}" for rule, n in pending.items())
            raise BridgeError(
                f"Snakemake still has jobs to run ({jobs}); run it first "
                "(make run) so that DVC records finished results only"
            )
        stale = stale_sources(repo)
        if stale:
            raise BridgeError(
                "these files changed after the outputs of the steps that read them, and "
                "Snakemake does not re-run steps for package code: "
                + "; ".join(stale)
                + ". Re-run those steps (dvc repro, or snakemake --forcerun <rule>) first"
            )
        try:
            # relink=False: leave Snakemake's files as they are (a relink rewrites them, new mtimes)
            repo.commit(None, force=True, relink=False)
        except DvcException as exc:
            raise BridgeError(f"dvc commit failed: {exc}") from exc
        changes = repo.status()
    if changes:
        raise BridgeError(f"dvc status is not clean after dvc commit: {changes}")


def touch(root: Path = Path(".")) -> None:
    """DVC -> Snakemake: mark DVC's up-to-date results as up to date for Snakemake."""
    with _repo(root) as repo:
        changes = repo.status()
    if changes:
        raise BridgeError(
            f"DVC reports changed stages ({', '.join(changes)}): the workspace is not what "
            "dvc.lock records. Run dvc repro, dvc pull or dvc checkout first"
        )
    _snakemake(root, "--touch", "--cores", "1", TARGET)
    pending = snakemake_pending(root)
    if pending:
        raise BridgeError(f"Snakemake still has jobs to run after --touch: {pending}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cdrepro.dvc_bridge", description=__doc__.splitlines()[0])
    parser.add_argument(
        "action",
        choices=["track", "touch"],
        help="track: Snakemake's results -> DVC; touch: DVC's results -> Snakemake",
    )
    parser.add_argument("--root", type=Path, default=Path("."), help="the repository (default: .)")
    args = parser.parse_args(argv)
    try:
        (track if args.action == "track" else touch)(args.root)
    except BridgeError as exc:
        print(f"cdrepro.dvc_bridge {args.action}: error: {exc}", file=sys.stderr)
        return 1
    print(
        "DVC and Snakemake agree: nothing to run."
        if args.action == "touch"
        else "DVC now records Snakemake's results: dvc status is clean; dvc push shares them."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
