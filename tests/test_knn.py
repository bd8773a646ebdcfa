"""cdrepro.knn: the weighted kNN vote against a float64 loop-written oracle of its definition."""

import math

import numpy as np
import pytest
import torch

from cdrepro.config import load_schema
from cdrepro.knn import knn_accuracy, knn_predict

T = 0.07  # the schema's default temperature (test_defaults_follow_npid_and_cld)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def oracle_votes(bank, bank_labels, queries, k, temperature, num_classes):
    """Per query, the summed exp(cos / T) of its k most similar bank rows, per class (float64).

    Written from the definition, one query and one neighbour at a time: normalise, rank the
    bank by cosine similarity (nearest first, lower index first among equals), let each of the
    first k vote exp(similarity / T) for its label.
    """
    bank = np.asarray(bank, dtype=np.float64)
    queries = np.asarray(queries, dtype=np.float64)
    all_votes = []
    for q in queries:
        q = q / math.sqrt(sum(v * v for v in q))
        ranked = []
        for i, b in enumerate(bank):
            b = b / math.sqrt(sum(v * v for v in b))
            ranked.append((-sum(x * y for x, y in zip(q, b, strict=True)), i))
        ranked.sort()
        votes = [0.0] * num_classes
        for negative_sim, i in ranked[:k]:
            votes[int(bank_labels[i])] += math.exp(-negative_sim / temperature)
        all_votes.append(votes)
    return all_votes


def oracle_predict(*args):
    """Arg-max of the oracle's votes, the smallest label among equal maxima."""
    return [max(range(len(v)), key=lambda c: (v[c], -c)) for v in oracle_votes(*args)]


def as_tensors(bank, labels, queries):
    return (torch.tensor(bank, dtype=torch.float32), torch.tensor(labels), torch.tensor(queries, dtype=torch.float32))


def test_defaults_follow_npid_and_cld():
    knn = load_schema()["properties"]["evaluate"]["properties"]["knn"]["properties"]
    assert (knn["k"]["default"], knn["temperature"]["default"]) == (200, T)


def test_weighted_vote_on_a_hand_made_bank():
    # Query (1, 0). One class-0 neighbour at similarity 1, two class-1 neighbours at 0.8, one
    # class-2 row pointing away. A majority of the three nearest says 1; the weighted vote at
    # T = 0.07 says 0 (e^(1/.07) > 2 e^(.8/.07)); at T = 10 the weights are nearly equal and 1
    # wins again.
    bank = [[1.0, 0.0], [0.8, 0.6], [0.8, -0.6], [-1.0, 0.0]]
    labels = [0, 1, 1, 2]
    queries = [[1.0, 0.0], [3.0, 0.0]]  # the same direction at two lengths: cosine ignores it
    b, y, q = as_tensors(bank, labels, queries)
    for k, temperature, expected in [(3, 0.07, 0), (3, 10.0, 1), (1, 0.07, 0), (4, 10.0, 1)]:
        predicted = knn_predict(b, y, q, k=k, temperature=temperature).tolist()
        assert predicted == [expected, expected]
        assert predicted == oracle_predict(bank, labels, queries, k, temperature, 3)


def test_tied_votes_go_to_the_smallest_label():
    # (1, 0) is equally similar to (1, 1) and (1, -1): with k = 2 the two votes are equal.
    bank = [[1.0, 1.0], [1.0, -1.0], [-1.0, 0.0]]
    queries = [[1.0, 0.0]]
    for labels in ([2, 1, 0], [1, 2, 0]):
        b, y, q = as_tensors(bank, labels, queries)
        assert knn_predict(b, y, q, k=2, temperature=T).tolist() == [1]
        assert oracle_predict(bank, labels, queries, 2, T, 3) == [1]
    # Equal numbers of equally similar neighbours per class, three classes: still the smallest.
    bank = [[1.0, 1.0], [1.0, -1.0], [1.0, 1.0], [1.0, -1.0], [1.0, 1.0], [1.0, -1.0]]
    labels = [2, 2, 1, 1, 0, 0]
    b, y, q = as_tensors(bank, labels, queries)
    assert knn_predict(b, y, q, k=6, temperature=0.5).tolist() == [0]


def test_k_larger_than_a_class_and_k_equal_to_the_bank():
    # Class 0 has two rows near the query, class 1 five rows further away: once k passes the
    # size of class 0, class 1's many weaker votes can outweigh it (at a large T).
    bank = [[1.0, 0.05], [1.0, -0.05]] + [[1.0, 0.9 + 0.1 * i] for i in range(5)]
    labels = [0, 0, 1, 1, 1, 1, 1]
    queries = [[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
    b, y, q = as_tensors(bank, labels, queries)
    for k in range(1, len(bank) + 1):
        for temperature in (0.07, 1.0, 100.0):
            assert knn_predict(b, y, q, k=k, temperature=temperature).tolist() == oracle_predict(
                bank, labels, queries, k, temperature, 2
            ), (k, temperature)
    # At k = bank size and a large T every row votes almost equally: the bigger class wins.
    assert knn_predict(b, y, q, k=len(bank), temperature=100.0).tolist() == [1, 1, 1]


def test_random_banks_agree_with_the_oracle():
    rng = np.random.default_rng(0)
    bank = rng.normal(size=(120, 6))
    labels = rng.integers(0, 5, size=120)
    queries = rng.normal(size=(40, 6))
    b, y, q = as_tensors(bank, labels, queries)
    for k, temperature in [(1, 0.07), (7, 0.07), (50, 0.5), (120, 0.07)]:
        predicted = knn_predict(b, y, q, k=k, temperature=temperature).tolist()
        votes = oracle_votes(bank, labels, queries, k, temperature, 5)
        for p, v in zip(predicted, votes, strict=True):
            # float32 against float64: the predicted class is the oracle's maximum, or within
            # rounding of it (random data has no exact ties).
            assert v[p] >= max(v) * (1 - 1e-5), (k, temperature, p, v)


def test_batching_gives_the_answer_of_one_batch():
    g = torch.Generator().manual_seed(1)
    bank = torch.randn(500, 16, generator=g)
    labels = torch.randint(0, 7, (500,), generator=g)
    queries = torch.randn(90, 16, generator=g)
    whole = knn_predict(bank, labels, queries, k=20, query_batch=90, bank_batch=500, temperature=T)
    for query_batch, bank_batch in [(1, 500), (7, 13), (90, 3), (32, 20), (1000, 499)]:
        # bank_batch 3 < k: the running top k merges many partial lists.
        batched = knn_predict(
            bank, labels, queries, k=20, query_batch=query_batch, bank_batch=bank_batch, temperature=T
        )
        assert torch.equal(batched, whole), (query_batch, bank_batch)


def test_k_larger_than_the_bank_is_one_line_naming_k():
    b, y, q = as_tensors([[1.0, 0.0]] * 10, [0] * 10, [[1.0, 0.0]])
    with pytest.raises(ValueError, match=r"^k=11 is larger than the bank's 10 images") as info:
        knn_predict(b, y, q, k=11, temperature=T)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"k": 0}, "^k must be a positive integer"),
        ({"temperature": 0.0}, "^temperature must be"),
        ({"temperature": float("nan")}, "^temperature must be"),
        ({"query_batch": 0}, "^query_batch must be"),
        ({"num_classes": 1}, "^bank_labels reach 1, beyond num_classes=1"),
    ],
)
def test_bad_arguments_are_one_line(kwargs, pattern):
    b, y, q = as_tensors([[1.0, 0.0], [0.0, 1.0]], [0, 1], [[1.0, 0.0]])
    kwargs = {"k": 1, "temperature": T, **kwargs}
    with pytest.raises(ValueError, match=pattern) as info:
        knn_predict(b, y, q, **kwargs)
    assert "\n" not in str(info.value)


def test_mismatched_feature_sizes_are_refused():
    with pytest.raises(ValueError, match="^queries must have the bank's feature size d=2"):
        knn_predict(torch.ones(3, 2), torch.zeros(3, dtype=torch.long), torch.ones(1, 4), k=1, temperature=T)


def test_accuracy_counts_a_class_the_bank_lacks_as_wrong():
    b, y, q = as_tensors([[1.0, 0.0], [0.0, 1.0]], [0, 1], [[1.0, 0.1], [0.1, 1.0], [0.1, 1.0]])
    assert knn_accuracy(b, y, q, torch.tensor([0, 1, 2]), k=1, temperature=T) == pytest.approx(2 / 3)


def test_half_precision_features_and_empty_queries():
    b, y, q = as_tensors([[1.0, 0.0], [0.0, 1.0]], [0, 1], [[0.9, 0.1]])
    assert knn_predict(b.bfloat16(), y, q.half(), k=1, temperature=T).tolist() == [0]
    assert knn_predict(b, y, q[:0], k=1, temperature=T).shape == (0,)


@cuda
def test_cuda_agrees_with_cpu():
    g = torch.Generator().manual_seed(2)
    bank, queries = torch.randn(2000, 32, generator=g), torch.randn(300, 32, generator=g)
    labels = torch.randint(0, 10, (2000,), generator=g)
    on_cpu = knn_predict(bank, labels, queries, k=200, temperature=T, bank_batch=700)
    on_gpu = knn_predict(bank.cuda(), labels.cuda(), queries.cuda(), k=200, temperature=T, bank_batch=700)
    assert on_gpu.device.type == "cuda"
    assert (on_gpu.cpu() == on_cpu).float().mean() > 0.99  # TF32/ordering may flip near-ties
