"""Contrastive Disentangling (SPEC: Method): SimCLR's instance branch plus a feature predictor
of K sigmoid heads, contrasted over heads, with their normalised entropy maximised.

Its variants (the paper's ablations) are switches on this one code path: ``entropy`` (NE),
``last_bn`` (BN), ``head`` (without it CD is SimCLR-like: Table 6).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from cdrepro.losses import feature_loss, normalized_entropy
from cdrepro.methods.base import BACKBONE_STAGE, MethodSettings, Outputs, Stage
from cdrepro.methods.options import switch, temperature, weight, width
from cdrepro.methods.simclr import SimCLR

FEATURE_STAGE = "feature"
"""CD's final stage: K-means on the feature predictor's output f (the paper's "feature" stage)."""


def feature_predictor(hidden_dim: int, rep_dim: int, feature_num: int, last_bn: bool) -> nn.Sequential:
    """p: K sigmoid heads on z; ``last_bn`` is the BatchNorm1d(K) of the paper's BN ablation."""
    layers: list[nn.Module] = [
        nn.Linear(hidden_dim, rep_dim, bias=False),
        nn.BatchNorm1d(rep_dim),
        nn.ReLU(inplace=True),
        nn.Linear(rep_dim, feature_num, bias=False),
    ]
    if last_bn:
        layers.append(nn.BatchNorm1d(feature_num))
    layers.append(nn.Sigmoid())
    return nn.Sequential(*layers)


def one_head_problem(options: Mapping[str, Any]) -> str | None:
    """Why one feature head is refused, or None. The feature loss contrasts the K heads with one
    another: with K = 1 the only head has no negative, so the loss is exactly 0 and CD is SimCLR
    (plus the entropy term, when on). Widths as written (1) or resolved per run."""
    if options["head"] and options["feature_num"] == 1:
        return (
            "cd option feature_num gives K = 1 feature head: the feature loss contrasts heads "
            "with one another, so with one head it is exactly 0 and CD reduces to SimCLR (plus "
            "one head's entropy term); use method simclr, or feature_num of at least 2"
        )
    return None


class ContrastiveDisentangling(SimCLR):
    name = "cd"
    label = "CD"
    gathered = ("z", "f")
    options = {
        "feature_num": width("batch_size", "K, the number of feature heads (the paper: the batch size)"),
        "head": switch(True, "keep the feature predictor and its loss; false = instance loss only (SimCLR-like)"),
        "entropy": switch(True, "subtract entropy_weight * normalized entropy from the loss (NE)"),
        "last_bn": switch(True, "keep the BatchNorm1d(K) before the feature predictor's sigmoid (BN)"),
        "feature_temperature": temperature(1.0, "tau_F of the feature loss"),
        "entropy_weight": weight(1.0, "lambda of the normalized-entropy term"),
    }
    authors_layout = {
        "resnet": "backbone",
        "instance_projector": "instance_projector",
        "feature_predictor": "feature_predictor",
    }

    @staticmethod
    def check_options(options: Mapping[str, Any]) -> str | None:
        if not options["head"] and (options["entropy"] or options["last_bn"]):
            return (
                "head is false, so entropy and last_bn must be false too (both act on the "
                "feature predictor, which a no-head variant does not have)"
            )
        return one_head_problem(options)

    @staticmethod
    def check_run(options: Mapping[str, Any], batch_size: int) -> str | None:
        return one_head_problem(options)  # half_batch gives 1 head at a batch of 2 or 3

    @classmethod
    def sigmoid_heads(cls, options: Mapping[str, Any]) -> str | None:
        return "f" if options["head"] else None

    def __init__(self, settings: MethodSettings, num_classes: int) -> None:
        super().__init__(settings, num_classes)  # CD's K is its own option, not the classes
        o = settings.options
        self.feature_predictor = (
            feature_predictor(settings.hidden_dim, settings.rep_dim, o["feature_num"], o["last_bn"])
            if o["head"]
            else None
        )

    def heads(self, h: torch.Tensor) -> Outputs:
        out = super().heads(h)  # z: (B, hidden_dim)
        if self.feature_predictor is not None:
            out["f"] = self.feature_predictor(out["z"])  # (B, K) in [0, 1]
        return out

    def term_names(self) -> tuple[str, ...]:
        return ("instance", "feature", "entropy") if self.settings.options["head"] else ("instance",)

    def loss(self, out1: Outputs, out2: Outputs) -> dict[str, torch.Tensor]:
        o = self.settings.options
        terms = super().loss(out1, out2)
        if not o["head"]:
            return terms
        terms["feature"] = feature_loss(out1["f"], out2["f"], o["feature_temperature"])
        total = terms["instance"] + terms["feature"]
        # Logged even when switched off: the curves then show what NE does on its own.
        terms["entropy"] = normalized_entropy(out1["f"], out2["f"])
        if o["entropy"]:
            total = total - o["entropy_weight"] * terms["entropy"]
        terms["loss"] = total
        return terms

    def stages(self) -> dict[str, Stage]:
        """The instance branch's stages without the feature predictor (``head: false``: the
        projector last, as SimCLR's); with it, the instance branch's backbone stage, then the
        predictor's output as the final stage."""
        instance = super().stages()
        if not self.settings.options["head"]:
            return instance
        return {BACKBONE_STAGE: instance[BACKBONE_STAGE], FEATURE_STAGE: Stage("f")}
