"""Score a trained model on a labelled folder (``<label>/<images>``)."""

from __future__ import annotations

import os
from pathlib import Path

from imgclf.datasets import scan_labelled
from imgclf.errors import ImgclfError
from imgclf.metrics import summarize
from imgclf.model import Model


def evaluate(model: Model | str | os.PathLike, data_dir: str | os.PathLike, top_k: int = 3) -> dict:
    """Metrics of ``model`` on every photo under ``data_dir``.

    Labels the model does not know are reported in ``unknown_labels`` and skipped;
    unreadable files are listed in ``skipped`` with their reasons. ``photos`` has one record
    per scored photo (``path``, ``label``, ``predicted``, ``confidence``, ``label_confidence``,
    ``top_k``), which :func:`imgclf.report.write_report` draws from.
    """
    if not isinstance(model, Model):
        model = Model.load(model)
    data_dir = Path(data_dir)
    dataset = scan_labelled(data_dir, val_fraction=0.0, test_fraction=0.0, min_labels=1)
    known = {lab: i for i, lab in enumerate(model.labels)}
    unknown = sorted(set(dataset.labels) - set(known))
    photos = [p for p in dataset.photos if p.label in known]
    if not photos:
        raise ImgclfError(f"no photos of the model's labels ({', '.join(model.labels)}) in {data_dir}")
    truth = {str(p.path): p.label for p in photos}
    y_true, y_pred, misclassified, skipped, per_photo = [], [], [], [], []
    # Every label's probability, so each photo also records the probability of its true label.
    for pred in model.iter_predict([p.path for p in photos], top_k=max(top_k, len(model.labels))):
        label = truth[pred.path]
        if pred.error:
            skipped.append({"path": pred.path, "reason": pred.error})
            continue
        y_true.append(known[label])
        y_pred.append(known[pred.label])
        top = pred.top_k[:top_k]
        label_confidence = next(t["confidence"] for t in pred.top_k if t["label"] == label)
        per_photo.append({"path": pred.path, "label": label, "predicted": pred.label, "confidence": pred.confidence,
                          "label_confidence": label_confidence, "top_k": top})
        if pred.label != label:
            misclassified.append({"path": pred.path, "label": label, "predicted": pred.label, "confidence": pred.confidence, "top_k": top})
    if not y_true:
        raise ImgclfError(f"none of the {len(photos)} files in {data_dir} could be read")
    result = summarize(y_true, y_pred, model.labels)
    misclassified.sort(key=lambda m: -m["confidence"])
    result.update({"misclassified": misclassified, "skipped": skipped, "unknown_labels": unknown, "data_dir": str(data_dir),
                   "photos": per_photo})
    return result
