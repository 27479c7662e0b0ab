"""Likely label mistakes in photos with several labels each: a label a photo probably shows but was not given
(``missing_label``), and one it was given but probably does not show (``extra_label``).

Each photo is scored by heads fitted without it (out-of-fold, calibrated: :mod:`imgclf.training.multilabel`); a
probability of at least :data:`MISSING_AT` for a label the photo lacks, or at most :data:`EXTRA_BELOW` for one it has,
is a finding, the surest first. ``train`` lists them in its metrics and report; ``imgclf check --labels FILE`` (or
``--multi-label``, :func:`imgclf.training.multilabel.check_folder`) prints them.
"""

from __future__ import annotations

import numpy as np

from imgclf.checks.findings import Finding

#: A label a photo lacks is probably missing when its out-of-fold probability is at least this.
MISSING_AT = 0.8
#: A label a photo has is probably wrong when its out-of-fold probability is at most this.
EXTRA_BELOW = 0.2


def label_findings(paths: list[str], labels: list[str], Y: np.ndarray, probs: np.ndarray,
                   files: list[dict[str, str]] | None = None) -> list[Finding]:
    """The ``missing_label`` and ``extra_label`` findings of photos ``paths`` with labels ``Y`` (0/1) and out-of-fold
    calibrated probabilities ``probs``, the surest first within each kind. With label folders, ``files`` has each
    photo's file in each of its labels' folders: an extra label names the file to take out of that folder."""
    missing, extra = [], []
    for i, k in zip(*np.nonzero((Y == 0) & (probs >= MISSING_AT))):
        p = float(probs[i, k])
        missing.append(Finding("missing_label", str(paths[i]), f"looks like it also shows {labels[k]} ({100 * p:.0f} % by "
                               f"photos it was not trained on), but is not labelled {labels[k]}", p,
                               f"add the label {labels[k]} if the photo shows it", label=labels[k]))
    for i, k in zip(*np.nonzero((Y > 0) & (probs <= EXTRA_BELOW))):
        p = float(probs[i, k])
        path = (files[i] if files else {}).get(labels[k], paths[i])
        extra.append(Finding("extra_label", str(path), f"labelled {labels[k]}, but looks like it does not show it "
                             f"({100 * p:.0f} % by photos it was not trained on)", 1 - p,
                             f"remove the label {labels[k]} if the photo does not show it", label=labels[k]))
    return sorted(missing, key=lambda f: -f.score) + sorted(extra, key=lambda f: -f.score)

