"""How well a model that answers several labels per photo does: per label, over labels, over photos.

One contract for ``train``'s estimate and ``evaluate``: the truth (photos × labels, 0/1), each label's probability and
each label's threshold in; per label precision, recall, F1 and average precision, mean AP, exact-set accuracy and
Hamming loss out, each proportion with its n and 95 % Wilson interval, and the photos each label missed or added.
"""

from __future__ import annotations

import numpy as np

from imgclf.heads.estimate import wilson
from imgclf.heads.sigmoid import average_precision

#: Photos listed per label among those it missed and those it added (the report shows them).
LISTED = 12
#: Bins of the calibration error of each label's probability.
ECE_BINS = 10


def proportion(hits: int, n: int) -> dict:
    """``{"value", "n", "interval"}`` of ``hits`` out of ``n`` (value None when n is 0)."""
    if not n:
        return {"value": None, "n": 0, "interval": None}
    lo, hi = wilson(hits / n, n)
    return {"value": round(hits / n, 6), "n": int(n), "interval": [round(lo, 4), round(hi, 4)]}


def calibration_error(truth: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> float | None:
    """Expected calibration error of one label's probabilities: the photos in 10 equal-width bins, the mean |mean
    probability − share with the label| weighted by each bin's photos."""
    if not len(p):
        return None
    edges = np.minimum((np.asarray(p) * bins).astype(int), bins - 1)
    return round(float(sum(abs(p[edges == b].mean() - truth[edges == b].mean()) * (edges == b).mean()
                           for b in range(bins) if (edges == b).any())), 6)


def multilabel_metrics(truth: np.ndarray, probs: np.ndarray, answered: np.ndarray, labels: list[str],
                       thresholds: np.ndarray, paths: list[str] | None = None) -> dict:
    """The metrics of ``answered`` (photos × labels, each label over its threshold; the thresholds may differ between
    photos in a cross-validation) against ``truth``, with each label's ``probs``; ``thresholds`` are the model's,
    recorded beside each label (see the module docstring)."""
    truth = np.asarray(truth) > 0
    answered = np.asarray(answered, bool)
    n, k = truth.shape
    per_label = {}
    for j, lab in enumerate(labels):
        t, a = truth[:, j], answered[:, j]
        tp = int((t & a).sum())
        precision, recall = proportion(tp, int(a.sum())), proportion(tp, int(t.sum()))
        p, r = precision["value"], recall["value"]
        row = {"photos": int(t.sum()), "answered": int(a.sum()), "precision": precision, "recall": recall,
               "f1": None if p is None or r is None else round(2 * p * r / (p + r), 6) if p + r else 0.0,
               "average_precision": _round(average_precision(t, probs[:, j])),
               "calibration_error": calibration_error(t.astype(float), np.asarray(probs[:, j], float)),
               "threshold": round(float(thresholds[j]), 6)}
        if paths is not None:
            row["missed"] = [paths[i] for i in np.flatnonzero(t & ~a)[:LISTED]]
            row["added"] = [paths[i] for i in np.flatnonzero(~t & a)[:LISTED]]
        per_label[lab] = row
    aps = [r["average_precision"] for r in per_label.values() if r["average_precision"] is not None]
    f1s = [r["f1"] for r in per_label.values() if r["f1"] is not None]
    eces = [r["calibration_error"] for r in per_label.values() if r["calibration_error"] is not None]
    exact = int((truth == answered).all(1).sum())
    wrong = int((truth != answered).sum())
    return {
        "photos": int(n),
        "mean_average_precision": _round(float(np.mean(aps))) if aps else None,
        "macro_f1": _round(float(np.mean(f1s))) if f1s else None,
        "mean_calibration_error": _round(float(np.mean(eces))) if eces else None,
        "exact_set": proportion(exact, n),
        "hamming_loss": proportion(wrong, n * k),
        "none_right": proportion(int((~truth.any(1) & ~answered.any(1)).sum()), int((~truth.any(1)).sum())),
        "per_label": per_label,
    }


def _round(v: float | None) -> float | None:
    return None if v is None else round(float(v), 6)


def evaluate_multilabel(model, data_dir, labels_file=None) -> dict:
    """The metrics of a model of several labels per photo on photos with known labels: a manifest (``labels_file``) or
    label folders (one photo in several folders has each label). Labels the model does not know are reported in
    ``unknown_labels`` and left out; unreadable files are listed in ``skipped``."""
    from pathlib import Path

    from imgclf.data.manifest import merge_copies, read_manifest, scan_folders
    from imgclf.errors import ImageError, ImgclfError
    from imgclf.files.digests import content_hash
    from imgclf.runtime.images import read_bytes

    tagged = read_manifest(data_dir, labels_file) if labels_file else scan_folders(data_dir)
    skipped, hashes = [s.to_dict() for s in tagged.skipped], {}
    for p in tagged.photos:
        try:
            hashes[p.path] = content_hash(read_bytes(p.path))
        except ImageError as e:
            skipped.append({"path": str(p.path), "reason": e.reason})
    tagged, _ = merge_copies(tagged, hashes)
    known = {lab: k for k, lab in enumerate(model.labels)}
    truth = np.zeros((len(tagged.photos), len(model.labels)), np.int8)
    for i, p in enumerate(tagged.photos):
        truth[i, [known[lab] for lab in p.labels if lab in known]] = 1
    rows, probs, answered, paths = [], [], [], []
    for i, pred in enumerate(model.iter_predict([p.path for p in tagged.photos], top_k=len(model.labels))):
        if pred.error or not pred.top_k:
            skipped.append({"path": pred.path, "reason": pred.error or "no answer"})
            continue
        score = {t["label"]: t["confidence"] for t in pred.top_k}
        rows.append(i)
        probs.append([score[lab] for lab in model.labels])
        answered.append([lab in {a["label"] for a in pred.labels or []} for lab in model.labels])
        paths.append(pred.path)
    if not rows:
        raise ImgclfError(f"none of the {len(tagged.photos)} files in {data_dir} could be read")
    result = multilabel_metrics(truth[rows], np.array(probs), np.array(answered), model.labels,
                                model.label_thresholds, paths)
    result["method"] = f"{len(rows)} photos of {Path(data_dir).resolve().name} ({tagged.source})"
    return {"multi_label": result, "n": len(rows), "skipped": skipped, "data_dir": str(data_dir),
            "unknown_labels": sorted(set(tagged.labels) - set(known))}
