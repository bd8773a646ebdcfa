"""A trained run's outputs on its dataset, as evaluation computes them, for the figures."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cdrepro.config import RunSettings
from cdrepro.data.prepared import PreparedDataset
from cdrepro.device import select_device
from cdrepro.evaluate import embed, load_model
from cdrepro.model import ContrastiveDisentangling


@dataclass
class EmbeddedRun:
    settings: RunSettings
    model: ContrastiveDisentangling  # in eval mode, on ``device``
    device: torch.device
    data: PreparedDataset
    indices: np.ndarray  # (n,) the images embedded, positions in ``data``
    backbone: np.ndarray  # (n, rep_dim) h
    final: np.ndarray  # (n, K) feature heads f in [0, 1]; (n, hidden_dim) projector z without a head

    @property
    def labels(self) -> np.ndarray:
        return self.data.labels[self.indices]

    @property
    def final_stage(self) -> str:
        """What ``final`` is, named as metrics.json names it."""
        return "feature" if self.settings.head else "projector"


def embed_run(settings: RunSettings, data: PreparedDataset, model_path: Path, batch_size: int,
              indices: np.ndarray | None = None) -> EmbeddedRun:
    """Load the run's model (refused if trained with other settings) and embed the images at
    ``indices`` (every image when None) with the evaluation transform."""
    device = select_device(settings.device)
    model = load_model(model_path, settings)
    chosen = np.arange(len(data)) if indices is None else np.asarray(indices)
    backbone, final = embed(model, data.images[chosen], settings.image_size, batch_size, device,
                            settings.precision)
    return EmbeddedRun(settings, model.eval(), device, data, chosen, backbone, final)
