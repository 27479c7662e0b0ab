"""The classifier head: a class-balanced softmax linear model on L2-normalised embeddings."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

#: Inverse regularisation strengths tried; the best on validation data wins.
C_GRID = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


@dataclass
class LinearHead:
    """``softmax(normalize(x) @ weight.T + bias)``; ``weight`` is (classes, dim)."""

    weight: np.ndarray
    bias: np.ndarray
    C: float

    def logits(self, x: np.ndarray) -> np.ndarray:
        return l2_normalize(x) @ self.weight.T + self.bias

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        return softmax(self.logits(x))


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _fit(x: np.ndarray, y: np.ndarray, n_classes: int, C: float, seed: int) -> LinearHead:
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=C, class_weight="balanced", max_iter=2000, tol=1e-5, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(l2_normalize(x), y)
    weight = np.zeros((n_classes, x.shape[1]), np.float32)
    bias = np.full(n_classes, -1e4, np.float32)  # classes absent from training can never win
    if len(clf.classes_) == 2:  # sklearn stores one row for two classes
        w, b = clf.coef_[0] / 2, clf.intercept_[0] / 2
        weight[clf.classes_] = np.stack([-w, w])
        bias[clf.classes_] = [-b, b]
    else:
        weight[clf.classes_] = clf.coef_
        bias[clf.classes_] = clf.intercept_
    return LinearHead(weight, bias, C)


def _balanced_accuracy_and_loss(head: LinearHead, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    p = head.probabilities(x)
    recalls = [np.mean(p[y == c].argmax(1) == c) for c in np.unique(y)]
    loss = float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None))))
    return float(np.mean(recalls)), loss


def _folds(y: np.ndarray, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import StratifiedKFold

    k = int(min(5, np.bincount(y)[np.bincount(y) > 0].min()))
    if k < 2:
        return []
    return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))


def fit_head(
    x_train: np.ndarray,
    y_train: np.ndarray,
    n_classes: int,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    seed: int = 0,
    grid: tuple[float, ...] = C_GRID,
) -> LinearHead:
    """Fit on the training split with ``C`` chosen on the validation split.

    With fewer than two validation photos, ``C`` is chosen by stratified k-fold
    cross-validation on the training split instead. Same inputs and seed, same head.
    """
    if x_val is not None and y_val is not None and len(y_val) >= 2:
        scored = []
        for C in grid:
            head = _fit(x_train, y_train, n_classes, C, seed)
            acc, loss = _balanced_accuracy_and_loss(head, x_val, y_val)
            scored.append((-acc, loss, C, head))
        return min(scored, key=lambda s: s[:3])[3]
    folds = _folds(y_train, seed)
    if not folds:
        return _fit(x_train, y_train, n_classes, 10.0, seed)
    best = None
    for C in grid:
        results = [
            _balanced_accuracy_and_loss(_fit(x_train[tr], y_train[tr], n_classes, C, seed), x_train[te], y_train[te])
            for tr, te in folds
        ]
        score = (-np.mean([a for a, _ in results]), np.mean([l for _, l in results]), C)
        best = min(best, score) if best else score
    return _fit(x_train, y_train, n_classes, best[2], seed)
