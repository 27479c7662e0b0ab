"""How many more photos? Learning curves from the cached embeddings, and the advice they give.

For each of ``REPEATS`` stratified 5-fold splits of the labelled photos, heads (the checks' fixed ``C``) are fitted on
growing shares of each fold's training photos (:data:`SHARES`, each label subsampled alike) and score the held-out
fold. Each label's error then follows a power law in its number of training photos, ``error ≈ a · n^(-b)`` (the shape
learning curves of linear probes take; fitted by least squares in log–log, ``b`` kept in [0, 1]), from which the
error with every photo it has now and with as many again is read off: the predicted gain in that label's recall.
``benchmarks/grow.py`` checks the predictions against what adding the photos really does.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

#: Shares of each fold's training photos the curves are measured at.
SHARES = (0.25, 0.5, 0.75, 1.0)
#: Repeated 5-fold splits the curves average over.
REPEATS = 2
#: Each label is judged on at most this many photos (a fixed cost whatever the number of photos).
PHOTOS_PER_LABEL = 400
#: Labels with fewer photos get no advice (a fold would leave too few to draw a curve from).
MIN_PHOTOS = 8
#: A predicted gain below this (in recall) is "plateaued".
PLATEAU = 0.01


@dataclass
class Advice:
    """One label's learning curve read off: its ``photos`` now, the cross-validated ``recall`` with them, the ``gain``
    in recall predicted with ``more`` photos, and the measured ``curve`` (``[[photos, recall], …]``)."""

    label: str
    photos: int
    recall: float
    more: int
    gain: float
    curve: list[list[float]]

    @property
    def plateaued(self) -> bool:
        return self.gain < PLATEAU

    def sentence(self) -> str:
        if self.plateaued:
            return f"{self.label}: has plateaued (recall {100 * self.recall:.0f} %; more photos alike would add under a point)"
        points = round(100 * self.gain)
        return (f"{self.label}: about +{points} point{'s' if points != 1 else ''} of recall with {self.more} more photos "
                f"(now {100 * self.recall:.0f} %)")

    def to_dict(self) -> dict:
        return {**asdict(self), "plateaued": self.plateaued, "sentence": self.sentence()}


def advise(x: np.ndarray, y: np.ndarray, labels: list[str], C: float, seed: int = 0, more: int | None = None) -> list[Advice]:
    """The advice for each label with at least :data:`MIN_PHOTOS` photos, largest predicted gain first: the gain with
    ``more`` more photos (default: about as many again as the label has, at least 10)."""
    from threadpoolctl import threadpool_limits

    from imgclf.heads.linear import _Problem, stratified_folds, stratified_sample

    counts = np.bincount(y, minlength=len(labels))
    judged = [k for k in range(len(labels)) if counts[k] >= MIN_PHOTOS]
    if len(judged) < 2:
        return []
    keep = np.flatnonzero(np.isin(y, judged))
    keep = keep[stratified_sample(y[keep], PHOTOS_PER_LABEL, seed)]
    xs, ys = x[keep], np.searchsorted(judged, y[keep])
    right = np.zeros((len(SHARES), len(judged)))
    seen = np.zeros((len(SHARES), len(judged)))
    trained = np.zeros((len(SHARES), len(judged)))
    with threadpool_limits(1):
        for repeat in range(REPEATS):
            rng = np.random.default_rng(seed + 1000 * repeat)
            for tr, te in stratified_folds(ys, 5, seed + repeat):
                order = {c: rng.permutation(tr[ys[tr] == c]) for c in range(len(judged))}
                for s, share in enumerate(SHARES):
                    part = np.concatenate([idx[: max(1, math.ceil(share * len(idx)))] for idx in order.values()])
                    head = _Problem(xs[part], ys[part], len(judged)).path((C,))[0]
                    guess = head.logits(xs[te]).argmax(1)
                    for c in range(len(judged)):
                        mine = ys[te] == c
                        right[s, c] += (guess[mine] == c).sum()
                        seen[s, c] += mine.sum()
                        trained[s, c] += (ys[part] == c).sum()
    folds = REPEATS * 5
    out = []
    for c, k in enumerate(judged):
        n = trained[:, c] / folds  # training photos of the label at each share
        error = (seen[:, c] - right[:, c] + 0.5) / (seen[:, c] + 1)  # smoothed: a fold without a mistake is not error 0
        slope, level = np.polyfit(np.log(n), np.log(error), 1)
        b = float(np.clip(-slope, 0.0, 1.0))
        a = float(np.exp(np.mean(np.log(error) + b * np.log(n))))  # the level that fits best once b is clipped
        now = int(counts[k])
        extra = more or max(10, int(round(now, -1)))
        gain = a * now ** -b - a * (now + extra) ** -b
        out.append(Advice(labels[k], now, round(float(right[-1, c] / seen[-1, c]), 4), extra, round(max(0.0, gain), 4),
                          [[round(float(m), 1), round(float(r / t), 4)] for m, r, t in zip(n, right[:, c], seen[:, c])]))
    return sorted(out, key=lambda a: -a.gain)
