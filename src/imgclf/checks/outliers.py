"""``outlier``: a photo unlike every photo of its label (a screenshot in a folder of cats).

Each photo is scored as the model's "unknown" rule scores a new photo (:mod:`imgclf.heads.rejection`),
against its own label only and without itself: the mean of its cosine to the label's other photos'
mean direction and to the nearest of them. A photo is an outlier when its score lies more than
:data:`MAX_Z` robust standard deviations (1.4826 × the median absolute deviation, pooled over the
labels) below its label's median. A photo that is also a likely label mistake stays one only while
it is typical of the label it looks like (:data:`LIKE_Z`); unlike that label too, it is an outlier. Threshold from
``benchmarks/check.py``.
"""

from __future__ import annotations

import numpy as np

from imgclf.checks.data import CheckData
from imgclf.checks.findings import Finding

MAX_Z = 3.0
#: A likely label mistake stays one while it is at most this many robust deviations below the typical photo
#: of the label it looks like (flowers moved to another label: 5th percentile −1.1 to −1.9; photos of no
#: flower: −2.3 and −3.0, on planted folders of seeds 0–2).
LIKE_Z = 2.0
#: Labels with fewer photos have no typical photo to be unlike.
MIN_PHOTOS = 5


class Typicality:
    """How typical photos are of labels, in robust standard deviations from each label's own photos (0: typical)."""

    def __init__(self, data: CheckData):
        self.data = data
        self.rows = data.unique
        self.labels = data.labels[self.rows]
        self.score, self.judged = own_label_similarity(data.vectors[self.rows], self.labels)
        self.median = {lab: float(np.median(self.score[self.judged & (self.labels == lab)])) for lab in np.unique(self.labels[self.judged])}
        centred = np.array([s - self.median.get(lab, s) for s, lab in zip(self.score, self.labels)])
        self.spread = float(1.4826 * np.median(np.abs(centred[self.judged]))) if self.judged.any() else 0.0
        self.z = np.where(self.judged, centred / self.spread, 0.0) if self.spread > 0 else np.zeros(len(self.rows))

    def against(self, i: int, label: str) -> float:
        """The typicality of photo ``i`` (a row of the data) for another ``label``."""
        if label not in self.median or self.spread <= 0:
            return 0.0
        members = self.data.vectors[self.rows[(self.labels == label) & (self.rows != i)]]
        x = self.data.vectors[i]
        total = members.sum(0)
        score = (x @ total / max(float(np.linalg.norm(total)), 1e-12) + float((members @ x).max())) / 2
        return (score - self.median[label]) / self.spread


def outliers(data: CheckData, typicality: Typicality, label_errors: dict[str, Finding]) -> tuple[list[Finding], set[str]]:
    """Outlier findings, and the paths of ``label_errors`` (by path) that are outliers instead."""
    t = typicality
    out, instead = [], set()
    typical: dict[str, list[str]] = {}
    for k in np.flatnonzero(t.judged & (t.z < -MAX_Z)):
        i = int(t.rows[k])
        path, label = data.paths[i], str(t.labels[k])
        mistaken = label_errors.get(path)
        if mistaken is not None:
            if t.against(i, mistaken.suggested) >= -LIKE_Z:
                continue  # like the label it looks like: a label mistake, reported as such
            instead.add(path)
        also = f" and of {mistaken.suggested}, the label it looks most like" if mistaken is not None else ""
        out.append(Finding("outlier", path, f"unlike the other photos of {label}{also} (similarity {t.score[k]:.2f}: "
                           f"far below the label's typical photo, by {-t.z[k]:.1f} times the usual spread)", float(-t.z[k]),
                           f"remove it if it does not show {label}", label=label, similarity=float(t.score[k]),
                           examples=typical.setdefault(label, _typical(t, label))))
    return sorted(out, key=lambda f: -f.score), instead


def _typical(t: Typicality, label: str, k: int = 3) -> list[str]:
    """The ``k`` photos of ``label`` that score highest: the label as its photos mostly look."""
    members = np.flatnonzero(t.labels == label)
    return [t.data.paths[t.rows[m]] for m in members[np.argsort(-t.score[members], kind="stable")[:k]]]


def own_label_similarity(x: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per photo (unit rows of ``x``): mean of the cosine to its label's other photos' mean direction and the
    cosine to the nearest of them; and whether its label has :data:`MIN_PHOTOS` photos to compare with."""
    score = np.zeros(len(x), np.float32)
    judged = np.zeros(len(x), bool)
    for lab in np.unique(labels):
        idx = np.flatnonzero(labels == lab)
        if len(idx) < MIN_PHOTOS:
            continue
        members = x[idx]
        others = members.sum(0) - members  # each row: the sum of the label's other photos
        prototype = np.einsum("ij,ij->i", members, others) / np.maximum(np.linalg.norm(others, axis=1), 1e-12)
        score[idx] = (prototype + _nearest_other(members)) / 2
        judged[idx] = True
    return score, judged


def _nearest_other(x: np.ndarray, block: int = 1024) -> np.ndarray:
    """Per row, the largest cosine to another row (computed a block of rows at a time: bounded memory)."""
    out = np.empty(len(x), np.float32)
    for start in range(0, len(x), block):
        sims = x[start:start + block] @ x.T
        sims[np.arange(len(sims)), np.arange(start, start + len(sims))] = -np.inf
        out[start:start + block] = sims.max(1)
    return out
