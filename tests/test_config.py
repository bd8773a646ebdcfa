from pathlib import Path

import pytest
import yaml

from cdrepro.config import ParamsError, load_params, validate_params
from cdrepro.run_settings import resolve_run, runs_of
from cdrepro.runs import Run, parse_run_id, run_id, tracking_name

REPO = Path(__file__).resolve().parents[1]


def test_default_params_are_valid_and_list_the_paper_structure(embedded_params):
    validate_params(embedded_params)
    ids = [run_id(r) for r in runs_of(embedded_params)]
    assert "digits-bs128-cd-s42" in ids and "digits-bs256-cd-s42" in ids
    assert {r.variant for r in runs_of(embedded_params)} == {
        "cd",
        "no_ne",
        "no_bn",
        "no_ne_no_bn",
        "no_sched",
        "no_head",
        "single_view",
        "simclr",
        "cc",
        "cld",
        "cdc",
    }
    assert {r.variant for r in runs_of(embedded_params, "compare_methods")} == {"cd", "simclr", "cc", "cld", "cdc"}


def test_run_identity_round_trips():
    run = Run("cifar100_20", 256, "no_ne_no_bn", 7)
    assert run_id(run) == "cifar100_20-bs256-no_ne_no_bn-s7"
    assert parse_run_id(run_id(run)) == run
    assert tracking_name(run) == "cifar100_20/bs256/no_ne_no_bn/seed7"


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda p: p["train"].update(learning_rate=1), "train: unknown key"),
        (lambda p: p["train"].update(epochs="ten"), "train.epochs"),
        (lambda p: p["train"].update(lr=-0.1), "train.lr"),
        (lambda p: p["model"].update(backbone="vgg16"), "model.backbone"),
        (lambda p: p["runs"][2].update(variant="no_such"), "runs[2].variant"),
        (lambda p: p["runs"][0].update(dataset="mnist"), "runs[0].dataset"),
        (lambda p: p["runs"][1].update(batch_size=1), "runs[1].batch_size"),
        (lambda p: p["variants"]["no_head"].update(entropy=True), "variants.no_head"),
        (lambda p: p["variants"]["cd"].update(views=3), "variants.cd.views"),
        (
            lambda p: p["datasets"].update(mine={"source": "folder", "color_strength": 1, "blur": False}),
            "datasets.mine.path",
        ),
        (lambda p: p["runs"].append(dict(p["runs"][0])), "duplicate"),
        (lambda p: p["train"].update(gpus_per_run=3), "runs[0].batch_size: 128 does not split evenly"),
        (lambda p: p.pop("runs"), "'runs' is a required property"),
        (lambda p: p["variants"]["cd"].update(method="nope"), "variants.cd.method: unknown method 'nope'"),
        (lambda p: p["methods"].update(nope={}), "methods.nope: unknown method 'nope'"),
        (lambda p: p["methods"]["cd"].update(feature_temperature=0), "methods.cd.feature_temperature: 0 is less"),
        (lambda p: p["methods"]["cd"].update(tau=1.0), "methods.cd.tau: 'tau' is not an option of method cd"),
        (lambda p: p["variants"]["cd"].update(head="yes"), "variants.cd.head: 'yes' is not of type 'boolean'"),
        # A CD switch on a variant of another method names both.
        (
            lambda p: p["variants"].update(sim={"method": "simclr", "entropy": False}),
            "variants.sim.entropy: 'entropy' is an option of cd, not of simclr",
        ),
    ],
)
def test_bad_params_name_the_key(embedded_params, mutate, key):
    mutate(embedded_params)
    with pytest.raises(ParamsError) as excinfo:
        validate_params(embedded_params)
    assert key in str(excinfo.value)


def test_load_params_reports_missing_and_malformed_files(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)
    # One line naming the file, line and column, and what to do.
    bad.write_text("profile: x\ntrain:\n  lr: 1\n   epochs: 2\n")
    with pytest.raises(ParamsError) as excinfo:
        load_params(bad)
    assert str(excinfo.value) == (
        f"{bad} line 4 column 10: not valid YAML: mapping values are not allowed here; fix the YAML there"
    )


def test_resolve_run_applies_switches_and_batch_size_dims(embedded_params):
    run = Run("digits", 256, "no_sched", 42)
    s = resolve_run(embedded_params, run)
    assert (s.schedule, s.grad_clip, s.options["entropy"], s.options["head"]) == (False, False, True, True)
    assert s.hidden_dim == s.options["feature_num"] == 256
    assert s.rep_dim == 8 * embedded_params["model"]["backbone_width"]
    other = resolve_run(embedded_params, Run("digits", 128, "no_sched", 42))
    assert s.digest() != other.digest()


def test_method_options_come_from_defaults_then_methods_then_the_variant(embedded_params):
    embedded_params["methods"]["cd"] = {"entropy_weight": 2}  # an int: stored as the float it means
    embedded_params["variants"]["half_ne"] = {"entropy_weight": 0.5}
    embedded_params["runs"].append({"dataset": "digits", "batch_size": 64, "variant": "half_ne", "seed": 1})
    validate_params(embedded_params)
    cd = resolve_run(embedded_params, Run("digits", 128, "cd", 42))
    half = resolve_run(embedded_params, Run("digits", 64, "half_ne", 1))
    assert cd.options["entropy_weight"] == 2.0 and isinstance(cd.options["entropy_weight"], float)
    assert cd.options["feature_temperature"] == 1.0  # the method's default
    assert half.options["entropy_weight"] == 0.5 and half.options["feature_num"] == 64
    assert (half.views, half.schedule, half.grad_clip) == (2, True, True)  # protocol defaults


@pytest.mark.parametrize(("variant", "digest"), [("cd", "783bbbe57fff7d1d"), ("no_head", "5a7ab7eea9598b58")])
def test_cd_settings_and_digests_are_those_of_runs_made_before_methods(variant, digest):
    """Flat settings without a ``method`` key, as before there were methods: the digests that
    key users' existing paper checkpoints (computed by the code before the method seam) stay."""
    params = load_params(REPO / "workflow" / "configs" / "paper.yaml")
    s = resolve_run(params, Run("stl10", 128, variant, 42))
    flat = s.to_dict()
    assert "method" not in flat and "options" not in flat
    assert {"entropy", "last_bn", "head", "feature_num", "feature_temperature", "entropy_weight"} <= set(flat)
    assert s.digest() == digest
    assert type(s).from_dict(flat) == s


def test_paper_profile_is_valid():
    params = load_params(REPO / "workflow" / "configs" / "paper.yaml")
    assert params["profile"] == "paper"


def test_batch_sizes_are_checked_against_prepared_datasets(embedded_params, tmp_path):
    import json

    from cdrepro.config import check_against_prepared, check_batch_sizes
    from cdrepro.runs import ProfilePaths

    embedded_params["results_dir"] = str(tmp_path)
    assert check_against_prepared(embedded_params) == []  # nothing prepared yet: train checks later
    meta = ProfilePaths.from_params(embedded_params).prepared_meta("digits")
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"n_images": 200}))
    with pytest.raises(
        ParamsError,
        match=r"runs\[1\]\.batch_size: 256 is larger than dataset 'digits' "
        r"\(200 images\); use a batch size of at most 200",
    ):
        check_against_prepared(embedded_params, source="p.yaml")
    check_batch_sizes(embedded_params, "digits", 256)  # 256 images suffice for every run
    meta.write_text(json.dumps({"n_images": 1797}))
    assert check_against_prepared(embedded_params) == ["digits"]
    meta.write_text("{")
    with pytest.raises(ParamsError, match="cdrepro prepare --dataset digits"):
        check_against_prepared(embedded_params)


# --- defaults: a minimal params file works; the schema's defaults are the code's --------------

# What a minimal file gets, as README.md ("Your own images") and the schema document it.
DOCUMENTED_DEFAULTS = {
    "results_dir": "results",
    "data": {"download_dir": "data/downloads", "download": True},
    "model": {"backbone_width": 64, "stem": "imagenet", "hidden_dim": "batch_size"},
    "train": {
        "lr": 3.0e-4,
        "weight_decay": 0.0,
        "instance_temperature": 0.5,
        "grad_clip_norm": 1.0,
        "device": "auto",
        "precision": "auto",
        "compile": "augment",
        "deterministic": False,
        "cpu_threads": 1,
        "gpus_per_run": 1,
    },
    "evaluate": {
        "batch_size": 256,
        "kmeans_n_init": 10,
        "kmeans_seed": 42,
        "kmeans_backend": "auto",
        "split": {"test_fraction": 0.2, "seed": 42},
        "knn": {"k": 200, "temperature": 0.07},
        "linear": {"C": 1.0, "max_iter": 1000},
    },
    "figures": {
        "dpi": 150,
        "tsne": {"sample": 1000, "perplexity": 30, "max_iter": 1000, "seed": 42},
        "heads": {"thresholds": [0.5, 0.75]},
        "lime": {
            "heads": 5,
            "images_per_head": 6,
            "threshold": 0.75,
            "num_samples": 5000,
            "num_features": 5,
            "batch_size": 250,
            "seed": 42,
            "segmentation": {"algorithm": "slic", "options": {"n_segments": 16, "compactness": 10}},
        },
    },
    "methods": {},
}
PROFILES = [
    "params.yaml",
    "workflow/configs/paper.yaml",
    "workflow/configs/quick.yaml",
    "workflow/configs/quick-cpu.yaml",
]


def readme_params(readme: Path = REPO / "README.md") -> dict:
    """The minimal params file of README.md's "Your own images" (its first YAML block)."""
    section = readme.read_text().split("## Your own images", 1)[1]
    return yaml.safe_load(section.split("```yaml\n", 1)[1].split("```", 1)[0])


def test_the_readme_minimal_params_file_validates_with_the_documented_defaults(tmp_path):
    minimal = readme_params()
    assert len(yaml.safe_dump(minimal).splitlines()) <= 25  # minimal indeed
    path = tmp_path / "my.yaml"
    path.write_text(yaml.safe_dump(minimal))
    params = load_params(path)
    for section, defaults in DOCUMENTED_DEFAULTS.items():
        written = minimal.get(section, {})
        expected = defaults | written if isinstance(defaults, dict) else minimal.get(section, defaults)
        assert params[section] == expected, section
    ((name, dataset),) = params["datasets"].items()
    assert (dataset["crop_min_scale"], params["runs"][0]["targets"]) == (0.08, ["reproduce_tables"])
    settings = resolve_run(params, runs_of(params)[0])
    assert (settings.lr, settings.device, settings.views, settings.method) == (3.0e-4, "auto", 2, "cd")


@pytest.mark.parametrize("profile", PROFILES)
def test_filling_defaults_keeps_every_written_value_and_changes_no_run(profile):
    from cdrepro.config import with_defaults

    raw = yaml.safe_load((REPO / profile).read_text())
    filled = load_params(REPO / profile)

    def written_values_kept(written, got):
        if isinstance(written, dict):
            return all(written_values_kept(value, got[key]) for key, value in written.items())
        if isinstance(written, list):  # the run entries get their default targets
            return len(written) == len(got) and all(map(written_values_kept, written, got))
        return written == got

    assert written_values_kept(raw, filled) and with_defaults(filled) == filled
    assert filled["variants"] == raw["variants"]  # switches apply per run, never filled in
    for run in runs_of(filled):
        assert resolve_run(raw, run) == resolve_run(filled, run)


# Digests of the embedded profile's runs (they key checkpoints: a change retrains everything).
# Computed before the schema had defaults; a deliberate change of params.yaml updates them.
EMBEDDED_DIGESTS = {
    "digits-bs128-cd-s42": "88d8c627eb0c4acd",
    "digits-bs256-cd-s42": "f3c36f161e3b7179",
    "digits-bs128-no_ne-s42": "de68186c602bba89",
    "digits-bs128-no_bn-s42": "694b00206b631ecf",
    "digits-bs128-no_ne_no_bn-s42": "f69a2f127d884181",
    "digits-bs128-no_sched-s42": "16dbb0c2b53674e7",
    "digits-bs128-no_head-s42": "cb065c93ce2fa629",
    "digits-bs128-single_view-s42": "09d78d59ad11a4bb",
    "digits-bs128-simclr-s42": "a847f8b0366b44bd",
    "digits-bs128-cc-s42": "96dad96dba1977a6",
    "digits-bs128-cld-s42": "681bdad7edac203c",
    "digits-bs128-cdc-s42": "194d6cab16ca7102",
}


def test_the_embedded_runs_keep_their_digests():
    """The embedded profile as it was before model.stem, hflip and the schema's defaults
    (25 epochs at 8 px since): its runs' digests, so its checkpoints, are unchanged."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    del raw["model"]["stem"], raw["datasets"]["digits"]["hflip"]
    raw["datasets"]["digits"]["crop_min_scale"] = 0.5
    raw["train"].update(epochs=15, image_size=32)
    params = validate_params(raw)
    assert {run_id(r): resolve_run(params, r).digest() for r in runs_of(params)} == EMBEDDED_DIGESTS


def test_the_per_run_defaults_are_the_schemas(embedded_params):
    """A variant's switches and a run entry's targets are defaulted per run (the variants are
    never filled in), from the schema's own defaults."""
    from cdrepro.config import VARIANT_KEYS, load_schema, variant_switches
    from cdrepro.run_settings import TARGETS, targets_of

    schema = load_schema()
    switches = {key: sub["default"] for key, sub in schema["$defs"]["switches"]["properties"].items()}
    embedded_params["variants"]["bare"] = {}
    assert variant_switches(embedded_params, "bare") == switches and tuple(switches) == VARIANT_KEYS
    targets = schema["properties"]["runs"]["items"]["properties"]["targets"]
    assert targets["items"]["enum"] == list(TARGETS)
    untagged = next(raw for raw in embedded_params["runs"] if "targets" not in raw)
    assert targets_of(embedded_params, run_id(Run(**untagged))) == targets["default"]


def test_settings_added_later_are_left_out_at_their_historical_value_only(embedded_params):
    """``SETTINGS_ADDED_LATER``: a run at the value every earlier run had keeps the settings and
    digest it had before the setting existed; any other value is in the settings and the digest."""
    import dataclasses

    from cdrepro.run_settings import SETTINGS_ADDED_LATER, RunSettings

    other = {
        "method": "simclr",
        "stem": "cifar",
        "hflip": False,
        "training_set": {"split": "official", "long_tail": {"imbalance_ratio": 10.0, "seed": 0}},
    }
    assert set(SETTINGS_ADDED_LATER) == set(other)
    base = resolve_run(embedded_params, Run("digits", 128, "cd", 42))
    historical = dataclasses.replace(base, **SETTINGS_ADDED_LATER)
    assert not set(SETTINGS_ADDED_LATER) & set(historical.to_dict())
    assert RunSettings.from_dict(historical.to_dict()) == historical
    for key, value in other.items():
        changed = dataclasses.replace(historical, **{key: value})
        assert changed.to_dict()[key] == value and changed.digest() != historical.digest(), key
        assert RunSettings.from_dict(changed.to_dict()) == changed


# --- issue 19: values the schema's bounds let through, and names and keys nothing reads -------

NAN, INF = float("nan"), float("inf")


def set_at(path: str, value):
    """A mutation setting ``value`` at a dotted key path of the params (sections made if missing)."""

    def mutate(params: dict) -> None:
        *parents, last = path.split(".")
        for key in parents:
            params = params.setdefault(key, {})
        params[last] = value

    return mutate


@pytest.mark.parametrize(
    ("key", "value", "spelled"),
    [
        ("train.lr", NAN, ".nan"),
        ("train.instance_temperature", NAN, ".nan"),
        ("train.grad_clip_norm", INF, ".inf"),
        ("datasets.digits.crop_min_scale", NAN, ".nan"),
        ("datasets.digits.color_strength", -INF, "-.inf"),
        ("methods.cd.feature_temperature", NAN, ".nan"),
        ("variants.cc.instance_temperature_c", INF, ".inf"),  # not even an option: the value is named first
        ("variants.cld.group_weight", INF, ".inf"),
        ("evaluate.batch_size", NAN, ".nan"),
        ("figures.tsne.perplexity", NAN, ".nan"),
        ("figures.lime.threshold", NAN, ".nan"),
        ("figures.lime.segmentation.options.compactness", INF, ".inf"),
    ],
)
def test_nan_and_infinity_are_refused_naming_the_key(embedded_params, key, value, spelled):
    set_at(key, value)(embedded_params)
    with pytest.raises(ParamsError) as excinfo:
        validate_params(embedded_params, source="p.yaml")
    assert str(excinfo.value) == f"p.yaml: {key}: {spelled} is not a finite number; write a finite number there"


def test_nan_written_in_yaml_and_inside_a_list_is_refused(tmp_path):
    path = tmp_path / "p.yaml"
    text = (REPO / "params.yaml").read_text()
    path.write_text(text.replace("crop_min_scale: 0.75", "crop_min_scale: .nan"))
    assert path.read_text() != text, "params.yaml changed: pick another value to replace"
    with pytest.raises(ParamsError, match=r"datasets\.digits\.crop_min_scale: \.nan is not a finite number"):
        load_params(path)
    params = yaml.safe_load(text)
    set_at("figures.heads.thresholds", [0.5, -INF])(params)
    with pytest.raises(ParamsError, match=r"figures\.heads\.thresholds\[1\]: -\.inf is not"):
        validate_params(params)


SEED_KEYS = ["runs.0.seed", "evaluate.kmeans_seed", "figures.tsne.seed", "figures.lime.seed"]


def set_seed(params: dict, key: str, value: int) -> None:
    if key.startswith("runs."):
        params["runs"][0]["seed"] = value
    else:
        set_at(key, value)(params)


@pytest.mark.parametrize("key", SEED_KEYS)
@pytest.mark.parametrize("seed", [2**32, 2**40, 2**70])
def test_seeds_are_at_most_numpys_limit(embedded_params, key, seed):
    set_seed(embedded_params, key, seed)
    with pytest.raises(ParamsError) as excinfo:
        validate_params(embedded_params, source="p.yaml")
    message, named = str(excinfo.value), key.replace("runs.0", "runs[0]")
    assert "\n" not in message and message.startswith(f"p.yaml: {named}: {seed} is greater than the maximum")
    assert "2**32 - 1 = 4294967295 (numpy's and scikit-learn's limit)" in message


@pytest.mark.parametrize("key", SEED_KEYS)
def test_the_largest_seed_numpy_takes_is_accepted(embedded_params, key):
    import numpy as np

    set_seed(embedded_params, key, 2**32 - 1)
    validate_params(embedded_params)
    np.random.RandomState(2**32 - 1)  # the bound is numpy's: one more fails
    with pytest.raises(ValueError):
        np.random.RandomState(2**32)


def test_the_pixel_baseline_variant_name_is_reserved(embedded_params):
    from cdrepro import config, results

    assert results.BASELINE_VARIANT is config.BASELINE_VARIANT == "kmeans_pixels"
    embedded_params["variants"]["kmeans_pixels"] = {"method": "simclr"}
    with pytest.raises(ParamsError) as excinfo:
        validate_params(embedded_params, source="p.yaml")
    assert str(excinfo.value) == (
        "p.yaml: variants.kmeans_pixels: the name is reserved for the raw-pixel K-means rows; rename the variant"
    )


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda p: p["variants"]["cld"].update(groups=1), "variants.cld: cld option groups gives K = 1 group"),
        (lambda p: p["methods"].update(cld={"groups": 1}), "variants.cld: cld option groups gives K = 1 group"),
        (lambda p: p["methods"]["cd"].update(feature_num=1), "variants.cd: cd option feature_num gives K = 1"),
        (lambda p: p["variants"].update(k1={"feature_num": 1}), "variants.k1: cd option feature_num gives K = 1"),
        # half_batch resolves to 1 at a batch of 2 or 3: refused per run.
        (
            lambda p: (
                p["variants"].update(half={"method": "cld", "groups": "half_batch"}),
                p["runs"].append({"dataset": "digits", "batch_size": 3, "variant": "half", "seed": 1}),
            ),
            "runs[12]: cld option groups gives K = 1 group",
        ),
        (
            lambda p: (
                p["variants"].update(half={"feature_num": "half_batch"}),
                p["runs"].append({"dataset": "digits", "batch_size": 2, "variant": "half", "seed": 1}),
            ),
            "runs[12]: cd option feature_num gives K = 1",
        ),
    ],
)
def test_one_group_or_one_head_is_refused_as_simclr_in_disguise(embedded_params, mutate, expected):
    assert len(embedded_params["runs"]) == 12
    mutate(embedded_params)
    with pytest.raises(ParamsError) as excinfo:
        validate_params(embedded_params, source="p.yaml")
    assert str(excinfo.value).startswith(f"p.yaml: {expected}")
    assert "is exactly 0" in str(excinfo.value) and "use method simclr" in str(excinfo.value)


def test_one_head_is_fine_without_the_feature_predictor_and_two_are_fine(embedded_params):
    embedded_params["variants"]["no_head"]["feature_num"] = 1  # no head: feature_num is unused
    embedded_params["variants"]["cld"]["groups"] = 2
    embedded_params["variants"]["cd"]["feature_num"] = 2
    validated = validate_params(embedded_params)  # refused values raise ParamsError (tests above)
    assert validated["variants"]["cd"]["feature_num"] == validated["variants"]["cld"]["groups"] == 2


def test_the_degenerate_terms_are_exactly_zero():
    """Why one head or one group is refused: the extra loss term is exactly 0 (no gradient)."""
    import torch

    from cdrepro.losses import cross_level_loss, feature_loss

    torch.manual_seed(0)
    f1, f2 = torch.rand(8, 1, requires_grad=True), torch.rand(8, 1)
    assert feature_loss(f1, f2).item() == 0.0
    g1, g2 = (
        torch.nn.functional.normalize(torch.randn(8, 4), dim=1),
        torch.nn.functional.normalize(torch.randn(8, 4), dim=1),
    )
    assert cross_level_loss(g1, g2, 1).item() == 0.0


@pytest.mark.parametrize(
    ("segmentation", "unknown", "algorithm"),
    [
        ({"algorithm": "slic", "options": {"n_segment": 16}}, "n_segment", "slic"),
        ({"algorithm": "quickshift", "options": {"kernel_size": 4, "n_segments": 16}}, "n_segments", "quickshift"),
        ({"algorithm": "felzenszwalb", "options": {"compactness": 10}}, "compactness", "felzenszwalb"),
    ],
)
def test_unknown_lime_segmentation_options_are_refused(embedded_params, segmentation, unknown, algorithm):
    embedded_params["figures"]["lime"]["segmentation"] = segmentation
    with pytest.raises(ParamsError) as excinfo:
        validate_params(embedded_params, source="p.yaml")
    message = str(excinfo.value)
    assert message.startswith("p.yaml: figures.lime.segmentation.options: unknown key") and "\n" not in message
    assert f"'{unknown}' was unexpected" in message and f"{algorithm} takes only these" in message


def test_the_lime_options_the_schema_allows_are_the_scikit_image_functions_own():
    """The lists in the schema name real parameters (LIME drops any other without a word)."""
    import inspect

    import skimage.segmentation

    from cdrepro.config import load_schema

    segmentation = load_schema()["properties"]["figures"]["properties"]["lime"]["properties"]["segmentation"]
    for rule in segmentation["allOf"]:
        algorithm = rule["if"]["properties"]["algorithm"]["const"]
        allowed = set(rule["then"]["properties"]["options"]["properties"])
        assert allowed <= set(inspect.signature(getattr(skimage.segmentation, algorithm)).parameters), algorithm
    assert {r["if"]["properties"]["algorithm"]["const"] for r in segmentation["allOf"]} == set(
        segmentation["properties"]["algorithm"]["enum"]
    )


@pytest.mark.parametrize("source", ["digits", "cifar10", "cifar100", "cifar100_20", "stl10"])
@pytest.mark.parametrize(("key", "value"), [("store_size", 32), ("path", "data/mine")])
def test_store_size_and_path_are_refused_where_the_source_ignores_them(embedded_params, source, key, value):
    embedded_params["datasets"]["digits"].update(source=source, **{key: value})
    with pytest.raises(ParamsError) as excinfo:
        validate_params(embedded_params, source="p.yaml")
    assert str(excinfo.value).startswith(f"p.yaml: datasets.digits.{key}: a '{source}' source ignores it")
    assert str(excinfo.value).endswith("remove the key")


def test_a_params_folder_and_a_latin1_params_file_are_named(tmp_path):
    with pytest.raises(ParamsError) as excinfo:
        load_params(tmp_path)
    assert str(excinfo.value).startswith(f"{tmp_path} is a folder, not a params file; give the path")
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("profile: x\ndatasets:\n  digits: {source: digits, title: Chiffres écrits}\n".encode("latin-1"))
    with pytest.raises(ParamsError) as excinfo:
        load_params(latin1)
    assert str(excinfo.value) == (
        f"{latin1} line 3: byte 0xe9 is not UTF-8 text (a file saved as Latin-1 "
        "or Windows-1252?); save the file as UTF-8"
    )
    latin1.write_text(latin1.read_bytes().decode("latin-1"), encoding="utf-8")  # saved as UTF-8
    with pytest.raises(ParamsError, match="'model' is a required property"):  # read: on to the schema
        load_params(latin1)


# --- issue 22: the training set and a folder's test split ----------------------------------------


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"test_path": "data/test"}, r"datasets\.digits\.test_path: only a 'folder' source reads a test folder"),
        (
            {"long_tail": {"imbalance_ratio": 10, "seed": 0}},
            r"datasets\.digits\.long_tail: .*needs datasets\.digits\.train_on: train",
        ),
        ({"correlated": {"repeats": 2}}, r"datasets\.digits\.correlated: .*needs datasets\.digits\.train_on: train"),
        (
            {"train_on": "train", "long_tail": {"imbalance_ratio": 0.5, "seed": 0}},
            r"datasets\.digits\.long_tail\.imbalance_ratio: .*at least 1",
        ),
        (
            {"train_on": "train", "long_tail": {"imbalance_ratio": 10}},
            r"datasets\.digits\.long_tail: 'seed' is a required property",
        ),
        ({"train_on": "train", "correlated": {"repeats": 0}}, r"datasets\.digits\.correlated\.repeats"),
    ],
)
def test_training_set_keys_are_checked_naming_the_key(embedded_params, keys, expected):
    embedded_params["datasets"]["digits"].update(keys)
    with pytest.raises(ParamsError, match=expected) as info:
        validate_params(embedded_params)
    assert "\n" not in str(info.value)


def test_the_training_set_is_in_the_digest_only_when_set(embedded_params):
    """train_on: all (the default) keeps every run's digest; train (and a long tail) changes it."""
    run = runs_of(embedded_params)[0]
    before = resolve_run(validate_params(embedded_params), run)
    assert before.training_set is None and "training_set" not in before.to_dict()
    embedded_params["datasets"]["digits"]["train_on"] = "train"
    train = resolve_run(validate_params(embedded_params), run)
    embedded_params["datasets"]["digits"]["long_tail"] = {"imbalance_ratio": 10, "seed": 0}
    tail = resolve_run(validate_params(embedded_params), run)
    assert len({before.digest(), train.digest(), tail.digest()}) == 3
    assert train.training_set == {"split": {"test_fraction": 0.2, "seed": 42}}  # digits: the stratified split
