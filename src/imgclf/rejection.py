"""Say "unknown" instead of guessing: open-set rejection by similarity to class prototypes.

A photo's score is the largest cosine similarity between its embedding and the mean
(L2-normalised) training embedding of each class. The threshold keeps a chosen share of
in-distribution validation photos (95 % by default). Measured on flowers-bench against
non-flower photos: AUROC 1.000 for this score, against 0.925 for the softmax confidence
and 0.98 for the energy score (benchmarks/ood.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from imgclf.head import l2_normalize

UNKNOWN = "unknown"
#: Training folders whose photos are negatives (trained as the class ``unknown``).
NEGATIVE_FOLDERS = ("unknown", "_background")
METHOD = "prototype-cosine"


@dataclass
class Rejection:
    """The stored rule: ``similarity < threshold`` → ``unknown``."""

    threshold: float
    target_acceptance: float
    calibration_acceptance: float
    calibrated_on: str
    method: str = METHOD

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "Rejection | None":
        return cls(**d) if d else None


def prototypes(x: np.ndarray, y: np.ndarray, classes: list[int]) -> np.ndarray:
    """Unit-length mean of the normalised embeddings of each class in ``classes`` (rows in that order)."""
    xn = l2_normalize(x)
    return l2_normalize(np.stack([xn[y == c].mean(0) for c in classes]))


def similarity(x: np.ndarray, protos: np.ndarray) -> np.ndarray:
    """Largest cosine similarity of each embedding to a prototype."""
    return (l2_normalize(x) @ protos.T).max(1)


def leave_one_out_similarity(x: np.ndarray, y: np.ndarray, classes: list[int]) -> np.ndarray:
    """Each photo's score with its own class prototype computed without it (for tiny validation splits)."""
    xn = l2_normalize(x)
    sums = {c: xn[y == c].sum(0) for c in classes}
    counts = {c: int((y == c).sum()) for c in classes}
    out = np.empty(len(x), np.float32)
    for i in range(len(x)):
        best = -1.0
        for c in classes:
            s = sums[c] - (xn[i] if y[i] == c else 0)
            n = counts[c] - (1 if y[i] == c else 0)
            if n > 0:
                best = max(best, float(xn[i] @ (s / max(np.linalg.norm(s), 1e-12))))
        out[i] = best
    return out


def calibrate(scores: np.ndarray, target_acceptance: float, calibrated_on: str) -> Rejection:
    """The threshold that accepts ``target_acceptance`` of in-distribution ``scores``."""
    threshold = float(np.quantile(scores, 1.0 - target_acceptance, method="lower"))
    return Rejection(round(threshold, 6), target_acceptance, round(float(np.mean(scores >= threshold)), 6), calibrated_on)


def auroc(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    """Probability that an in-distribution photo scores higher than an out-of-distribution one."""
    in_scores, out_scores = np.asarray(in_scores, float), np.asarray(out_scores, float)
    if not len(in_scores) or not len(out_scores):
        return float("nan")
    greater = (in_scores[:, None] > out_scores[None, :]).mean()
    ties = (in_scores[:, None] == out_scores[None, :]).mean()
    return float(greater + 0.5 * ties)
