"""Score a trained model on a labelled folder (``<label>/<images>``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from imgclf.data import scan_labelled
from imgclf.errors import ImgclfError
from imgclf.heads.estimate import selective
from imgclf.runtime.faces import NO_FACE_REASON
from imgclf.evaluation.metrics import summarize
from imgclf.runtime.model import Model
from imgclf.heads.rejection import UNKNOWN, auroc


def evaluate(
    model: Model | str | os.PathLike, data_dir: str | os.PathLike, top_k: int = 3, ood_dir: str | os.PathLike | None = None,
    tta: bool = False, error_rate: float | None = None, labels_file: str | os.PathLike | None = None,
) -> dict:
    """Metrics of ``model`` on every photo under ``data_dir`` (a model of several labels per photo: its labels from the
    manifest ``labels_file`` or from label folders, measured by :func:`~imgclf.evaluation.multilabel.evaluate_multilabel`).

    Accuracy and the confusion matrix score the best guess (closed set). When the model rejects "unknown", ``coverage``,
    ``selective_accuracy`` and ``accuracy_with_unknown`` score its answers with the rule applied, ``rejection`` counts the
    accepted and rejected photos; with ``ood_dir`` (photos of none of the labels, any layout) it also gives the share of
    those rejected and the AUROC of the similarity score.

    Labels the model does not know are reported in ``unknown_labels`` and skipped; unreadable files are listed in
    ``skipped`` with their reasons. ``photos`` has one record per scored photo (``path``, ``label``, ``predicted``,
    ``confidence``, ``label_confidence``, ``top_k``), which :func:`imgclf.report.write_report` draws from. ``tta``
    averages each photo's scores with its mirror image's (:meth:`imgclf.runtime.model.Model.scores`). With
    ``error_rate``, every photo also gets its label set (``set`` in ``photos``), and ``label_sets`` says how often the
    sets held the true label (``coverage``, with its 95 % interval, against the promised 1 − ``error_rate``) and how
    many labels they held.
    """
    if not isinstance(model, Model):
        model = Model.load(model)
    if model.multi_label or labels_file is not None:
        return _several_labels(model, data_dir, labels_file, ood=ood_dir, tta=tta, error_rate=error_rate)
    data_dir = Path(data_dir)
    dataset = scan_labelled(data_dir, val_fraction=0.0, test_fraction=0.0, min_labels=1)
    if model.tree is not None:  # nested label folders, as the model was trained on
        from imgclf.data.hierarchy import nest

        dataset = nest(dataset, 0.0, 0.0, None)
    known = {lab: i for i, lab in enumerate(model.labels)}
    unknown = sorted(set(dataset.labels) - set(known))
    photos = [p for p in dataset.photos if p.label in known]
    if not photos:
        raise ImgclfError(f"no photos of the model's labels ({', '.join(model.labels)}) in {data_dir}")
    truth = {str(p.path): p.label for p in photos}
    y_true, y_pred, misclassified, skipped, per_photo, in_scores, every_label = [], [], [], [], [], [], []
    # Every label's probability, so each photo also records the probability of its true label.
    for pred in model.iter_predict([p.path for p in photos], top_k=max(top_k, len(model.labels)), tta=tta, error_rate=error_rate):
        label = truth[pred.path]
        if pred.error or not pred.top_k:  # unreadable, or a face model found no face
            skipped.append({"path": pred.path, "reason": pred.error or NO_FACE_REASON})
            continue
        guess = pred.top_k[0]["label"]
        y_true.append(known[label])
        y_pred.append(known[guess])
        in_scores.append(pred)
        top = pred.top_k[:top_k]
        label_confidence = next(t["confidence"] for t in pred.top_k if t["label"] == label)
        per_photo.append({"path": pred.path, "label": label, "predicted": guess, "confidence": pred.confidence,
                          "label_confidence": label_confidence, "top_k": top, "rejected": pred.label == UNKNOWN != guess,
                          **({"set": pred.label_set} if pred.label_set is not None else {})})
        if model.tree is not None:  # every leaf's probability, for the levels above them
            every_label.append({t["label"]: t["confidence"] for t in pred.top_k})
        if guess != label:
            misclassified.append({"path": pred.path, "label": label, "predicted": guess, "confidence": pred.confidence, "top_k": top})
    if not y_true:
        raise ImgclfError(f"none of the {len(photos)} files in {data_dir} could be read")
    result = summarize(y_true, y_pred, model.labels)
    misclassified.sort(key=lambda m: -m["confidence"])
    result.update({"misclassified": misclassified, "skipped": skipped, "unknown_labels": unknown, "data_dir": str(data_dir),
                   "photos": per_photo})
    if tta:
        result["tta"] = "flip"
    if error_rate is not None:
        result["label_sets"] = _label_sets(per_photo, error_rate)
    if model.tree is not None:
        from imgclf.runtime.hierarchy import per_level

        probs = np.array([[row[lab] for lab in model.labels] for row in every_label])
        result["hierarchy"] = {"target": model.level_target, "measured_on": str(data_dir),
                               "levels": per_level(model.tree, probs, [p["label"] for p in per_photo], model.level_target)}
    if model.threshold is not None:
        result.update(selective([p['label'] for p in per_photo], [p['predicted'] for p in per_photo], [p['rejected'] for p in per_photo]))
        negatives = None
        if ood_dir is not None:
            negatives = (str(ood_dir), [p for p in model.iter_predict([ood_dir]) if p.top_k])
        elif unknown and _is_verifier(model):  # a verifier's photos of other labels should come back "unknown"
            others = [p.path for p in dataset.photos if p.label in unknown]
            negatives = (f"the other labels of {data_dir} ({', '.join(unknown)})", [p for p in model.iter_predict(others) if p.top_k])
        result["rejection"] = _rejection(model, in_scores, negatives)
    elif ood_dir is not None:
        raise ImgclfError("this model has no 'unknown' rule (trained before imgclf 0.1); retrain it to use --ood")
    return result


def _several_labels(model: Model, data_dir, labels_file, **one_label_options) -> dict:
    """:func:`evaluate` of a model of several labels per photo; options that measure one label per photo refused."""
    from imgclf.evaluation.multilabel import evaluate_multilabel

    if not model.multi_label:
        raise ImgclfError(f"--labels measures a model of several labels per photo; {model.dir} answers one label per photo")
    refused = [f"--{name.replace('_', '-')}" for name, on in one_label_options.items() if on]
    if refused:
        raise ImgclfError(f"{refused[0]} is for models of one label per photo")
    return evaluate_multilabel(model, data_dir, labels_file)


def _label_sets(photos: list[dict], error_rate: float) -> dict:
    """How the label sets did on labelled photos: coverage (the share holding the true label) with its 95 % interval,
    the mean number of labels, and how often a set was one label and that label right."""
    from imgclf.heads.estimate import wilson

    n = len(photos)
    held = sum(p["label"] in p["set"] for p in photos)
    single = [p for p in photos if len(p["set"]) == 1]
    lo, hi = wilson(held / n, n)
    return {"error_rate": error_rate, "promised_coverage": round(1 - error_rate, 6), "coverage": round(held / n, 6),
            "low": round(lo, 6), "high": round(hi, 6), "mean_size": round(sum(len(p["set"]) for p in photos) / n, 4), "n": n,
            "single_label": round(len(single) / n, 6),
            "single_label_right": round(sum(p["set"][0] == p["label"] for p in single) / len(single), 6) if single else None}


def _is_verifier(model: Model) -> bool:
    return len([lab for lab in model.labels if lab != UNKNOWN]) == 1


def _rejection(model: Model, in_preds: list, negatives: tuple[str, list] | None) -> dict:
    """Accepted and rejected photos of the known labels; with ``negatives`` (where, predictions), how many of those are rejected."""
    rejected = sum(1 for p in in_preds if p.label == UNKNOWN and p.top_k[0]["label"] != UNKNOWN)
    out = {"threshold": model.threshold, "accepted": len(in_preds) - rejected, "rejected": rejected,
           "acceptance_rate": round((len(in_preds) - rejected) / len(in_preds), 6)}
    if negatives is None:
        return out
    where, ood = negatives
    if not ood:
        raise ImgclfError(f"no readable photos{' with a face' if model.preprocessing.crop else ''} in {where}")
    ood_rejected = sum(1 for p in ood if p.label == UNKNOWN)
    out.update({
        "ood_dir": where, "ood_n": len(ood), "ood_rejected": ood_rejected,
        "ood_rejection_rate": round(ood_rejected / len(ood), 6),
        "auroc": round(auroc([p.similarity for p in in_preds], [p.similarity for p in ood]), 6),
        "ood_accepted": [{"path": p.path, "label": p.label, "similarity": p.similarity} for p in ood if p.label != UNKNOWN],
    })
    return out
