"""The one results dict a report is drawn from, built from a training run or an evaluation.

Keys (all JSON-ready):

- ``kind``: ``"training"`` or ``"evaluation"``; ``split``: which split was measured (training only);
- ``labels``, ``n``, ``accuracy``, ``macro_f1``, ``per_class``, ``confusion_matrix``: as in :func:`imgclf.evaluation.metrics.summarize`;
- ``photos``: one record per measured photo: ``path``, ``label`` (true), ``predicted``, ``confidence``,
  ``top_k`` (``[{"label", "confidence"}]``) and, when known, ``label_confidence`` (probability of the true label);
- ``info``: ``backbone``, ``training_seconds``, ``date``, ``model_created``, ``data``, ``imgclf_version``, ``command``;
- ``counts`` (training only): photos per label and split;
- ``skipped``, ``duplicates``, ``leakage`` (``[{"path", "reason"}]``), ``warnings`` (strings), ``unknown_labels``;
- ``rejection`` (optional): ``{"threshold", "accepted", "rejected"}`` when the model rejects photos as ``unknown``.
"""

from __future__ import annotations

from datetime import datetime, timezone

_METRIC_KEYS = ("labels", "n", "accuracy", "accuracy_interval", "macro_f1", "per_class", "confusion_matrix")
#: The "unknown" rule applied (see :func:`imgclf.heads.estimate.selective`).
SELECTIVE_KEYS = ("coverage", "selective_accuracy", "accuracy_with_unknown")


def reported_split(metrics: dict) -> str | None:
    """The split a training report describes: ``test``, or ``val`` when there is no test split."""
    for split in ("test", "val"):
        if (metrics.get(split) or {}).get("n"):
            return split
    return None


def from_training(meta: dict, metrics: dict) -> dict:
    """Results of a training run (``imgclf.json`` + ``metrics.json`` contents)."""
    split = reported_split(metrics)
    m = metrics.get(split) or {}
    labels = meta["labels"]
    out = {
        "kind": "training",
        "split": split,
        "labels": labels,
        "n": m.get("n", 0),
        "accuracy": m.get("accuracy"),
        "accuracy_interval": m.get("accuracy_interval"),
        "estimate": metrics.get("estimate"),
        **{k: m.get(k) for k in SELECTIVE_KEYS},
        "macro_f1": m.get("macro_f1"),
        "per_class": m.get("per_class") or {},
        "confusion_matrix": m.get("confusion_matrix") or [[0] * len(labels) for _ in labels],
        "photos": m.get("photos") or [],
        # calibration is measured on every photo's out-of-fold answer when training made them (far more photos)
        "calibration_photos": (metrics.get("out_of_fold") or {}).get("photos") or m.get("photos") or [],
        "calibration_method": (metrics.get("out_of_fold") or {}).get("method"),
        "info": {
            "backbone": meta["backbone"]["name"],
            "training_seconds": metrics.get("train_seconds"),
            "date": meta.get("created"),
            "model_created": meta.get("created"),
            "data": (meta.get("data") or {}).get("root"),
            "imgclf_version": meta.get("imgclf_version"),
            "command": meta.get("command"),
        },
        "counts": metrics.get("counts"),
        "val_accuracy": (metrics.get("val") or {}).get("accuracy"),
        "val_n": (metrics.get("val") or {}).get("n", 0),
        "skipped": metrics.get("skipped") or [],
        "duplicates": metrics.get("duplicates") or [],
        "leakage": metrics.get("leakage") or [],
        "warnings": metrics.get("warnings") or [],
        "unknown_labels": [],
        "check": metrics.get("check"),
        "hierarchy": metrics.get("hierarchy"),
    }
    if m.get("rejection") or metrics.get("rejection"):
        out["rejection"] = m.get("rejection") or metrics.get("rejection")
    return out


def from_evaluation(result: dict, model=None) -> dict:
    """Results of :func:`imgclf.evaluation.evaluate`; ``model`` (a loaded :class:`~imgclf.runtime.model.Model`) adds its details."""
    meta = getattr(model, "meta", None) or {}
    train_metrics = model.metrics if model is not None else {}
    out = {k: result.get(k) for k in (*_METRIC_KEYS, *SELECTIVE_KEYS)}
    out.update({
        "kind": "evaluation",
        "split": None,
        "photos": result.get("photos") or [],
        "info": {
            "backbone": (meta.get("backbone") or {}).get("name"),
            "training_seconds": train_metrics.get("train_seconds"),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "model_created": meta.get("created"),
            "model_dir": str(model.dir) if model is not None else None,
            "data": result.get("data_dir"),
            "imgclf_version": meta.get("imgclf_version"),
            "command": result.get("command"),
        },
        "counts": None,
        "skipped": result.get("skipped") or [],
        "duplicates": [],
        "leakage": [],
        "warnings": list(result.get("warnings") or []),
        "unknown_labels": result.get("unknown_labels") or [],
        "hierarchy": result.get("hierarchy"),
        "label_sets": result.get("label_sets"),
    })
    if result.get("rejection"):
        out["rejection"] = result["rejection"]
    return out
