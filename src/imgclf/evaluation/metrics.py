"""Classification metrics in plain NumPy: accuracy, per-class P/R/F1, confusion matrix."""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts with rows = true class and columns = predicted class."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return cm


def summarize(y_true, y_pred, labels: list[str]) -> dict:
    """``accuracy`` with its 95 % ``accuracy_interval``, ``n``, ``labels``, ``per_class`` and ``confusion_matrix`` as JSON-ready values."""
    from imgclf.heads.estimate import wilson

    y_true, y_pred = np.asarray(y_true, int), np.asarray(y_pred, int)
    cm = confusion_matrix(y_true, y_pred, len(labels))
    tp = np.diag(cm).astype(float)
    predicted, support = cm.sum(0).astype(float), cm.sum(1).astype(float)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    n = int(len(y_true))
    present = support > 0
    return {
        "accuracy": round(float(tp.sum() / n), 6) if n else None,
        "accuracy_interval": [round(v, 6) for v in wilson(float(tp.sum() / n), n)] if n else None,
        "macro_f1": round(float(f1[present].mean()), 6) if present.any() else None,
        "n": n,
        "labels": list(labels),
        "per_class": {
            lab: {
                "precision": round(float(precision[i]), 6),
                "recall": round(float(recall[i]), 6),
                "f1": round(float(f1[i]), 6),
                "support": int(support[i]),
            }
            for i, lab in enumerate(labels)
        },
        "confusion_matrix": cm.tolist(),
    }
