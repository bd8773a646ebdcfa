"""Contrastive Clustering (Li et al., AAAI 2021; METHODS.md: CC): an instance head and a cluster
head side by side on h, contrasted over samples and over clusters respectively.

The layers are those of the authors' ``modules/network.py`` (github Yunfan-Li/
Contrastive-Clustering), with the same attribute names and Sequential indices, so one of their
checkpoints (``resnet.*``, ``instance_projector.{0,2}.*``, ``cluster_projector.{0,2}.*``) maps
1:1 onto this model once ``resnet`` is renamed ``backbone``. Neither head has BatchNorm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cdrepro.losses import cluster_contrast_loss, cluster_entropy, instance_loss
from cdrepro.methods.base import ARGMAX, BACKBONE_STAGE, Method, MethodSettings, Outputs, Stage
from cdrepro.methods.options import count, temperature

CLUSTER_STAGE = "cluster"
"""The final stage of a method with a cluster head: the argmax of its output (CC's; CDC's)."""


def mlp_head(rep_dim: int, out_dim: int) -> nn.Sequential:
    """CC's head: Linear(rep_dim, rep_dim) -> ReLU -> Linear(rep_dim, out_dim), both with bias,
    no BatchNorm (its instance projector; CDC's heads)."""
    return nn.Sequential(nn.Linear(rep_dim, rep_dim), nn.ReLU(), nn.Linear(rep_dim, out_dim))


def cc_cluster_projector(rep_dim: int, clusters: int) -> nn.Sequential:
    """``mlp_head`` to K, then a softmax over the K clusters (indices 0-3, as CC's keys)."""
    return nn.Sequential(*mlp_head(rep_dim, clusters), nn.Softmax(dim=1))


class ContrastiveClustering(Method):
    name = "cc"
    label = "CC"
    # Both contrasts and the entropy term are over the batch: under DDP they need every rank's rows.
    gathered = ("z", "y")
    options = {
        "feature_dim": count(128, "width of the instance head's output z (CC: 128)"),
        "cluster_temperature": temperature(
            1.0, "tau_C of the cluster-column contrast (CC: 1.0); tau_I is train.instance_temperature"
        ),
    }
    authors_layout = {
        "resnet": "backbone",
        "instance_projector": "instance_projector",
        "cluster_projector": "cluster_projector",
    }

    def __init__(self, settings: MethodSettings, num_classes: int) -> None:
        super().__init__(settings, num_classes)
        # K is the dataset's number of classes (10; 20 for CIFAR-100-20), as in CC.
        self.instance_projector = mlp_head(settings.rep_dim, settings.options["feature_dim"])
        self.cluster_projector = cc_cluster_projector(settings.rep_dim, num_classes)

    def heads(self, h: torch.Tensor) -> Outputs:
        z = F.normalize(self.instance_projector(h), dim=1)  # (B, feature_dim), unit rows as CC's
        y = self.cluster_projector(h)  # (B, K), rows sum to 1
        return {"z": z, "y": y}

    def term_names(self) -> tuple[str, ...]:
        return ("instance", "cluster", "entropy")

    def loss(self, out1: Outputs, out2: Outputs) -> dict[str, torch.Tensor]:
        instance = instance_loss(out1["z"], out2["z"], self.settings.instance_temperature)
        cluster = cluster_contrast_loss(out1["y"], out2["y"], self.settings.options["cluster_temperature"])
        # CC's code form, H_a + H_b with weight 1: it is added, as log K - H(p) is 0 when the
        # batch's mass is spread evenly over the clusters.
        entropy = cluster_entropy(out1["y"]) + cluster_entropy(out2["y"])
        return {"instance": instance, "cluster": cluster, "entropy": entropy, "loss": instance + cluster + entropy}

    def stages(self) -> dict[str, Stage]:
        # The cluster head's argmax is CC's clustering: no K-means on top of it.
        return {BACKBONE_STAGE: Stage("h"), CLUSTER_STAGE: Stage("y", ARGMAX)}
