# Helpers shared by the rules: the params (validated), the run list and the paths, all from
# the cdrepro package so that the workflow and the CLI cannot disagree.
import os
import sys

from snakemake.utils import validate

try:
    from cdrepro import config as cdconfig
    from cdrepro import run_settings as cdruns
    from cdrepro import gpu_slots as cdslots
    from cdrepro.runs import ProfilePaths, run_id
    from cdrepro.data.fingerprint import folder_fingerprint
    from cdrepro.data.training_set import TRAINING_SET_KEYS
    from cdrepro.results import comparison_target
    from cdrepro.steps import DATASET, RUN, STEPS, Item
except ImportError:
    print(
        "cdrepro: error: this snakemake's Python has no cdrepro package; activate the project's "
        "environment first (source .venv/bin/activate, after `make setup`; or conda activate "
        "cdrepro) and run snakemake again",
        file=sys.stderr,
    )
    sys.exit(1)

# The jobs call `cdrepro`: the one installed beside this snakemake's Python, even when its
# environment is not activated (snakemake called by its full path).
os.environ.update(PATH=os.pathsep.join([os.path.dirname(sys.executable), *os.get_exec_path()]))


def stop(message):
    """A params problem as one line (Snakemake would add the schema, the config and a traceback)."""
    print(f"cdrepro: error: {message}", file=sys.stderr)
    sys.exit(1)


# The CLI reads the params file itself, so the file must be the whole truth: overrides given
# with --config would reach Snakemake but not the steps it runs. cdrepro.config validates it
# first, so that an error names the key in one line.
PARAMS_FILE = os.path.relpath(workflow.configfiles[-1])
if not config:
    stop(
        f"{PARAMS_FILE} holds no settings: put the params there (cp params.yaml {PARAMS_FILE} to "
        "start from the embedded profile), or leave --configfile out to run params.yaml"
    )
try:
    PARAMS = cdconfig.load_params(PARAMS_FILE)  # the schema's defaults filled in
    if cdconfig.with_defaults(config) != PARAMS:
        stop(
            f"the config differs from {PARAMS_FILE}; put changes in a params file and pass it "
            "with --configfile (--config overrides are not supported)"
        )
except cdconfig.ParamsError as exc:
    stop(str(exc).replace("\n", " "))
# The rules see the values the steps read: the file with the schema's defaults filled in.
config.update(PARAMS)
# The schema once more, as Snakemake's own check (it passes here). set_default=False:
# Snakemake's filler would also fill each variant's switches, which apply per run instead.
validate(config, "../schemas/params.schema.yaml", set_default=False)

# Jobs find the params file through the environment rather than their command lines: the
# command line is a rerun trigger ("code"), and the same settings read from another path must
# not re-run anything. What each step reads of the file is passed as params instead.
os.environ["CDREPRO_PARAMS"] = PARAMS_FILE


envvars:
    "CDREPRO_PARAMS",


PATHS = ProfilePaths.from_params(config)
RUNS = {run_id(run): run for run in cdruns.runs_of(config)}
DATASETS = sorted({run.dataset for run in RUNS.values()})
# What each target builds (a run's `targets:`): the paper's tables its runs; each comparison
# (the methods, many clusters, long tail) the runs tagged for it, or every run if none is.
TABLE_RUNS = [run_id(run) for run in cdruns.runs_of(config, "reproduce_tables")]
TARGET_RUNS = {
    target: [run_id(run) for run in cdruns.runs_of(config, comparison_target(config, target))]
    for target in cdruns.TARGETS[1:]
}
LOGS = PATHS.logs_dir()
CPU_THREADS = config["train"]["cpu_threads"]
# What the jobs ask a cluster for (the SLURM plugin's sbatch --gpus): GPUs on cuda.
GPUS_PER_RUN = config["train"]["gpus_per_run"] if config["train"]["device"] == "cuda" else 0
# Evaluation and figures embed with one process: one GPU whatever training used.
GPUS_PER_EVAL = 1 if config["train"]["device"] == "cuda" else 0
# On this machine: its GPU slots (GPUs x gpus.runs_per_gpu; none on the CPU unless gpus.count
# simulates some), which the jobs take themselves (cdrepro.gpu_slots). The Snakefile makes
# their number a resource, so that no job waits for a slot: Snakemake starts no more.
GPU_SLOTS = cdslots.machine_slots(config)
SLOTS_PER_RUN = config["train"]["gpus_per_run"] if GPU_SLOTS else 0
SLOTS_PER_EVAL = 1 if GPU_SLOTS else 0


wildcard_constraints:
    dataset="|".join(DATASETS),
    run="|".join(RUNS),


def run_settings(wildcards):
    """Everything a run's training reads: a change re-runs it (params rerun trigger)."""
    return cdruns.resolve_run(config, RUNS[wildcards.run]).to_dict()


def datasets_of(rids):
    return sorted({RUNS[rid].dataset for rid in rids})


def prepared_of_run(wildcards):
    return str(PATHS.prepared(RUNS[wildcards.run].dataset))


def split_of_run(wildcards):
    return str(PATHS.split(RUNS[wildcards.run].dataset))


DATASET_DEFAULTS = cdconfig.dataset_defaults()


def dataset_params(wildcards):
    """prepare's rerun trigger. A dataset key at its schema default is left out, as files
    written before the key had a default lack it: filling the default in re-prepares (and so
    retrains) nothing. So are the keys of the training set (train_on, long_tail, correlated):
    they pick images at training, the prepared file is the same."""
    dataset = cdconfig.dataset_settings(config, wildcards.dataset)
    trigger = {
        "dataset": {
            key: value
            for key, value in dataset.items()
            if key not in TRAINING_SET_KEYS and (key not in DATASET_DEFAULTS or value != DATASET_DEFAULTS[key])
        },
        "data": cdconfig.data_settings(config),
    }
    if "path" in dataset:  # a folder's files can change without any param: see their fingerprint
        trigger["files"] = folder_fingerprint(dataset["path"])
    if "test_path" in dataset:
        trigger["test_files"] = folder_fingerprint(dataset["test_path"])
    return trigger


# Each rule's outputs and params come from its step's contract (cdrepro.steps), which DVC's
# stages are generated from too: the two cannot drift.
WILDCARD_ITEMS = {DATASET: Item("{dataset}", "{dataset}"), RUN: Item("{run}")}


def step_output(name):
    """The rule's outputs, by name, with the item's wildcard in their paths."""
    step = STEPS[name]
    return step.output(PATHS, WILDCARD_ITEMS.get(step.over, Item()))


def step_params(name):
    """The params sections the step reads, as its rule's rerun trigger (for every job)."""
    step = STEPS[name]

    def trigger(wildcards):
        if step.over == RUN:
            run = RUNS[wildcards.run]
            return step.trigger(config, Item(wildcards.run, run.dataset, run.variant))
        if step.over == DATASET:
            return step.trigger(config, Item(wildcards.dataset, wildcards.dataset))
        return step.trigger(config)

    return trigger
