"""Findings about labels: ``label_error`` (a photo that looks like another label), ``confused_labels``
(pairs the photos do not tell apart) and ``imbalance``.

Label errors follow confident learning (Northcutt et al., 2021): every photo is scored by a head
fitted without it (5-fold, :func:`imgclf.heads.estimate.out_of_fold_probabilities`, each fold's head fitted on
at most :data:`FOLD_PHOTOS_PER_LABEL` photos of each label), and a photo is
flagged when that head prefers another label by a margin of at least :data:`MIN_MARGIN`.
cleanlab's filters on the same probabilities are compared in ``benchmarks/check.py``; cleanlab
itself is not a dependency (importing it takes 1.3 s and installs 151 MB: scikit-learn, pandas).
"""

from __future__ import annotations

import numpy as np

from imgclf.checks.data import CheckData
from imgclf.checks.findings import Finding

#: Regularisation of the out-of-fold heads (smoother probabilities than the model's own grid's best).
C = 10.0
#: Smallest lead of the suggested label's out-of-fold probability over the given label's.
MIN_MARGIN = 0.4
#: Each fold's head is fitted on at most this many photos of each label: beyond it the heads barely change, and the
#: check's cost stops growing with the photos (on a 20,000-photo set its five heads cost 35 s fitted on every photo).
FOLD_PHOTOS_PER_LABEL = 400
#: Labels with fewer photos are not judged (a fold would leave too few to learn them from).
MIN_PHOTOS = 5
#: A pair of labels is ``confused_labels`` when this share of their photos go to the other one.
MIN_CONFUSION = 0.05
#: ``imbalance`` when the largest label has at least this many times the photos of the smallest.
MAX_RATIO = 3.0


def label_findings(data: CheckData, seed: int = 0) -> list[Finding]:
    rows = data.unique
    names = data.label_names
    y = np.array([names.index(str(lab)) for lab in data.labels[rows]], np.int64)
    out = imbalance_findings({lab: int((y == k).sum()) for k, lab in enumerate(names)})
    counts = np.bincount(y, minlength=len(names))
    judged = counts[y] >= MIN_PHOTOS
    if len(names) < 2 or (counts >= MIN_PHOTOS).sum() < 2:
        return out
    from imgclf.heads.estimate import out_of_fold_probabilities

    keep = np.flatnonzero(judged)
    classes = np.unique(y[keep])
    remap = {c: k for k, c in enumerate(classes)}
    yk = np.array([remap[c] for c in y[keep]])
    probs, _ = out_of_fold_probabilities(data.vectors[rows[keep]], yk, len(classes), C, seed, FOLD_PHOTOS_PER_LABEL)
    sub = [names[c] for c in classes]
    return label_errors(data, rows[keep], yk, probs, sub) + confused(yk, probs, sub) + out


def label_errors(data: CheckData, rows: np.ndarray, y: np.ndarray, probs: np.ndarray, names: list[str]) -> list[Finding]:
    guess = probs.argmax(1)
    margin = probs[np.arange(len(y)), guess] - probs[np.arange(len(y)), y]
    out = []
    for k in np.flatnonzero((guess != y) & (margin >= MIN_MARGIN)):
        given, suggested = names[y[k]], names[guess[k]]
        out.append(Finding(
            "label_error", data.paths[rows[k]],
            f"labelled {given}, but looks like {suggested} (out-of-fold {probs[k, guess[k]]:.2f} vs {probs[k, y[k]]:.2f})",
            float(margin[k]), f"look at it: move it to {suggested}/ if it shows {suggested}", label=given, suggested=suggested,
            examples=data.nearest(rows[k], suggested)))
    return sorted(out, key=lambda f: -f.score)


def confused(y: np.ndarray, probs: np.ndarray, names: list[str]) -> list[Finding]:
    """Pairs of labels whose photos go to each other at a rate of :data:`MIN_CONFUSION` or more, out of fold."""
    k = len(names)
    cm = np.zeros((k, k), np.int64)
    np.add.at(cm, (y, probs.argmax(1)), 1)
    out = []
    for a in range(k):
        for b in range(a + 1, k):
            n = cm[a].sum() + cm[b].sum()
            rate = (cm[a, b] + cm[b, a]) / n if n else 0.0
            if rate >= MIN_CONFUSION:
                out.append(Finding(
                    "confused_labels", None,
                    f"{cm[a, b]} photos of {names[a]} look like {names[b]} and {cm[b, a]} of {names[b]} like {names[a]} ({rate:.0%})",
                    float(rate), "add more varied photos of both, and check they are labelled the same way", labels=[names[a], names[b]]))
    return sorted(out, key=lambda f: -f.score)


def imbalance(counts: dict[str, int]) -> tuple[str, str, float] | None:
    """(largest label, smallest label, ratio) when the ratio is :data:`MAX_RATIO` or more; else None."""
    present = {lab: n for lab, n in counts.items() if n}
    if len(present) < 2:
        return None
    big, small = max(present, key=present.get), min(present, key=present.get)
    ratio = present[big] / present[small]
    return (big, small, ratio) if ratio >= MAX_RATIO else None


def imbalance_findings(counts: dict[str, int]) -> list[Finding]:
    found = imbalance(counts)
    if found is None:
        return []
    big, small, ratio = found
    return [Finding("imbalance", None, f"{big} has {counts[big]} photos, {small} only {counts[small]} ({ratio:.1f}x)", ratio,
                    f"add photos of {small} (training weighs labels equally, but few photos cover less of a label)", label=small)]
