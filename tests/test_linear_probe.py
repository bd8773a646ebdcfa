"""cdrepro.linear_probe: separable features are learned, shuffled labels are not, and the test
split never shapes the probe."""

import numpy as np
import pytest
import torch

from cdrepro.linear_probe import linear_probe

MAX_ITER = 1000  # the schema's default (evaluate.linear.max_iter)


def blobs(rng, n_per_class, num_classes, d, spread):
    """Gaussian classes around random centres ``spread`` apart (in units of their std)."""
    centres = rng.normal(size=(num_classes, d)) * spread  # (C, d)
    labels = np.repeat(np.arange(num_classes), n_per_class)  # (N,)
    return centres[labels] + rng.normal(size=(labels.size, d)), labels


def test_separable_features_are_classified_almost_perfectly():
    rng = np.random.default_rng(0)
    x, y = blobs(rng, 200, 5, 32, spread=4.0)
    order = rng.permutation(y.size)
    train, test = order[:600], order[600:]
    result = linear_probe(x[train], y[train], x[test], y[test], max_iter=MAX_ITER, C=1.0, seed=0)
    assert result.test_accuracy >= 0.99
    assert result.train_accuracy >= 0.99
    assert result.converged


def test_shuffled_labels_score_near_chance():
    # Labels independent of the features: nothing carries over to the test split. 4 classes,
    # 4,000 test images: chance is 0.25 with std sqrt(.25 * .75 / 4000) = 0.0068, so the
    # tolerance of 0.04 is about 6 std (and the data is seeded, so the outcome is fixed).
    rng = np.random.default_rng(1)
    x, y = blobs(rng, 1500, 4, 16, spread=4.0)
    y_shuffled = rng.permutation(y)
    train, test = np.arange(2000), np.arange(2000, 6000)
    result = linear_probe(x[train], y_shuffled[train], x[test], y_shuffled[test], max_iter=MAX_ITER, C=1.0, seed=0)
    assert abs(result.test_accuracy - 0.25) < 0.04


def test_the_scaler_is_fit_on_the_train_split_only():
    # One feature: train classes at -1 and +1, test classes at 9 and 11 (the same gap, shifted).
    # Standardised with the train split's mean and std, every test image lands on class 1's
    # side: accuracy 1/2. Fit on the test split (or on both), the shift would be taken out and
    # the accuracy would be 1.
    rng = np.random.default_rng(2)
    y = np.repeat([0, 1], 100)
    x_train = (np.where(y == 0, -1.0, 1.0) + 0.1 * rng.normal(size=y.size))[:, None]
    x_test = x_train + 10.0
    result = linear_probe(x_train, y, x_test, y, max_iter=MAX_ITER, C=1.0, seed=0)
    assert result.train_accuracy == 1.0
    assert result.test_accuracy == 0.5
    np.testing.assert_allclose(result.scaler.mean_, x_train.mean(axis=0))
    np.testing.assert_allclose(result.scaler.scale_, x_train.std(axis=0))


def test_torch_features_and_determinism():
    rng = np.random.default_rng(3)
    x, y = blobs(rng, 50, 3, 8, spread=1.0)  # overlapping: the accuracy is not trivially 1
    features, labels = torch.from_numpy(x).float(), torch.from_numpy(y)
    first = linear_probe(features, labels, x, y, max_iter=MAX_ITER, C=1.0, seed=7)
    second = linear_probe(features, labels, x, y, max_iter=MAX_ITER, C=1.0, seed=7)
    assert first.test_accuracy == second.test_accuracy
    np.testing.assert_array_equal(first.classifier.coef_, second.classifier.coef_)


def test_a_capped_solver_says_it_did_not_converge():
    rng = np.random.default_rng(4)
    x, y = blobs(rng, 100, 3, 8, spread=0.5)
    result = linear_probe(x, y, x, y, max_iter=2, C=1.0, seed=0)
    assert not result.converged and result.n_iter == 2


@pytest.mark.parametrize(
    "change, pattern",
    [
        ({"test_features": np.ones((4, 3))}, "^test_features must have the train features' size d=2"),
        ({"train_labels": np.zeros(4, dtype=int)}, "^train_labels must hold at least 2 classes"),
        ({"train_labels": np.zeros(3, dtype=int)}, r"^train_labels must have shape \(4,\)"),
        ({"train_labels": np.array([0.0, 1.0, 0.0, 1.0])}, "^train_labels must be integer"),
        ({"train_features": np.full((4, 2), np.nan)}, "^train_features holds NaN"),
        ({"C": 0.0}, "^C must be a finite number > 0"),
        ({"max_iter": 0}, "^max_iter must be a positive integer"),
    ],
)
def test_bad_input_is_one_line(change, pattern):
    args = {
        "train_features": np.eye(4)[:, :2],
        "train_labels": np.array([0, 1, 0, 1]),
        "test_features": np.eye(4)[:, :2],
        "test_labels": np.array([0, 1, 0, 1]),
        "max_iter": MAX_ITER,
        "C": 1.0,
        "seed": 0,
        **change,
    }
    with pytest.raises(ValueError, match=pattern) as info:
        linear_probe(**args)
    assert "\n" not in str(info.value)
