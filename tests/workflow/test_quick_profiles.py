"""The quick profile (one GPU-hour on CIFAR-10) and its CPU rung: planned, and what they set."""

import re

import pytest
from test_snakemake import REPO, snakemake

from cdrepro.config import ParamsError, load_params, validate_params
from cdrepro.methods import METHODS
from cdrepro.run_settings import resolve_run, runs_of

PROFILES = {"quick": REPO / "workflow/configs/quick.yaml", "quick-cpu": REPO / "workflow/configs/quick-cpu.yaml"}
CLUSTERS = REPO / "workflow/configs/quick-clusters.yaml"
LONG_TAIL = REPO / "workflow/configs/quick-long-tail.yaml"


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_reproduce_tables_plans_every_method_at_batch_256_with_the_cifar_stem(profile):
    # --forceall: the whole plan, whatever a developer's results/ already holds.
    result = snakemake("-n", "--forceall", "reproduce_tables", "--configfile", str(PROFILES[profile]), cwd=REPO)
    assert result.returncode == 0, result.stderr
    planned = set(re.findall(r"wildcards: run=(\S+)", result.stdout))
    params = load_params(PROFILES[profile])
    settings = [resolve_run(params, run) for run in runs_of(params, "reproduce_tables")]
    assert {s.method for s in settings} == set(METHODS)
    assert planned == {s.run_id for s in settings}
    for s in settings:
        assert (s.dataset, s.batch_size, s.stem, s.backbone) == ("cifar10", 256, "cifar", "resnet18")
    assert {s.method for s in (resolve_run(params, r) for r in runs_of(params, "compare_methods"))} == set(METHODS)


def test_the_cpu_rung_is_the_quick_profile_at_another_scale():
    """Only sizes (images, width, epochs) and device differ: the rung's numbers speak for the
    quick profile's protocol."""
    quick, rung = (load_params(PROFILES[name]) for name in ("quick", "quick-cpu"))
    assert rung["datasets"]["cifar10"]["images_per_class"] * 10 == 10_000
    for seed in (43, 44):  # three seeds: the fewest that can tell two methods apart
        assert [{**run, "seed": seed} for run in quick["runs"]] == [r for r in rung["runs"] if r["seed"] == seed]
    assert [run for run in rung["runs"] if run["seed"] == 42] == quick["runs"]
    for key in ("variants", "methods", "evaluate"):
        if key == "evaluate":
            assert {k: v for k, v in quick[key].items() if k != "batch_size"} == {
                k: v for k, v in rung[key].items() if k != "batch_size"
            }
        else:
            assert quick[key] == rung[key], key
    same_training = ("lr", "weight_decay", "instance_temperature", "grad_clip_norm")
    assert {k: quick["train"][k] for k in same_training} == {k: rung["train"][k] for k in same_training}


def test_the_quick_many_clusters_profile_plans_every_method_at_k20_and_k100():
    """The quick profile's protocol on CIFAR-100-20 and CIFAR-100: only datasets and runs differ."""
    result = snakemake("-n", "--forceall", "many_clusters", "--configfile", str(CLUSTERS), cwd=REPO)
    assert result.returncode == 0, result.stderr
    quick, clusters = load_params(PROFILES["quick"]), load_params(CLUSTERS)
    settings = [resolve_run(clusters, run) for run in runs_of(clusters, "many_clusters")]
    assert {(s.dataset, s.batch_size, s.method) for s in settings} == {
        (d, 256, m) for d in ("cifar100_20", "cifar100") for m in METHODS
    }
    assert set(re.findall(r"wildcards: run=(\S+)", result.stdout)) == {s.run_id for s in settings}
    assert re.search(r"^many_clusters_table\s+1$", result.stdout, flags=re.M)
    assert {clusters["datasets"][d]["source"] for d in ("cifar100_20", "cifar100")} == {"cifar100_20", "cifar100"}
    differ = {"profile", "datasets", "runs"}
    assert {k: v for k, v in quick.items() if k not in differ} == {k: v for k, v in clusters.items() if k not in differ}


def test_the_quick_long_tail_profile_plans_every_method_balanced_and_at_ratios_10_and_100():
    """The quick profile's protocol on CIFAR-10's train split, balanced and long-tailed: only
    datasets and runs differ."""
    result = snakemake("-n", "--forceall", "long_tail", "--configfile", str(LONG_TAIL), cwd=REPO)
    assert result.returncode == 0, result.stderr
    quick, long_tail = load_params(PROFILES["quick"]), load_params(LONG_TAIL)
    settings = [resolve_run(long_tail, run) for run in runs_of(long_tail, "long_tail")]
    datasets = ("cifar10_train", "cifar10_lt10", "cifar10_lt100")
    assert {(s.dataset, s.batch_size, s.method) for s in settings} == {(d, 256, m) for d in datasets for m in METHODS}
    assert set(re.findall(r"wildcards: run=(\S+)", result.stdout)) == {s.run_id for s in settings}
    assert re.search(r"^long_tail_table\s+1$", result.stdout, flags=re.M)
    assert [long_tail["datasets"][d].get("long_tail", {}).get("imbalance_ratio") for d in datasets] == [None, 10, 100]
    assert all(long_tail["datasets"][d]["train_on"] == "train" for d in datasets)
    differ = {"profile", "datasets", "runs"}
    assert {k: v for k, v in quick.items() if k not in differ} == {
        k: v for k, v in long_tail.items() if k not in differ
    }


def test_stem_and_hflip_change_the_digest_only_when_set_to_something_new(embedded_params):
    """Runs made before model.stem and datasets.*.hflip existed keep their digests."""
    del embedded_params["model"]["stem"], embedded_params["datasets"]["digits"]["hflip"]
    run = runs_of(embedded_params)[0]
    before = resolve_run(embedded_params, run)
    embedded_params["model"]["stem"] = "imagenet"
    embedded_params["datasets"]["digits"]["hflip"] = True
    assert resolve_run(embedded_params, run).digest() == before.digest()
    embedded_params["model"]["stem"] = "cifar"
    cifar = resolve_run(embedded_params, run)
    embedded_params["datasets"]["digits"]["hflip"] = False
    no_flip = resolve_run(embedded_params, run)
    assert len({before.digest(), cifar.digest(), no_flip.digest()}) == 3
    assert (cifar.stem, no_flip.hflip) == ("cifar", False)


def test_images_per_class_is_refused_on_a_source_that_cannot_be_subsampled(embedded_params):
    embedded_params["datasets"]["digits"]["images_per_class"] = 100
    with pytest.raises(ParamsError, match=r"datasets\.digits\.images_per_class: only a 'folder' source"):
        validate_params(embedded_params)
