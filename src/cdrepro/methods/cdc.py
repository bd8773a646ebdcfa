"""CDC, Contrastive representation Disentanglement for Clustering (Ding et al., arXiv 2306.05439),
RECONSTRUCTED from its abstract: no code or full text was reachable (METHODS.md: CDC).

What the abstract fixes: a categorical part under an equipartition constraint and an
instance-specific part, one contrastive loss on both that weights negatives of the same
category up. Everything else here is ours, and every such choice with a number is an option:

- categorical head: Linear(rep_dim, rep_dim) -> ReLU -> Linear(rep_dim, K) logits, K = classes;
  p = softmax(logits). Instance head: Linear(rep_dim, rep_dim) -> ReLU -> Linear(rep_dim,
  feature_dim), L2-normalised -> z. CC's head layout (no BatchNorm), CDC being a clustering
  head on a contrastive backbone as CC is;
- equipartition: SwAV's Sinkhorn-Knopp on each view's detached logits (over the global batch)
  gives balanced targets q_v; swapped cross-entropy CE(q_2, p_1) + CE(q_1, p_2);
- contrast: NT-Xent on r = normalize([alpha * p ; z]): two images whose categorical parts agree
  are closer in r, so same-category negatives weigh more in the softmax;
- loss = contrast + categorical_weight * swap; final stage: argmax of the logits.
Docs: docs/methods.md, "CDC (reconstructed)".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cdrepro.losses import joint_representation, nt_xent, sinkhorn_knopp, swapped_prediction_loss
from cdrepro.methods.base import ARGMAX, BACKBONE_STAGE, Method, MethodSettings, Outputs, Stage
from cdrepro.methods.cc import CLUSTER_STAGE, mlp_head
from cdrepro.methods.options import count, temperature, weight


class ContrastiveDisentanglementForClustering(Method):
    name = "cdc"
    label = "CDC (reconstructed)"
    # Sinkhorn balances clusters over the batch and the contrast's negatives are the batch: both
    # need every rank's rows (p is recomputed from the gathered logits).
    gathered = ("z", "logits")
    options = {
        "feature_dim": count(128, "width of the instance part z (ours, as CC's 128)"),
        "alpha": weight(1.0, "weight of p in r = normalize([alpha p; z]) (ours: a confident p then has the norm of z)"),
        "contrast_temperature": temperature(0.5, "tau of the NT-Xent on r (ours, as the instance loss)"),
        "categorical_weight": weight(1.0, "weight of the swapped equipartition term (ours)"),
        "sinkhorn_epsilon": temperature(0.05, "Sinkhorn-Knopp's epsilon (ours, SwAV's 0.05)"),
        "sinkhorn_iterations": count(3, "Sinkhorn-Knopp iterations (ours, SwAV's 3)"),
    }
    authors_layout = {}  # no released code or checkpoints

    def __init__(self, settings: MethodSettings, num_classes: int) -> None:
        super().__init__(settings, num_classes)
        self.categorical_head = mlp_head(settings.rep_dim, num_classes)
        self.instance_head = mlp_head(settings.rep_dim, settings.options["feature_dim"])

    def heads(self, h: torch.Tensor) -> Outputs:
        logits = self.categorical_head(h)  # (B, K)
        z = F.normalize(self.instance_head(h), dim=1)  # (B, feature_dim), unit rows
        return {"z": z, "logits": logits}

    def term_names(self) -> tuple[str, ...]:
        return ("contrast", "swap")

    def loss(self, out1: Outputs, out2: Outputs) -> dict[str, torch.Tensor]:
        o = self.settings.options
        l1, l2 = out1["logits"], out2["logits"]  # (B, K) each, the global batch
        # Targets from the detached logits: the constraint shapes p, it is not a path for gradients.
        q1 = sinkhorn_knopp(l1, o["sinkhorn_epsilon"], o["sinkhorn_iterations"])  # (B, K)
        q2 = sinkhorn_knopp(l2, o["sinkhorn_epsilon"], o["sinkhorn_iterations"])
        swap = swapped_prediction_loss(l1, l2, q1, q2)
        r1 = joint_representation(l1.float().softmax(dim=1), out1["z"].float(), o["alpha"])  # (B, K + d)
        r2 = joint_representation(l2.float().softmax(dim=1), out2["z"].float(), o["alpha"])
        contrast = nt_xent(r1, r2, o["contrast_temperature"])
        return {"contrast": contrast, "swap": swap, "loss": contrast + o["categorical_weight"] * swap}

    def stages(self) -> dict[str, Stage]:
        # argmax of the logits is argmax of p: no softmax needed at evaluation.
        return {BACKBONE_STAGE: Stage("h"), CLUSTER_STAGE: Stage("logits", ARGMAX)}
