"""How many more photos? A learning curve from the cached embeddings, and the advice it gives.

For each of :data:`REPEATS` stratified 5-fold splits of the labelled photos, a classifier is fitted on growing shares
of each fold's training photos (:data:`SHARES`, every label subsampled alike) and scores the held-out fold: a
class-balanced ridge classifier on the photos' top :data:`DIMS` principal directions, a closed-form stand-in for the
model's head whose whole curve costs milliseconds (17 ms at 70 photos, 0.19 s at 20,000: ``benchmarks/grow.py``). The error then follows a power law in the number of training photos per label, ``error ≈ a · n^(-b)`` (the
shape learning curves of linear probes take; fitted by least squares in log–log, ``b`` kept in [0, 1]), from which the
accuracy with the photos there are now and with ``more`` of each label is read off.

What this predicts was measured (``benchmarks/grow.py``, flowers-bench, 5 seeds, 30 more photos a label): the gain
in accuracy over all labels, roughly (+6.9, +4.0 and +1.9 points predicted from 10, 20 and 40 photos a label,
against +9.3, +5.5 and +0.8 for the imgclf model), but not which label gains most (per-label curves fitted the same way
correlated −0.12, −0.36 and −0.17 with the labels' real gains). So the advice gives the overall gain only; each label's
recall on this curve is kept beside it (``recall``), as the per-label figures of ``train`` show where a model is
weakest.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

#: Shares of each fold's training photos the curve is measured at.
SHARES = (0.25, 0.5, 0.75, 1.0)
#: Repeated 5-fold splits the curve averages over.
REPEATS = 2
#: Each label is judged on at most this many photos (a fixed cost whatever the number of photos).
PHOTOS_PER_LABEL = 400
#: The photos are compared in their top this many principal directions (the heads fit in a tenth of the time; the
#: curve keeps its shape: ``benchmarks/grow.py``).
DIMS = 128
#: Labels with fewer photos are left out (a fold would leave too few to draw a curve from).
MIN_PHOTOS = 8
#: A predicted gain below this (in accuracy) is "plateaued".
PLATEAU = 0.01


@dataclass
class Advice:
    """The learning curve read off: with ``photos`` a label now (the median), the cross-validated ``accuracy``; the
    ``gain`` in accuracy predicted with ``more`` photos of every label; the measured ``curve``
    (``[[photos a label, accuracy], …]``); each label's out-of-fold ``recall``, lowest first, and its own curve
    (``label_curves``: ``{label: [[photos, recall], …]}``, kept for measuring, not advised on)."""

    photos: int
    accuracy: float
    more: int
    gain: float
    curve: list[list[float]]
    recall: dict[str, float]
    label_curves: dict[str, list[list[float]]]

    @property
    def plateaued(self) -> bool:
        return self.gain < PLATEAU

    def sentence(self) -> str:
        """The advice in words: the gain over all labels."""
        if self.plateaued:
            return (f"accuracy has about plateaued: {self.more} more photos of each label like these would add under a point "
                    "(different ones, in other light or settings, may add more)")
        points = round(100 * self.gain)
        return f"with {self.more} more photos of each label, accuracy would rise by about {points} point{'s' if points != 1 else ''}"

    def to_dict(self) -> dict:
        return {**asdict(self), "plateaued": self.plateaued, "sentence": self.sentence()}


def advise(x: np.ndarray, y: np.ndarray, labels: list[str], seed: int = 0, more: int | None = None) -> Advice | None:
    """The advice for the labels with at least :data:`MIN_PHOTOS` photos (None with fewer than two such labels): the
    gain with ``more`` more photos of each (default: about as many again as the median label has, at least 10)."""
    from threadpoolctl import threadpool_limits

    from imgclf.heads.linear import l2_normalize, stratified_folds, stratified_sample

    counts = np.bincount(y, minlength=len(labels))
    judged = [k for k in range(len(labels)) if counts[k] >= MIN_PHOTOS]
    if len(judged) < 2:
        return None
    keep = np.flatnonzero(np.isin(y, judged))
    keep = keep[stratified_sample(y[keep], PHOTOS_PER_LABEL, seed)]
    ys = np.searchsorted(judged, y[keep])
    right = np.zeros((len(SHARES), len(judged)))
    seen = np.zeros((len(SHARES), len(judged)))
    trained = np.zeros(len(SHARES))
    with threadpool_limits(1):  # small dense algebra: BLAS threads only fight here (and one thread sums alike every run)
        xs = _principal(l2_normalize(x[keep]), DIMS)
        for repeat in range(REPEATS):
            rng = np.random.default_rng(seed + 1000 * repeat)
            for tr, te in stratified_folds(ys, 5, seed + repeat):
                order = {c: rng.permutation(tr[ys[tr] == c]) for c in range(len(judged))}
                for s, share in enumerate(SHARES):
                    part = np.concatenate([idx[: max(1, math.ceil(share * len(idx)))] for idx in order.values()])
                    guess = _ridge(xs[part], ys[part], len(judged), RIDGE)(xs[te]).argmax(1)
                    trained[s] += len(part) / len(judged)
                    for c in range(len(judged)):
                        mine = ys[te] == c
                        right[s, c] += (guess[mine] == c).sum()
                        seen[s, c] += mine.sum()
    n = trained / (REPEATS * 5)  # training photos a label at each share
    accuracy = (right / seen).mean(1)  # each label counted alike, as the head weighs them
    now = int(np.median(counts[judged]))
    extra = more or max(10, int(round(now, -1)))
    recall = {labels[k]: round(float(right[-1, c] / seen[-1, c]), 4) for c, k in enumerate(judged)}
    return Advice(now, round(float(accuracy[-1]), 4), extra, round(power_law_gain(n, accuracy, seen.sum(1), now, extra), 4),
                  _points(n, accuracy), dict(sorted(recall.items(), key=lambda kv: kv[1])),
                  {labels[k]: _points(n, right[:, c] / seen[:, c]) for c, k in enumerate(judged)})


def power_law_gain(n: np.ndarray, accuracy: np.ndarray, scored: np.ndarray, now: float, more: float) -> float:
    """The gain in accuracy from ``now`` to ``now + more`` photos of a power law ``error ≈ a · n^(-b)`` fitted to a
    curve (``accuracy`` at ``n`` photos, each measured on ``scored`` photos)."""
    error = np.maximum(1 - np.asarray(accuracy, float), 0.5 / np.asarray(scored, float))  # a fold without a mistake is not error 0
    slope, _ = np.polyfit(np.log(n), np.log(error), 1)
    b = float(np.clip(-slope, 0.0, 1.0))
    a = float(np.exp(np.mean(np.log(error) + b * np.log(n))))  # the level that fits best once b is clipped
    return max(0.0, a * now ** -b - a * (now + more) ** -b)


#: The ridge classifier's penalty, per photo (a closed-form stand-in for the model's head: the whole curve costs a few
#: milliseconds instead of forty logistic fits).
RIDGE = 0.05


def _ridge(x: np.ndarray, y: np.ndarray, k: int, penalty: float):
    """A class-balanced least-squares classifier of ``x`` (rows unit-normalised here) onto one-hot labels; its scorer."""
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    w = (len(y) / (k * np.maximum(np.bincount(y, minlength=k), 1)))[y]
    target = np.zeros((len(y), k))
    target[np.arange(len(y)), y] = 1.0
    xb = np.hstack([x, np.ones((len(x), 1))])
    gram = (xb * w[:, None]).T @ xb + penalty * len(y) * np.eye(xb.shape[1])
    coef = np.linalg.solve(gram, (xb * w[:, None]).T @ target)

    def score(z: np.ndarray) -> np.ndarray:
        z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
        return np.hstack([z, np.ones((len(z), 1))]) @ coef

    return score


def _principal(u: np.ndarray, dims: int) -> np.ndarray:
    """``u``'s coordinates in its top ``dims`` principal directions, found by a randomized range finder (two power
    iterations: Halko, Martinsson and Tropp 2011), itself when it has no more dimensions."""
    if u.shape[1] <= dims:
        return u
    centred = np.asarray(u - u.mean(0), np.float32)
    q = centred @ np.random.default_rng(0).standard_normal((u.shape[1], dims + 10)).astype(np.float32)
    for _ in range(2):
        q, _ = np.linalg.qr(centred @ (centred.T @ np.linalg.qr(q)[0]))
    _, _, vt = np.linalg.svd(q.T @ centred, full_matrices=False)
    return np.ascontiguousarray(centred @ vt[:dims].T, np.float32)


def _points(n: np.ndarray, values: np.ndarray) -> list[list[float]]:
    return [[round(float(m), 1), round(float(v), 4)] for m, v in zip(n, values)]
