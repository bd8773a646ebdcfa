"""``dvc.yaml``, generated from the steps' contract (``cdrepro.steps``) and their code.

    python -m cdrepro.dvc_stages           # write dvc.yaml (make dvc-yaml)
    python -m cdrepro.dvc_stages --check   # exit 1 if dvc.yaml is not what it would write

Every stage runs the same ``cdrepro`` command as its rule, with ``--params params.yaml`` (the
one file whose params DVC tracks), for each dataset or run of params.yaml (DVC's ``foreach``
over its vars). Its deps are the data it reads and its code (``cdrepro.code_deps``); its params
the sections it reads; its outs what the rule writes, plus the checkpoint (docs/dvc.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

from cdrepro.code_deps import code_deps
from cdrepro.runs import ProfilePaths
from cdrepro.steps import DATASET, DVC_ONLY, METRIC, OUT, PLOT, RUN, STEPS, Item, Step

REPO = Path(__file__).resolve().parents[2]
# dvc.yaml's templates for a job's item and the profile's folder.
RUN_ID = "${item.dataset}-bs${item.batch_size}-${item.variant}-s${item.seed}"
ITEMS = {DATASET: Item("${key}", "${key}"), RUN: Item(RUN_ID, "${item.dataset}", "${item.variant}")}
FOREACH = {DATASET: "${datasets}", RUN: "${runs}"}
ROOT = ProfilePaths(Path("${results_dir}/${profile}"))
ITEM_OPTION = {DATASET: "--dataset", RUN: "--run"}

HEADER = """\
# DVC's view of the Snakemake workflow: the same steps, the same `cdrepro` commands and the same
# outputs, for each dataset and run of params.yaml (DVC reads it as `vars`). GENERATED from the
# steps' contract (src/cdrepro/steps.py) by `make dvc-yaml` (python -m cdrepro.dvc_stages): do
# not edit; tests/workflow/test_dvc.py fails when it is stale or drifts from Snakemake's jobs.
#
# Stage names: `<step>@<dataset>` or `<step>@<i>`, <i> the run's index in params.yaml's `runs:`
# (`dvc stage list` shows each one's run id, spelled as cdrepro.runs.run_id spells it).
# Deps: the data each step reads, and its code: the cdrepro modules its command imports, less
# glue and side channels (cdrepro.code_deps), the methods package as one folder.
# Params: only the sections each step reads. See docs/dvc.md.

stages:
"""


def _command(step: Step, item: Item) -> str:
    parts = ["cdrepro", step.command, "--params", "params.yaml"]
    if step.over in ITEM_OPTION:
        parts += [ITEM_OPTION[step.over], item.key]
    if step.threads:
        parts += ["--threads", "${train.cpu_threads}"]
    return " ".join(parts)


def _list(key: str, values: list[str], indent: str) -> list[str]:
    return [f"{indent}{key}:", *(f"{indent}  - {value}" for value in values)] if values else []


def stage_lines(step: Step) -> list[str]:
    """One stage of dvc.yaml, as lines."""
    item = ITEMS.get(step.over, Item())
    indent = "      " if step.over in FOREACH else "    "
    outputs = step.outputs(ROOT, item)
    lines = [f"  {step.name}:"]
    if step.over in FOREACH:
        lines += [f"    foreach: {FOREACH[step.over]}", "    do:"]
    lines += [f"{indent}desc: {step.desc.format(key=item.key)}", f"{indent}cmd: {_command(step, item)}"]
    lines += _list("deps", [str(p) for p in step.reads(ROOT, item)] + code_deps(step.command), indent)
    lines += _list("params", step.sections(item), indent)
    lines += _list("outs", [str(o.path) for o in outputs if o.kind in (OUT, DVC_ONLY)], indent)
    lines += _list("metrics", [str(o.path) for o in outputs if o.kind == METRIC], indent)
    plots = [str(o.path) for o in outputs if o.kind == PLOT]
    if plots:
        lines += [f"{indent}plots:"] + [
            line
            for path in plots
            for line in (f"{indent}  - {path}:", f"{indent}      x: epoch", f"{indent}      y: loss")
        ]
    return lines


def render() -> str:
    """The whole of dvc.yaml."""
    return HEADER + "\n\n".join("\n".join(stage_lines(step)) for step in STEPS.values()) + "\n"


def main(argv: list[str]) -> int:
    path = REPO / "dvc.yaml"
    text = render()
    if "--check" in argv:
        if path.read_text() != text:
            print(f"{path} is stale: run `make dvc-yaml` (python -m cdrepro.dvc_stages) and commit it", file=sys.stderr)
            return 1
        return 0
    path.write_text(text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
