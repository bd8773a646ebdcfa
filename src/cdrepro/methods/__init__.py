"""Every method by name. A new method is a module beside these and one line here."""

from __future__ import annotations

from cdrepro.methods.base import Method, Stage
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
DEFAULT_METHOD = "cd"


def method_class(name: str) -> type[Method]:
    if name not in METHODS:
        raise ValueError(f"unknown method '{name}' (known: {', '.join(sorted(METHODS))})")
    return METHODS[name]


def build_method(settings, num_classes: int) -> Method:
    """The model of one run: its method's backbone and heads (``settings``: RunSettings)."""
    return method_class(settings.method)(settings, num_classes)


__all__ = ["METHODS", "DEFAULT_METHOD", "Method", "Stage", "build_method", "describe_methods", "method_class"]


def describe_methods() -> str:
    """Each method's name, label and options with their defaults, for ``cdrepro methods``."""
    lines = []
    for name, cls in METHODS.items():
        lines.append(f"{name}: {cls.label}")
        for option, spec in cls.options.items():
            lines.append(f"  {option} (default {spec['default']}): {spec.get('description', '')}")
    return "\n".join(lines)
