"""Label sets with a guaranteed error rate: "roses or tulips", right 95 % of the time.

Split-conformal prediction with the least-ambiguous set rule (Sadinle, Lei and Wasserman 2019): a photo's
*conformity score* is one minus the calibrated probability of its true label, measured on held-out answers (each
photo answered by a head that never saw it, as the confidence's calibration is). For an error rate A, with the n
scores sorted, q is the k-th smallest, k = ⌈(n + 1)(1 − A)⌉; a new photo's set holds every label whose probability
is at least 1 − q. If the new photo is exchangeable with the held-out ones, its true label is in the set with
probability at least 1 − A (and below 1 − A + 1 / (n + 1)): the guarantee holds over photos like the training
photos, on average, not for each photo or each label. The best guess is always in the set, so it is never empty.
When n is too small for A (k > n), the set is every label, and :meth:`LabelSets.threshold` says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

METHOD = "split-conformal, least ambiguous sets"


@dataclass
class LabelSets:
    """The sorted held-out conformity ``scores`` a label set is drawn from, and what they were measured on."""

    scores: list[float]
    calibrated_on: str
    method: str = METHOD

    @classmethod
    def fit(cls, probabilities: np.ndarray, truth: np.ndarray, calibrated_on: str) -> "LabelSets":
        """From held-out calibrated ``probabilities`` (n, labels) and the photos' true label indices."""
        scores = 1.0 - probabilities[np.arange(len(truth)), truth]
        # stored rounded up to 6 decimals, so that a stored score is never below the measured one
        return cls(sorted(min(1.0, math.ceil(float(s) * 1e6) / 1e6) for s in scores), calibrated_on)

    @property
    def n(self) -> int:
        return len(self.scores)

    def smallest_error_rate(self) -> float:
        """The smallest error rate these scores can promise without the set becoming every label: 1 / (n + 1)."""
        return 1.0 / (self.n + 1)

    def threshold(self, error_rate: float) -> float:
        """The probability a label needs to be in the set for ``error_rate`` (0 when the set is every label)."""
        if not 0.0 < error_rate < 1.0:
            raise ValueError("the error rate must be between 0 and 1")
        k = math.ceil((self.n + 1) * (1.0 - error_rate) - 1e-9)
        if k > self.n:
            return 0.0
        return max(0.0, 1.0 - self.scores[max(k, 1) - 1])

    def to_dict(self) -> dict:
        return {"method": self.method, "calibrated_on": self.calibrated_on, "n": self.n, "scores": self.scores}

    @classmethod
    def from_dict(cls, d: dict | None) -> "LabelSets | None":
        return cls(list(d["scores"]), d.get("calibrated_on", ""), d.get("method", METHOD)) if d else None


def label_set(probabilities: np.ndarray, threshold: float) -> list[int]:
    """The label indices of one photo's set, most probable first: every label at or above ``threshold``, and the best
    guess always."""
    order = np.argsort(-probabilities, kind="stable")
    return [int(i) for n, i in enumerate(order) if n == 0 or probabilities[i] >= threshold]
