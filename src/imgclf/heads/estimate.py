"""Out-of-sample estimates from cached embeddings: accuracy with its interval, and out-of-fold scores.

Every accuracy imgclf prints or writes comes from :func:`accuracy_estimate` (a 95 % Wilson
interval on its ``n``). When the held-out splits are small, :func:`cross_validated_accuracy`
scores each labelled photo with a head fitted without it; :func:`out_of_fold_similarity`
gives each photo's "unknown" score from a reference built without it, which is what the
threshold is calibrated on (:func:`imgclf.heads.rejection.calibrate`).
"""

from __future__ import annotations

import math

import numpy as np

from imgclf.heads.linear import stratified_folds

#: Held-out splits smaller than this are too small to quote alone: cross-validation estimates accuracy instead.
MIN_HELD_OUT = 30
#: Folds of the out-of-fold estimates (fewer when a class has fewer photos).
FOLDS = 5
#: With more labelled photos than this, and at least :data:`MIN_SET_ASIDE` in each of the validation and test splits,
#: the splits set aside are what the model is measured on (:func:`cross_validates`): five more heads as large as the
#: model's own would cost five times its fitting to make an interval that is already narrow.
CROSS_VALIDATE_UP_TO = 2500
MIN_SET_ASIDE = 200


def wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion ``p`` measured on ``n`` trials."""
    if n <= 0:
        return 0.0, 1.0
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(max(0.0, p * (1 - p) / n + z * z / (4 * n * n))) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy_estimate(correct: int, n: int, method: str) -> dict:
    """``{"accuracy", "low", "high", "method", "n"}`` for ``correct`` right answers out of ``n``."""
    acc = correct / n if n else 0.0
    lo, hi = wilson(acc, n)
    return {"accuracy": round(acc, 6), "low": round(lo, 6), "high": round(hi, 6), "method": method, "n": int(n)}


def describe(est: dict) -> str:
    """``0.870 (95 % interval 0.78–0.93; 5-fold cross-validation over 70 photos)``."""
    return f"{est['accuracy']:.3f} (95 % interval {est['low']:.2f}–{est['high']:.2f}; {est['method']})"


def cross_validates(labelled: int, val: int, test: int) -> bool:
    """Whether the estimate comes from cross-validation over every labelled photo and the temperature from out-of-fold
    logits (few photos), or from the test split and the validation split, scored by the head fitted on the training
    split (many photos: see :data:`CROSS_VALIDATE_UP_TO`)."""
    return labelled <= CROSS_VALIDATE_UP_TO or min(val, test) < MIN_SET_ASIDE


def folds_for(y: np.ndarray, seed: int, groups: np.ndarray | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds: :data:`FOLDS`, or as many as the smallest class has photos (at least 2). With ``groups`` (near
    copies of one picture share an id) a group is held out whole, and the smallest class counts its groups: a copy
    scored against its twin would promise new photos a likeness they will not have."""
    if groups is None:
        smallest = int(np.bincount(y)[np.unique(y)].min())
    else:
        smallest = min(len(np.unique(groups[y == c])) for c in np.unique(y))
    return stratified_folds(y, max(2, min(FOLDS, smallest)), seed, groups)


def cross_validated_accuracy(x: np.ndarray, y: np.ndarray, n_classes: int, C: float, seed: int) -> dict:
    """Accuracy of heads (regularisation ``C``) fitted on the other folds, over every photo in ``x``."""
    logits, folds = out_of_fold_logits(x, y, n_classes, C, seed)
    return oof_accuracy(logits, y, folds)


def oof_accuracy(logits: np.ndarray, y: np.ndarray, folds: int) -> dict:
    """:func:`accuracy_estimate` of out-of-fold logits."""
    return accuracy_estimate(int((logits.argmax(1) == y).sum()), len(y), f"{folds}-fold cross-validation over {len(y)} photos")


def out_of_fold_probabilities(x: np.ndarray, y: np.ndarray, n_classes: int, C: float, seed: int,
                              per_label: int | None = None) -> tuple[np.ndarray, int]:
    """Each photo's label probabilities from a head (regularisation ``C``) fitted on the other folds only,
    and the number of folds (``per_label``: as :func:`out_of_fold_logits`)."""
    from imgclf.heads.linear import softmax

    logits, folds = out_of_fold_logits(x, y, n_classes, C, seed, per_label)
    return softmax(logits).astype(np.float32), folds


def out_of_fold_logits(x: np.ndarray, y: np.ndarray, n_classes: int, C: float, seed: int,
                       per_label: int | None = None, groups: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Each photo's logits from a head (regularisation ``C``) fitted on the other folds only, and the number of
    folds; the folds are solved on two threads. With ``per_label``, each fold's head is fitted on at most that many
    of its photos of each label (a stratified sample), so the cost stops growing with the photos; ``groups``: see
    :func:`folds_for`."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    from imgclf.heads.linear import _Problem, stratified_sample

    folds = folds_for(y, seed, groups)
    logits = np.zeros((len(y), n_classes), np.float32)

    def fold(tr_te):
        tr, te = tr_te
        if per_label is not None:
            tr = tr[stratified_sample(y[tr], per_label, seed)]
        logits[te] = _Problem(x[tr], y[tr], n_classes).path((C,))[0].logits(x[te])

    with threadpool_limits(1), ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(fold, folds))
    return logits, len(folds)


def out_of_fold_similarity(x: np.ndarray, y: np.ndarray, classes: list[int], seed: int,
                           groups: np.ndarray | None = None, photos: bool = True) -> tuple[np.ndarray, int]:
    """Each photo's "unknown" score (:class:`~imgclf.heads.rejection.Reference`, with or without ``photos``) against the
    photos of the other folds only, and the number of folds (``groups``: see :func:`folds_for`)."""
    from imgclf.heads.rejection import Reference

    out = np.full(len(x), -1.0, np.float32)  # a photo with nothing to compare with is as unlike as can be
    if len(x) < 2:
        return out, 1
    folds = folds_for(y, seed, groups)
    for tr, te in folds:
        if len(tr) and len(te) and np.isin(y[tr], classes).any():
            out[te] = Reference.fit(x[tr], y[tr], classes, photos=photos).similarity(x[te])
    return out, len(folds)


def selective(truth: list[str], guess: list[str], rejected: list[bool]) -> dict:
    """The "unknown" rule applied to best guesses, each with its 95 % interval.

    ``coverage``: share of photos answered; ``selective_accuracy``: share right among those;
    ``accuracy_with_unknown``: share right overall, an "unknown" counted as wrong (right for
    a photo of the class ``unknown``).
    """
    from imgclf.heads.rejection import UNKNOWN

    n = len(truth)
    answered = [t == g for t, g, r in zip(truth, guess, rejected) if not r]
    right = sum(answered)
    right_overall = right + sum(t == UNKNOWN for t, r in zip(truth, rejected) if r)
    out: dict = {}
    for key, k, m in (("coverage", len(answered), n), ("selective_accuracy", right, len(answered)),
                      ("accuracy_with_unknown", right_overall, n)):
        out[key] = round(k / m, 6) if m else None
        out[f"{key}_interval"] = [round(v, 6) for v in wilson(k / m, m)] if m else None
    return out
