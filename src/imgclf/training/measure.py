"""The estimate stage: how well the trained model does, as ``metrics.json`` records it."""

from __future__ import annotations

import time

import numpy as np

from imgclf.data.views import views_for
from imgclf.evaluation.metrics import summarize
from imgclf.heads.estimate import wilson, accuracy_estimate, cross_validated_accuracy, oof_accuracy, selective
from imgclf.runtime.hierarchy import DEFAULT_TARGET, Tree, per_level
from imgclf.runtime.label_sets import LabelSets, label_set
from imgclf.heads.linear import softmax
from imgclf.heads.rejection import Reference, Rejection
from imgclf.training.settings import Settings
from imgclf.training.stages import Calibration, FineTuned, Heads
from imgclf.training.table import Cleaning, PhotoTable


def measure(table: PhotoTable, heads: Heads, cal: Calibration, tuned: FineTuned | None, reference: Reference, rule: Rejection,
            sets: LabelSets | None, settings: Settings, cleaning: Cleaning, checks, emb, started: float) -> dict:
    """``metrics.json``: the estimate first, the splits' metrics, the data's story, the head, the rule."""
    tr, va, te = table.train, table.val, table.test
    probs = {"train": heads.selected.probabilities(table.vectors[tr]) if tuned is None else None,
             "val": heads.selected.probabilities(table.vectors[va]) if tuned is None else tuned.val_probs,
             "test": heads.final.probabilities(table.vectors[te]) if tuned is None else tuned.test_probs}
    verifier = len(table.labels) == 1  # one label and no negatives: it answers that label or "unknown"
    metrics = {
        "estimate": (_verifier_estimate(table.vectors[cal.held_out], reference, rule, table.labels[0]) if verifier else
                     _estimate(table, cal, probs["test"][cal.held_out[te]], heads.final.C, settings.seed)),
        "train": split_metrics(probs["train"], table.y[tr], table.paths[tr], table.labels, detail=False) if tuned is None else None,
        "val": split_metrics(probs["val"], table.y[va], table.paths[va], table.labels),
        "test": split_metrics(probs["test"], table.y[te], table.paths[te], table.labels),
        "counts": table.counts(),
        "skipped": [s.to_dict() for s in cleaning.skipped],
        "duplicates": [s.to_dict() for s in cleaning.duplicates],
        "leakage": [s.to_dict() for s in cleaning.leaks],
        "warnings": cleaning.warnings,
        "check": checks.to_dict(),
        "head": {"type": "softmax-linear", "C": heads.final.C, "class_weight": "balanced", "seed": settings.seed,
                 "augment_views": list(views_for(settings.augment)), "temperature": cal.temperature,
                 "calibrated_on": cal.method or None},
        "embedding": {"computed": emb.n_computed, "cached": len(emb.paths) - emb.n_computed, "unreadable": len(emb.errors),
                      "views_computed": heads.views_computed},
    }
    if cal.folds:  # with the validation split as calibration set, calibration is measured on the test split instead
        metrics["out_of_fold"] = out_of_fold_record(table, cal)
    checked = "test" if te.any() else "val"
    metrics["rejection"] = {**rule.to_dict(), **_apply_rule(metrics[checked], table.vectors[te if te.any() else va], reference,
                                                            rule, checked)}
    if sets is not None:
        metrics["label_sets"] = _label_sets(table, cal, sets, probs["test"])
    if settings.hierarchy:
        metrics["hierarchy"] = _hierarchy(table, cal, probs, checked)
    if tuned is not None:
        metrics["train"] = None  # the probe's training accuracy says nothing about the fine-tuned network
    metrics["train_seconds"] = round(time.perf_counter() - started, 3)
    metrics["verifier"] = verifier
    return withhold_paths(metrics) if settings.private else metrics


#: What a ``train --private`` model's metrics and report say instead of a photo's path.
WITHHELD = "(withheld: --private)"


def withhold_paths(metrics: dict) -> dict:
    """``metrics`` without the name of any photo (``train --private``): every per-photo record keeps its figures, the
    checks' findings their kind, label and reason."""
    def each(rows):
        return [{**row, "path": WITHHELD} for row in rows or []]

    for split in ("val", "test"):
        if metrics.get(split):
            for key in ("photos", "misclassified"):
                if key in metrics[split]:
                    metrics[split][key] = each(metrics[split][key])
    if metrics.get("out_of_fold"):
        metrics["out_of_fold"]["photos"] = each(metrics["out_of_fold"]["photos"])
    for key in ("skipped", "duplicates", "leakage"):
        metrics[key] = [{"path": WITHHELD, "reason": row["reason"].split(":")[0].split(" of ")[0]} for row in metrics[key]]
    check = metrics.get("check") or {}
    check["root"] = WITHHELD
    check["findings"] = [{k: v for k, v in f.items() if k not in ("path", "other", "examples")} for f in check.get("findings", [])]
    return metrics


def _hierarchy(table: PhotoTable, cal: Calibration, probs: dict, checked: str) -> dict:
    """Each level's accuracy and where answers stop: on every labelled photo's held-out answer when training made them,
    else on the ``checked`` split."""
    if cal.logits is not None:
        p, truth, where = softmax(cal.logits / cal.temperature), table.y[cal.scored], cal.method
    else:
        p, truth, where = probs[checked], table.y[table.split == checked], f"the {checked} split"
    return {"target": DEFAULT_TARGET, "measured_on": where,
            "levels": per_level(Tree(tuple(table.labels)), p, [table.labels[k] for k in truth], DEFAULT_TARGET)}


def _label_sets(table: PhotoTable, cal: Calibration, sets: LabelSets, test_probs: np.ndarray) -> dict:
    """The label sets at :data:`REPORTED_RATES`: their size on the photos they were calibrated
    on, and their coverage where photos were held out of the calibration (a test split apart)."""
    calibrated = softmax(cal.logits / cal.temperature)
    out = {"calibrated_on": sets.calibrated_on, "n": sets.n,
           "on_calibration_photos": measured_sets(sets, calibrated, table.y[cal.scored])}
    held = cal.held_out[table.test]
    if held.any():
        out["test"] = measured_sets(sets, test_probs[held], table.y[table.test][held])
    return out


def out_of_fold_record(table: PhotoTable, cal: Calibration) -> dict:
    """Every photo's answer from a head that never saw it, calibrated: the reliability diagram's data and the confused
    photos a page shows."""
    calibrated = softmax(cal.logits / cal.temperature)
    truth = table.y[cal.scored]
    return {"method": oof_accuracy(cal.logits, truth, cal.folds)["method"], "photos": [
        {"path": str(path), "label": table.labels[t], "predicted": table.labels[int(k)], "confidence": round(float(row[k]), 6)}
        for path, t, row, k in zip(table.paths[cal.scored], truth, calibrated, calibrated.argmax(1))]}


def split_metrics(probs: np.ndarray, y: np.ndarray, paths, labels: list[str], detail: bool = True) -> dict | None:
    """Accuracy, per-class figures and the confusion matrix of one split; with ``detail``, its photos and mistakes."""
    if len(y) == 0:
        return None
    pred = probs.argmax(1)
    out = summarize(y, pred, labels)
    if detail:
        out["misclassified"] = sorted(
            (
                {"path": str(paths[i]), "label": labels[y[i]], "predicted": labels[pred[i]], "confidence": round(float(probs[i, pred[i]]), 6)}
                for i in np.flatnonzero(pred != y)
            ),
            key=lambda m: -m["confidence"],
        )
        top = np.argsort(-probs, axis=1, kind="stable")[:, :3]
        out["photos"] = [  # per photo, for the report
            {"path": str(paths[i]), "label": labels[y[i]], "predicted": labels[pred[i]],
             "confidence": round(float(probs[i, pred[i]]), 6), "label_confidence": round(float(probs[i, y[i]]), 6),
             "top_k": [{"label": labels[j], "confidence": round(float(probs[i, j]), 6)} for j in top[i]]}
            for i in range(len(y))
        ]
    else:
        del out["confusion_matrix"], out["per_class"]
    return out


def _verifier_estimate(x_test: np.ndarray, reference: Reference, rule: Rejection, label: str) -> dict:
    """A one-label model's accuracy is the share of new photos of its label it accepts: on the test split the user
    gave, else the out-of-fold acceptance the rule was calibrated on (every train and validation photo)."""
    if len(x_test):
        accepted = int((reference.similarity(x_test) >= rule.threshold).sum())
        return accuracy_estimate(accepted, len(x_test), f"photos of {label} accepted in the test split ({len(x_test)} photos)")
    lo, hi = rule.acceptance_interval
    return {"accuracy": rule.expected_acceptance, "low": lo, "high": hi, "n": rule.n,
            "method": f"conformal share of new photos of {label} accepted, from {rule.n} held-out scores"}


def _estimate(table: PhotoTable, cal: Calibration, test_probs: np.ndarray, C: float, seed: int) -> dict:
    """Accuracy on new photos: on the test split the user gave, or (many photos) on the one set aside, else by
    cross-validation over every labelled photo (a fine-tuned model: a linear head on its embeddings)."""
    if cal.held_out.any():
        n = int(cal.held_out.sum())
        whose = "you gave" if table.dataset.given_splits else "set aside"
        return accuracy_estimate(int((test_probs.argmax(1) == table.y[cal.held_out]).sum()), n, f"the test split {whose} ({n} photos)")
    if cal.logits is not None:
        return oof_accuracy(cal.logits, table.y, cal.folds)
    est = cross_validated_accuracy(table.vectors, table.y, len(table.labels), C, seed)
    est["method"] += ", a linear head on the fine-tuned network's embeddings"
    return est


def _apply_rule(split: dict | None, x: np.ndarray, reference: Reference, rule: Rejection, name: str) -> dict:
    """Accepted and rejected photos of ``split``; its metrics gain coverage and selective accuracy (:func:`selective`)."""
    if not len(x) or not split:
        return {}
    rejected = reference.similarity(x) < rule.threshold
    photos = split["photos"]
    split.update(selective([p["label"] for p in photos], [p["predicted"] for p in photos], list(rejected)))
    return {"split": name, "accepted": int((~rejected).sum()), "rejected": int(rejected.sum())}


#: The error rates ``train`` measures its label sets at (``metrics.json``, the card, the export's sidecar).
REPORTED_RATES = (0.05, 0.1)


def measured_sets(sets: LabelSets, probabilities: np.ndarray, truth: np.ndarray, rates=REPORTED_RATES) -> dict:
    """``{rate: {"threshold", "coverage", "low", "high", "mean_size", "n"}}``: how often the sets of photos with known
    ``truth`` hold it (95 % Wilson interval) and how many labels they hold on average."""
    out = {}
    for rate in rates:
        t = sets.threshold(rate)
        chosen = [label_set(p, t) for p in probabilities]
        hits = float(np.mean([y in s for y, s in zip(truth, chosen)])) if len(truth) else 0.0
        lo, hi = wilson(hits, len(truth))
        out[str(rate)] = {"threshold": round(t, 6), "coverage": round(hits, 6), "low": round(lo, 6), "high": round(hi, 6),
                          "mean_size": round(float(np.mean([len(s) for s in chosen])) if chosen else 0.0, 4), "n": int(len(truth))}
    return out
