"""Variants of the methods under test, small enough for a CPU test."""


def tiny_variant(params: dict, method: str, **options) -> None:
    """A variant named ``method`` of that method, with ``options``, on a width-4 ResNet-18
    (rep_dim 32)."""
    params["model"]["backbone_width"] = 4
    params["variants"][method] = {"method": method, **options}
