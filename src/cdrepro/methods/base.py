"""The method interface: a backbone every method shares, plus one method's heads and loss.

A method is an ``nn.Module`` (as in solo-learn's BaseMethod): this base owns the backbone and
``forward``; a subclass adds its heads and says, as data, everything the rest of the pipeline
needs to know about it:

- ``options``: its own parameters (JSON-schema properties with defaults), checked by
  ``cdrepro.config`` wherever a params file sets them (``methods.<name>`` or a variant);
- ``heads(h)``: its named outputs besides ``h``; ``gathered``: which of them the losses need
  over the global batch under DDP;
- ``term_names()`` and ``loss(out1, out2)``: the loss terms it logs, and the total as ``loss``;
- ``stages()``: what evaluation clusters (K-means on an output) or reads (an argmax head);
- ``authors_layout``: how a checkpoint of the original authors' code maps onto its keys.

Training, evaluation, curves, MLflow, tables and figures read names from here and nowhere
else, so a new method is one module and one line in ``cdrepro.methods.METHODS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from cdrepro.backbones import make_backbone

Outputs = dict[str, torch.Tensor]
"""A forward pass's named tensors: ``h`` (B, rep_dim) from the backbone, then the heads'."""

BACKBONE_STAGE = "backbone"
"""Every method's first evaluation stage: K-means on the backbone's output h. A method's other
stages are named by constants in its own module (``simclr.PROJECTOR_STAGE``, ``cd.FEATURE_STAGE``, ...)."""
KMEANS, ARGMAX = "kmeans", "argmax"


class MethodSettings(Protocol):
    """What a method reads of a run's settings: the shared architecture, the instance loss's
    temperature, the batch size, and ``options``, the method's own parameters resolved and
    validated; ``method`` says which method builds the model (``cdrepro.methods.build_method``).
    ``cdrepro.run_settings.RunSettings`` is one; the methods do not import it (they sit below
    the settings' layer: ``tests/test_imports.py``)."""

    @property
    def method(self) -> str: ...

    @property
    def backbone(self) -> str: ...

    @property
    def backbone_width(self) -> int: ...

    @property
    def stem(self) -> str: ...

    @property
    def rep_dim(self) -> int: ...

    @property
    def hidden_dim(self) -> int: ...

    @property
    def batch_size(self) -> int: ...

    @property
    def instance_temperature(self) -> float: ...

    @property
    def options(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class Stage:
    """One evaluation stage: K-means (k = classes) on an output, or the argmax of an output
    that is already a cluster assignment (a softmax head)."""

    output: str
    assign: str = KMEANS


class LossTermsError(RuntimeError):
    """A method's loss returned other terms than it declares (a term would be dropped or
    logged under no column)."""


class Method(nn.Module):
    """Backbone -> heads. ``settings`` is the run's settings (``MethodSettings``: a
    ``cdrepro.run_settings.RunSettings`` in training); its ``options`` hold this method's own
    parameters, resolved and validated."""

    name: ClassVar[str]
    label: ClassVar[str]  # the name tables, figures and MLflow show
    options: ClassVar[Mapping[str, Mapping[str, Any]]] = {}  # JSON-schema properties, with defaults
    authors_layout: ClassVar[Mapping[str, str]] = {}  # authors' key prefix -> ours
    # Outputs the losses read across the global batch: gathered from every process under DDP
    # (those a forward pass does not return are skipped).
    gathered: ClassVar[tuple[str, ...]] = ()

    def __init__(self, settings: MethodSettings, num_classes: int) -> None:
        super().__init__()
        self.settings = settings
        self.num_classes = num_classes
        self.backbone = make_backbone(settings.backbone, settings.backbone_width, settings.stem)

    # ------------------------------------------------------------ what a method provides

    def heads(self, h: torch.Tensor) -> Outputs:
        """The method's outputs computed from the backbone's h (B, rep_dim)."""
        raise NotImplementedError

    def term_names(self) -> tuple[str, ...]:
        """The loss terms ``loss`` returns besides the total ``loss``, in curve-column order."""
        raise NotImplementedError

    def loss(self, out1: Outputs, out2: Outputs) -> dict[str, torch.Tensor]:
        """Every term of ``term_names()`` and their total ``loss``, from the two views' outputs
        (the ``gathered`` ones over the global batch)."""
        raise NotImplementedError

    def stages(self) -> dict[str, Stage]:
        """Evaluation stages in order: ``backbone`` first, the method's final stage last."""
        raise NotImplementedError

    @staticmethod
    def check_options(options: Mapping[str, Any]) -> str | None:
        """What is wrong with this combination of the method's options, or None (validate)."""
        return None

    @staticmethod
    def check_run(options: Mapping[str, Any], batch_size: int) -> str | None:
        """What keeps these resolved options from a run at this batch size, or None (validate)."""
        return None

    @classmethod
    def sigmoid_heads(cls, options: Mapping[str, Any]) -> str | None:
        """The output that is a set of per-sample sigmoid heads (B, K) in [0, 1], for the head
        activity, correlation and LIME figures; None if the method (with these options) has
        none. A classmethod: the workflow plans those figures from the params alone."""
        return None

    def on_epoch_start(self, epoch: int) -> None:
        """Hook called before each epoch's first step (0-based epoch); none by default."""

    # ------------------------------------------------------------ shared by every method

    def forward(self, x: torch.Tensor) -> Outputs:
        h = self.backbone(x)  # (B, rep_dim)
        return {"h": h, **self.heads(h)}

    def final_stage(self) -> str:
        return list(self.stages())[-1]

    def checked_terms(self, terms: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``terms`` when they are exactly the declared ones plus ``loss``; else LossTermsError."""
        declared = set(self.term_names()) | {"loss"}
        missing, extra = sorted(declared - set(terms)), sorted(set(terms) - declared)
        if missing or extra:
            problems = ([f"declares but does not return {missing}"] if missing else []) + (
                [f"returns but does not declare {extra}"] if extra else []
            )
            raise LossTermsError(
                f"method '{self.name}': loss {' and '.join(problems)}; term_names() and loss() must name the same terms"
            )
        return dict(terms)
