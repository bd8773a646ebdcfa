"""Declaring a method's options: each a JSON-schema property with its default and description,
which ``cdrepro.config`` validates and ``cdrepro methods`` lists."""

from __future__ import annotations

from typing import Any

Option = dict[str, Any]


def temperature(default: float, description: str) -> Option:
    """A number above 0."""
    return {"type": "number", "exclusiveMinimum": 0, "default": default, "description": description}


def weight(default: float, description: str) -> Option:
    """A number of at least 0."""
    return {"type": "number", "minimum": 0, "default": default, "description": description}


def count(default: int, description: str) -> Option:
    """A whole number of at least 1."""
    return {"type": "integer", "minimum": 1, "default": default, "description": description}


def width(default: int | str, description: str) -> Option:
    """A width: a whole number, ``batch_size`` or ``half_batch`` (resolved per run)."""
    return {"$ref": "#/$defs/dim", "default": default, "description": description}


def switch(default: bool, description: str) -> Option:
    return {"type": "boolean", "default": default, "description": description}


def choice(default: str, choices: tuple[str, ...], description: str) -> Option:
    return {"type": "string", "enum": list(choices), "default": default, "description": description}
