"""A trained run's outputs on its dataset, as evaluation computes them, for the figures."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cdrepro.data.prepared import PreparedDataset
from cdrepro.device import select_device
from cdrepro.evaluate import embed, load_model
from cdrepro.methods import Method, Stage, method_class
from cdrepro.run_settings import RunSettings


@dataclass
class EmbeddedRun:
    settings: RunSettings
    model: Method  # in eval mode, on ``device``
    device: torch.device
    data: PreparedDataset
    indices: np.ndarray  # (n,) the images embedded, positions in ``data``
    outputs: dict[str, np.ndarray]  # output name -> (n, width): the stages' outputs, the heads'
    stages: dict[str, Stage]  # the method's evaluation stages, backbone first, final last
    heads: str | None  # the output that is per-sample sigmoid heads (None: the method has none)

    @property
    def labels(self) -> np.ndarray:
        return self.data.labels[self.indices]

    @property
    def shown_stages(self) -> list[str]:
        """The stages the figures show: the backbone and the method's final stage."""
        names = list(self.stages)
        return list(dict.fromkeys([names[0], names[-1]]))

    def stage_features(self, stage: str) -> np.ndarray:
        """(n, width) the output a stage clusters."""
        return self.outputs[self.stages[stage].output]

    @property
    def head_values(self) -> np.ndarray:
        """(n, K) the sigmoid heads' outputs in [0, 1]."""
        if self.heads is None:
            raise ValueError(f"run {self.settings.run_id}: method {self.settings.method} has no sigmoid heads")
        return self.outputs[self.heads]


def embed_run(
    settings: RunSettings, data: PreparedDataset, model_path: Path, batch_size: int, indices: np.ndarray | None = None
) -> EmbeddedRun:
    """Load the run's model (refused if trained with other settings or data) and embed the images at
    ``indices`` (every image when None) with the evaluation transform: every output a stage
    reads, and the sigmoid heads if the method has them."""
    device = select_device(settings.device)
    model = load_model(model_path, settings, data)
    stages = model.stages()
    heads = method_class(settings.method).sigmoid_heads(settings.options)
    names = tuple(dict.fromkeys([stage.output for stage in stages.values()] + ([heads] if heads else [])))
    chosen = np.arange(len(data)) if indices is None else np.asarray(indices)
    outputs = embed(
        model, data.images[chosen], settings.image_size, batch_size, device, settings.precision, outputs=names
    )
    return EmbeddedRun(settings, model.eval(), device, data, chosen, outputs, stages, heads)
