"""Say "unknown" instead of guessing: open-set rejection by similarity to class prototypes.

A photo's score (:class:`Reference`) is the mean of two cosine similarities of its
embedding: to the nearest class prototype (the mean embedding of a label's photos) and to
the nearest single training photo. The first catches photos far from every label, the
second photos between or beside the labels; together they beat either alone
(``benchmarks/unknown.py``). The threshold is a conformal quantile of out-of-sample scores
(each photo scored against a reference built without its fold,
:func:`imgclf.heads.estimate.out_of_fold_similarity`), so that new photos of the known labels
are accepted at the target rate (95 % by default); :func:`calibrate` also states how sure
that rate is, given how many photos it rests on.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from imgclf.heads.linear import l2_normalize
from imgclf.runtime.prediction import UNKNOWN  # noqa: F401 (the label of a rejected photo, re-exported)

#: Training folders whose photos are negatives (trained as the class ``unknown``).
NEGATIVE_FOLDERS = ("unknown", "_background")
METHOD = "prototype+neighbour-cosine"


@dataclass
class Rejection:
    """The stored rule: ``similarity < threshold`` → ``unknown``.

    ``n`` out-of-sample scores were calibrated on; ``expected_acceptance`` is the share of new
    photos of the known labels the rule accepts, and ``acceptance_interval`` its 95 % range
    given those ``n`` scores (it narrows as ``n`` grows).
    """

    threshold: float
    target_acceptance: float
    calibration_acceptance: float
    calibrated_on: str
    method: str = METHOD
    n: int = 0
    expected_acceptance: float | None = None
    acceptance_interval: list[float] | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "Rejection | None":
        return cls(**d) if d else None


def prototypes(x: np.ndarray, y: np.ndarray, classes: list[int]) -> np.ndarray:
    """Unit-length mean of the normalised embeddings of each class in ``classes`` (rows in that order)."""
    xn = l2_normalize(x)
    return l2_normalize(np.stack([xn[y == c].mean(0) for c in classes]))


#: The training photos' embeddings are kept (in the model and here) as coordinates in an orthonormal basis of at
#: most this many directions: exact while there are fewer photos, their top singular directions beyond (1.5 KB a
#: photo instead of 5 KB at Lite0's 1,280 dimensions; ``benchmarks/compact.py`` measures what it changes).
COMPACT_DIMS = 384


@dataclass
class Reference:
    """What a photo is compared with: unit-length class ``prototypes`` and the training photos, as ``coords`` (k, N)
    in the orthonormal ``basis`` (dim, k): a photo's cosine to training photo i is ``(u @ basis) @ coords[:, i]``."""

    prototypes: np.ndarray
    basis: np.ndarray
    coords: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, classes: list[int], dims: int = COMPACT_DIMS, photos: bool = True) -> "Reference":
        """From the embeddings ``x`` of the photos of ``classes`` (labels ``y``); classes without photos are left out.
        Without ``photos`` (``train --private``) it keeps only the prototypes, and a photo's score is its cosine to the
        nearest one."""
        present = [c for c in classes if (y == c).any()]
        if not photos:
            return cls(prototypes(x, y, present), np.zeros((x.shape[1], 0), np.float32), np.zeros((0, 0), np.float32))
        basis, coords = compact(l2_normalize(x[np.isin(y, present)]), dims)
        return cls(prototypes(x, y, present), basis, coords)

    @property
    def keeps_photos(self) -> bool:
        """Whether single training photos are compared with (not with ``train --private``)."""
        return self.coords.shape[1] > 0

    def photo_cosines(self, u: np.ndarray) -> np.ndarray:
        """(N, photos): the cosine of each unit row of ``u`` to each training photo (the ``photo_similarities`` output)."""
        return (u @ self.basis) @ self.coords

    def similarity(self, x: np.ndarray) -> np.ndarray:
        """Mean of the largest cosine similarity to a prototype and to a training photo (the ``similarity`` output);
        the largest cosine to a prototype alone for a reference without photos."""
        u = l2_normalize(x)
        nearest_prototype = (u @ self.prototypes.T).max(1)
        if not self.keeps_photos:
            return nearest_prototype
        return 0.5 * (nearest_prototype + self.photo_cosines(u).max(1))


def compact(photos: np.ndarray, dims: int = COMPACT_DIMS) -> tuple[np.ndarray, np.ndarray]:
    """``(basis, coords)`` with ``basis @ coords ≈ photos.T``: the photos' own span when there are at most ``dims`` of
    them (exact), else their ``dims`` top singular directions (the best approximation of that size)."""
    if len(photos) == 0:
        return np.zeros((photos.shape[1], 0), np.float32), np.zeros((0, 0), np.float32)
    if len(photos) <= dims:
        basis, coords = np.linalg.qr(np.asarray(photos, np.float64).T)
        return basis.astype(np.float32), coords.astype(np.float32)
    photos = np.asarray(photos, np.float32)  # the Gram matrix in float32 (a tenth of the time), its eigenvectors in float64
    if len(photos) < photos.shape[1]:  # the smaller Gram matrix: the photos' (N, N) one has the same top directions
        values, vectors = np.linalg.eigh((photos @ photos.T).astype(np.float64))  # ascending: the last ``dims`` are the top
        top = (photos.T.astype(np.float64) @ vectors[:, -dims:][:, ::-1]) / np.sqrt(np.maximum(values[-dims:][::-1], 1e-12))
        q, r = np.linalg.qr(top)  # orthonormal to the last bit (tiny singular values lose it), each column's sign kept
        basis = np.ascontiguousarray(q * np.where(np.diag(r) < 0, -1.0, 1.0), np.float32)
    else:
        _, vectors = np.linalg.eigh((photos.T @ photos).astype(np.float64))
        basis = np.ascontiguousarray(vectors[:, -dims:][:, ::-1], np.float32)
    return basis, basis.T @ photos.T


def calibrate(scores: np.ndarray, target_acceptance: float, calibrated_on: str, floor: float | None = None) -> Rejection:
    """The conformal threshold that accepts ``target_acceptance`` of new in-distribution photos.

    With the ``n`` out-of-sample ``scores`` sorted, the threshold is the k-th smallest, k =
    ⌊(1 − target)(n + 1)⌋ (at least 1): a new exchangeable photo then scores at least that
    with probability (n + 1 − k) / (n + 1) ≥ target. Under 19 photos that is below the
    target, and the stored ``expected_acceptance`` says so. ``floor`` raises a lower
    threshold to itself (a backbone's own scale, e.g. faces); the expected acceptance then
    follows from how many scores fall below it.
    """
    s = np.sort(np.asarray(scores, np.float64))
    n = len(s)
    if n == 0:
        threshold = -1.0 if floor is None else floor
        return Rejection(threshold, target_acceptance, 1.0, calibrated_on, n=0, expected_acceptance=1.0, acceptance_interval=[0.0, 1.0])
    k = max(1, int(np.floor((1.0 - target_acceptance) * (n + 1))))
    threshold = float(np.floor(s[k - 1] * 1e6) / 1e6)  # stored with 6 decimals, never above the k-th score
    if floor is not None and threshold < floor:
        threshold = floor
        calibrated_on += f"; raised to this backbone's floor {floor}"
    below = int((s < threshold).sum())  # k - 1 for the conformal threshold itself
    lo, hi = (beta_quantile(q, n - below, below + 1) for q in (0.025, 0.975))
    return Rejection(
        threshold, target_acceptance, round(float(np.mean(s >= threshold)), 6), calibrated_on,
        n=n, expected_acceptance=round((n - below) / (n + 1), 6), acceptance_interval=[round(float(lo), 4), round(float(hi), 4)],
    )


def beta_quantile(q: float, a: int, b: int) -> float:
    """The ``q`` quantile of Beta(a, b) for whole ``a``, ``b`` ≥ 1 (the acceptance of a conformal threshold).

    Uses I_x(a, b) = P(Binomial(a + b − 1, x) ≥ a), a sum of ``b`` terms, and bisection: within
    1e-9 of SciPy's ``betaincinv`` (tested), without importing SciPy on the training path.
    """
    n = a + b - 1
    log_n = math.lgamma(n + 1)

    def cdf(x: float) -> float:
        if x <= 0.0:
            return 0.0
        if x >= 1.0:
            return 1.0
        lx, l1x = math.log(x), math.log1p(-x)
        return sum(math.exp(log_n - math.lgamma(j + 1) - math.lgamma(n - j + 1) + j * lx + (n - j) * l1x) for j in range(a, n + 1))

    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < q else (lo, mid)
    return (lo + hi) / 2


def auroc(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    """Probability that an in-distribution photo scores higher than an out-of-distribution one."""
    in_scores, out_scores = np.asarray(in_scores, float), np.asarray(out_scores, float)
    if not len(in_scores) or not len(out_scores):
        return float("nan")
    greater = (in_scores[:, None] > out_scores[None, :]).mean()
    ties = (in_scores[:, None] == out_scores[None, :]).mean()
    return float(greater + 0.5 * ties)
