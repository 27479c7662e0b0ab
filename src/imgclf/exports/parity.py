"""Does the exported file answer as ``model.onnx`` does? Measured on real photos, always, after converting.

A float32 export passes when no probability differs by more than :data:`FLOAT_MAX_DIFF` and the
best label agrees on at least :data:`FLOAT_AGREEMENT` of the photos; an int8 export when the best
label agrees on at least :data:`INT8_AGREEMENT` (its probabilities are printed, not bounded).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from imgclf.exports.runners import Runner

FLOAT_MAX_DIFF = 1e-3
FLOAT_AGREEMENT = 0.995
INT8_AGREEMENT = 0.98


@dataclass
class Parity:
    photos: int
    max_probability_diff: float
    top1_agreement: float
    max_similarity_diff: float
    int8: bool

    @property
    def passed(self) -> bool:
        if self.int8:
            return self.top1_agreement >= INT8_AGREEMENT
        return self.max_probability_diff <= FLOAT_MAX_DIFF and self.top1_agreement >= FLOAT_AGREEMENT

    def describe(self) -> str:
        limits = (f"needs ≥ {INT8_AGREEMENT:.0%} agreement" if self.int8 else
                  f"needs ≤ {FLOAT_MAX_DIFF:g} and ≥ {FLOAT_AGREEMENT:.1%} agreement")
        return (f"on {self.photos} photos: largest probability difference {self.max_probability_diff:.2g}, best label agrees on "
                f"{self.top1_agreement:.1%}, largest similarity difference {self.max_similarity_diff:.2g} ({limits})")

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def measure(exported: Runner, reference: Runner, batches, int8: bool = False) -> Parity:
    """Run both on every batch of preprocessed photos (N, 3, H, W) and compare."""
    n, prob_diff, sim_diff, agree = 0, 0.0, 0.0, 0
    for batch in batches:
        a, b = exported(batch), reference(batch)
        prob_diff = max(prob_diff, float(np.abs(a["probabilities"] - b["probabilities"]).max()))
        sim_diff = max(sim_diff, float(np.abs(a["similarity"] - b["similarity"]).max()))
        agree += int((a["probabilities"].argmax(1) == b["probabilities"].argmax(1)).sum())
        n += len(batch)
    return Parity(n, prob_diff, agree / n if n else 0.0, sim_diff, int8)
