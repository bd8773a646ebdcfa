"""Every method by name. A new method is a module beside these and one line here."""

from __future__ import annotations

from types import SimpleNamespace

from cdrepro.methods.base import ARGMAX, KMEANS, Method, MethodSettings, Stage
from cdrepro.methods.cc import ContrastiveClustering
from cdrepro.methods.cd import ContrastiveDisentangling
from cdrepro.methods.cdc import ContrastiveDisentanglementForClustering
from cdrepro.methods.cld import CrossLevelDiscrimination
from cdrepro.methods.simclr import SimCLR

METHODS: dict[str, type[Method]] = {
    "cd": ContrastiveDisentangling,
    "simclr": SimCLR,
    "cc": ContrastiveClustering,
    "cld": CrossLevelDiscrimination,
    "cdc": ContrastiveDisentanglementForClustering,
}


def method_class(name: str) -> type[Method]:
    if name not in METHODS:
        raise ValueError(f"unknown method '{name}' (known: {', '.join(sorted(METHODS))})")
    return METHODS[name]


def build_method(settings: MethodSettings, num_classes: int) -> Method:
    """The model of one run: its method's backbone and heads (``settings``: a RunSettings)."""
    return method_class(settings.method)(settings, num_classes)


__all__ = [
    "METHODS",
    "Method",
    "MethodSettings",
    "Stage",
    "build_method",
    "describe_methods",
    "method_class",
    "stages_under",
]


def stages_under(cls: type[Method], options: dict) -> dict[str, Stage]:
    """``cls``'s evaluation stages under these option values, without building its layers:
    ``stages()`` reads nothing of a run but ``settings.options``."""
    model = cls.__new__(cls)
    object.__setattr__(model, "settings", SimpleNamespace(options=options))
    return model.stages()


def _stage_words(stages: dict[str, Stage]) -> str:
    """``backbone (K-means on h), feature (K-means on f)``: each stage, how it clusters, on what."""
    how = {KMEANS: "K-means on", ARGMAX: "argmax of"}
    return ", ".join(f"{name} ({how[stage.assign]} {stage.output})" for name, stage in stages.items())


def describe_methods() -> str:
    """Each method's name, label, evaluation stages (with its options' defaults; and each
    switch that changes them, flipped) and options with their defaults, for ``cdrepro methods``."""
    lines = []
    for name, cls in METHODS.items():
        lines.append(f"{name}: {cls.label}")
        defaults = {option: spec["default"] for option, spec in cls.options.items()}
        stages = stages_under(cls, defaults)
        lines.append(f"  evaluation stages (the last is the final stage): {_stage_words(stages)}")
        for option, spec in cls.options.items():
            if spec.get("type") == "boolean":
                flipped = stages_under(cls, {**defaults, option: not defaults[option]})
                if flipped != stages:
                    lines.append(f"    with {option} {str(not defaults[option]).lower()}: {_stage_words(flipped)}")
        for option, spec in cls.options.items():
            lines.append(f"  {option} (default {spec['default']}): {spec.get('description', '')}")
    return "\n".join(lines)
