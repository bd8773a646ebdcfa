"""Linear-probe accuracy: a linear classifier on frozen, standardised features of the train split,
scored on the test split.

The classifier is scikit-learn's ``LogisticRegression`` (lbfgs, which minimises the full
multinomial cross-entropy for three or more classes; L2 penalty ``C``; ``max_iter`` bounded) on
features standardised by a ``StandardScaler`` fit on the **train split only**, so nothing of the
test split leaks into the probe.

Why that and not a torch linear layer trained by SGD:

* Size. Our feature sets are small for it: digits 1,797 images, STL-10 and ImageNet-10 13,000,
  CIFAR-10/100 60,000, at 512 dimensions (ResNet-18/34's h) or fewer. Full-batch lbfgs on
  50,000 x 512 with 10-100 classes runs in seconds to a minute on the CPU and fits in memory.
* Exact and deterministic. lbfgs solves the convex problem to a tolerance; the answer does not
  depend on a learning rate, an epoch count, a batch order or GPU non-determinism, which an SGD
  probe's does (and those would be more settings to report and to get wrong). ``random_state``
  is passed for completeness: lbfgs does not draw random numbers.
* Well kept: scikit-learn's implementation is tested and stable across releases; a torch probe
  would be our code to test.

When the torch path would pay (not built): ImageNet-size banks, e.g. 1.28M x 2048 features and
1,000 classes (about 10 GB in float32, and hours of CPU lbfgs), where the literature's protocol
is an SGD-trained linear layer on the GPU, often with augmentation (MoCo's and CLD's
``main_lincls.py``). None of this project's datasets is that size.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

# C, max_iter: no defaults here; theirs are the params schema's (evaluate.linear), written once.


@dataclass(frozen=True)
class LinearProbeResult:
    train_accuracy: float  # 0..1, on the images the probe was fit on
    test_accuracy: float  # 0..1, the number to report
    n_iter: int  # lbfgs iterations used
    converged: bool  # False when lbfgs stopped at max_iter: callers should say so
    scaler: StandardScaler  # fit on the train features only
    classifier: LogisticRegression


def _as_array(name: str, x: Any) -> np.ndarray:
    """A numpy array from numpy or torch input (torch tensors are detached and moved to the CPU)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}")
    return x


def _features(name: str, x: Any) -> np.ndarray:
    x = _as_array(name, x)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must have shape (N, d) with N, d >= 1, got {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise ValueError(f"{name} must be real numbers, got dtype {x.dtype}")
    x = x.astype(np.float64)  # bf16/float16/float32 features: one precision for the solver
    if not np.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or inf values: the model that produced them diverged")
    return x


def _labels(name: str, y: Any, n: int, features_name: str) -> np.ndarray:
    y = _as_array(name, y)
    if y.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), one label per row of {features_name}, got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} must be integer class labels, got dtype {y.dtype}")
    return y.astype(np.int64)


def linear_probe(
    train_features: Any,
    train_labels: Any,
    test_features: Any,
    test_labels: Any,
    *,
    max_iter: int,
    C: float,
    seed: int,
) -> LinearProbeResult:
    """Fit scaler + logistic regression on the train split, score both splits.

    train_features: (N, d), train_labels: (N,), test_features: (M, d), test_labels: (M,);
    numpy arrays or torch tensors on any device. A test label the train split lacks can never
    be predicted and counts as wrong (``cdrepro.data.splits.check_split_classes`` refuses such
    splits before training). ``max_iter`` caps lbfgs; ``C`` is the inverse L2 strength on
    standardised features; ``seed`` is scikit-learn's ``random_state`` (lbfgs draws nothing
    with it: passed for completeness).
    """
    x_train = _features("train_features", train_features)  # (N, d)
    x_test = _features("test_features", test_features)  # (M, d)
    y_train = _labels("train_labels", train_labels, x_train.shape[0], "train_features")  # (N,)
    y_test = _labels("test_labels", test_labels, x_test.shape[0], "test_features")  # (M,)
    if x_test.shape[1] != x_train.shape[1]:
        raise ValueError(
            f"test_features must have the train features' size d={x_train.shape[1]}, "
            f"got {x_test.shape[1]}: extract both with the same model and stage"
        )
    if np.unique(y_train).size < 2:
        raise ValueError(
            f"train_labels must hold at least 2 classes for a linear probe, got only {np.unique(y_train).tolist()}"
        )
    if isinstance(C, bool) or not isinstance(C, (int, float)) or not math.isfinite(C) or C <= 0:
        raise ValueError(f"C must be a finite number > 0 (inverse L2 strength), got {C!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in 0..2**32-1, got {seed!r}")

    scaler = StandardScaler().fit(x_train)  # train only: the test split must not shape the probe
    classifier = LogisticRegression(C=C, solver="lbfgs", max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        classifier.fit(scaler.transform(x_train), y_train)
    n_iter = int(np.max(classifier.n_iter_))
    # scikit-learn warns when lbfgs stops without meeting its tolerance (at max_iter).
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    for w in caught:  # other warnings are not ours to swallow
        if not issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

    train_accuracy = float(np.mean(classifier.predict(scaler.transform(x_train)) == y_train))
    test_accuracy = float(np.mean(classifier.predict(scaler.transform(x_test)) == y_test))
    return LinearProbeResult(
        train_accuracy=train_accuracy,
        test_accuracy=test_accuracy,
        n_iter=n_iter,
        converged=converged,
        scaler=scaler,
        classifier=classifier,
    )
