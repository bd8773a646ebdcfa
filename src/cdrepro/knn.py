"""Weighted k-nearest-neighbour accuracy of frozen features, on whatever torch device they are on.

The protocol of the instance-discrimination literature: features of the train split form the
*bank*, each test image (a *query*) is classified by its ``k`` nearest bank images under cosine
similarity (dot product of L2-normalised features), each neighbour ``i`` voting
``exp(s_i / T)`` for its label, and the query takes the label with the largest summed vote.

The params' defaults (``evaluate.knn`` in the schema), k = 200 and T = 0.07, and where they
come from:

* Wu, Xiong, Yu, Lin, "Unsupervised feature learning via non-parametric instance
  discrimination", CVPR 2018 (NPID): the weighted kNN above with k = 200 and the temperature
  of its training loss, 0.07 on ImageNet. Its code (github zhirongw/lemniscate.pytorch, README:
  "runs testing with default K=200 neighbors") passes the training temperature ``--nce-t`` as
  the kNN's sigma.
* CLD (Wang, Liu, Yu, CVPR 2021), whose published CIFAR numbers are this kNN accuracy:
  github frank-xwang/CLD-UnsupervisedLearning, ``test.py: kNN(epoch, net, lemniscate,
  trainloader, testloader, K, sigma, ...)``, read for this module. It takes the top ``K`` of
  ``features @ bank.T`` (features L2-normalised by the model's last ``Normalize(2)``, so this is
  cosine similarity), weights each by ``exp(sim / sigma)``, sums the weights per class through
  a one-hot scatter and ranks the classes (top-1 and top-5). Its training scripts call it with
  ``K = 200`` and ``sigma = args.nce_t``: ``scripts/cifar/train_cifar10_moco_cld.sh`` sets
  ``nce_t=0.07`` (MoCo+CLD), ``scripts/cifar/train_cifar10_npid_cld.sh`` sets ``--nce-t 0.1``
  (NPID+CLD, the row with the 86.7). So the published 86.7 was measured at T = 0.1, not 0.07;
  ``references/knn_results.csv`` records the setting beside the number. The bank there is the
  128-d L2-normalised projection output of a CIFAR ResNet-18, recomputed with the test
  transform at the end of training (``--recompute-memory``).

What differs from that code, on purpose: features need not be normalised already (they are
normalised here, in float32); the bank is scanned in chunks (the reference holds the whole
similarity row of every query); each vote is ``exp((s_i - s_max) / T)``, a per-query constant
factor away from ``exp(s_i / T)`` (same arg-max) that cannot overflow float32 at small T; and a
tie of summed votes goes to the smallest label (``torch.argmax`` returns the first maximum; the
reference's unstable ``sort`` leaves it unspecified). Neighbours tied at the k-th similarity are
picked by ``torch.topk``, which leaves their order unspecified: with real-valued features that
has probability ~0 and only matters when the tied neighbours' labels differ.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# k and T have no defaults here: theirs are the params schema's (evaluate.knn), written once.
# Queries and bank rows per chunk: one (query_batch, bank_batch) float32 similarity block at a
# time, 256 MiB at these defaults, whatever the sizes of the splits.
DEFAULT_QUERY_BATCH = 1024
DEFAULT_BANK_BATCH = 65536


def _check_features(name: str, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor, got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (N, d), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be floating point features, got dtype {x.dtype}")


def _check_labels(name: str, labels: torch.Tensor, n: int, features_name: str) -> None:
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor, got {type(labels).__name__}")
    if labels.shape != (n,):
        raise ValueError(
            f"{name} must have shape ({n},), one label per row of {features_name}, got {tuple(labels.shape)}"
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"{name} must be integer class labels, got dtype {labels.dtype}")
    if n and int(labels.min()) < 0:
        raise ValueError(f"{name} must be class indices 0..C-1, got {int(labels.min())}")


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def knn_predict(
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    queries: torch.Tensor,
    *,
    k: int,
    temperature: float,
    num_classes: int | None = None,
    query_batch: int = DEFAULT_QUERY_BATCH,
    bank_batch: int = DEFAULT_BANK_BATCH,
) -> torch.Tensor:
    """Each query's label by the weighted vote of its ``k`` most cosine-similar bank rows.

    bank: (N, d) train features; bank_labels: (N,) integer labels; queries: (Q, d) test
    features, all on one device. ``num_classes`` defaults to ``bank_labels.max() + 1``.
    Returns (Q,) int64 predicted labels on that device. Memory is one (query_batch,
    bank_batch) similarity block plus (query_batch, k) running neighbours, whatever N and Q.
    """
    _check_features("bank", bank)
    _check_features("queries", queries)
    n, d = bank.shape
    _check_labels("bank_labels", bank_labels, n, "bank")
    if queries.shape[1] != d:
        raise ValueError(
            f"queries must have the bank's feature size d={d}, "
            f"got {queries.shape[1]}: extract both with the same model and stage"
        )
    if not (bank.device == bank_labels.device == queries.device):
        raise ValueError(
            f"bank, bank_labels and queries must be on one device, got {bank.device}, "
            f"{bank_labels.device} and {queries.device}: move them with .to(device)"
        )
    if n == 0:
        raise ValueError("bank is empty: the kNN needs at least one train feature")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if k > n:
        raise ValueError(f"k={k} is larger than the bank's {n} images: pass k <= {n}")
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not math.isfinite(temperature)
        or temperature <= 0
    ):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    query_batch = _check_positive_int("query_batch", query_batch)
    bank_batch = _check_positive_int("bank_batch", bank_batch)
    top_label = int(bank_labels.max())
    if num_classes is None:
        num_classes = top_label + 1
    num_classes = _check_positive_int("num_classes", num_classes)
    if top_label >= num_classes:
        raise ValueError(
            f"bank_labels reach {top_label}, beyond num_classes={num_classes}: pass num_classes > {top_label}"
        )

    labels = bank_labels.long()
    predictions = []
    for q0 in range(0, queries.shape[0], query_batch):
        q = F.normalize(queries[q0 : q0 + query_batch].float(), dim=1)  # (q, d)
        best_sim, best_idx = _top_k(q, bank, k, bank_batch)  # (q, k) each
        # The nearest neighbour's similarity is a per-query constant: dividing every vote by
        # exp(s_max / T) keeps the arg-max and keeps the exponent <= 0 (no float32 overflow).
        weights = torch.exp((best_sim - best_sim[:, :1]) / temperature)  # (q, k)
        votes = torch.zeros(q.shape[0], num_classes, dtype=weights.dtype, device=q.device)
        votes.scatter_add_(1, labels[best_idx], weights)  # (q, C)
        predictions.append(votes.argmax(dim=1))  # first maximum: ties go to the smallest label
    if not predictions:
        return torch.empty(0, dtype=torch.long, device=queries.device)
    return torch.cat(predictions)


def _top_k(q: torch.Tensor, bank: torch.Tensor, k: int, bank_batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest cosine similarities of each normalised query over the bank, sorted.

    q: (q, d) normalised; bank: (N, d) raw, normalised chunk by chunk (no normalised copy of
    the whole bank is kept). Returns (q, k) similarities, descending, and (q, k) bank indices.
    """
    best_sim: torch.Tensor | None = None
    best_idx: torch.Tensor | None = None
    for b0 in range(0, bank.shape[0], bank_batch):
        chunk = F.normalize(bank[b0 : b0 + bank_batch].float(), dim=1)  # (b, d)
        sim = q @ chunk.T  # (q, b)
        idx = torch.arange(b0, b0 + chunk.shape[0], device=q.device).expand_as(sim)  # (q, b)
        if best_sim is not None:
            assert best_idx is not None  # set together with best_sim
            # Merge with the running top k: the k best of (previous best, this chunk).
            sim = torch.cat([best_sim, sim], dim=1)
            idx = torch.cat([best_idx, idx], dim=1)
        top = min(k, sim.shape[1])
        best_sim, pos = sim.topk(top, dim=1, largest=True, sorted=True)  # (q, top)
        best_idx = idx.gather(1, pos)
    assert best_sim is not None and best_idx is not None  # the bank is not empty
    return best_sim, best_idx


def knn_accuracy(
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    queries: torch.Tensor,
    query_labels: torch.Tensor,
    *,
    k: int,
    temperature: float,
    num_classes: int | None = None,
    query_batch: int = DEFAULT_QUERY_BATCH,
    bank_batch: int = DEFAULT_BANK_BATCH,
) -> float:
    """Fraction (0..1) of queries whose weighted-kNN label (``knn_predict``) is their own."""
    _check_features("queries", queries)
    _check_labels("query_labels", query_labels, queries.shape[0], "queries")
    if queries.shape[0] == 0:
        raise ValueError("queries is empty: the kNN accuracy needs at least one test feature")
    if num_classes is None and isinstance(bank_labels, torch.Tensor) and bank_labels.numel():
        # A test label the bank lacks can never be predicted; count it wrong, don't index past C.
        num_classes = max(int(bank_labels.max()), int(query_labels.max())) + 1
    predicted = knn_predict(
        bank,
        bank_labels,
        queries,
        k=k,
        temperature=temperature,
        num_classes=num_classes,
        query_batch=query_batch,
        bank_batch=bank_batch,
    )
    return float((predicted == query_labels.to(predicted.device).long()).double().mean())
