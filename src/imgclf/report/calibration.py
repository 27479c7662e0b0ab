"""Does the confidence mean anything? Reliability bins, expected calibration error, thresholds.

Plain NumPy, no plotting: the model card and the HTML report both use it.
"""

from __future__ import annotations

import numpy as np

#: Confidence thresholds shown in the "reject below" table.
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
#: Mean confidence within this of the accuracy counts as matching it.
MATCH_TOLERANCE = 0.02


def reliability(confidence, correct, n_bins: int = 10) -> dict:
    """Equal-width confidence bins with their accuracy, and the expected calibration error.

    ``confidence`` is the top-1 probability of each photo, ``correct`` whether the top-1
    label was right. ECE = Σ_b (n_b / n) · |accuracy_b − mean confidence_b|.
    Returns ``{"n", "ece", "accuracy", "mean_confidence", "bins": [{"lo", "hi", "n", "accuracy", "confidence"}]}``;
    ``accuracy`` and ``confidence`` of an empty bin are ``None``.
    """
    conf = np.asarray(confidence, dtype=float).ravel()
    ok = np.asarray(correct, dtype=bool).ravel()
    if conf.shape != ok.shape:
        raise ValueError("confidence and correct must have the same length")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Bin b holds (lo, hi]; a confidence of exactly 0 goes to the first bin.
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    bins, ece = [], 0.0
    n = len(conf)
    for b in range(n_bins):
        sel = idx == b
        k = int(sel.sum())
        acc = float(ok[sel].mean()) if k else None
        mc = float(conf[sel].mean()) if k else None
        if k:
            ece += k / n * abs(acc - mc)
        bins.append({"lo": round(float(edges[b]), 6), "hi": round(float(edges[b + 1]), 6), "n": k,
                     "accuracy": None if acc is None else round(acc, 6),
                     "confidence": None if mc is None else round(mc, 6)})
    return {
        "n": n,
        "ece": round(ece, 6) if n else None,
        "accuracy": round(float(ok.mean()), 6) if n else None,
        "mean_confidence": round(float(conf.mean()), 6) if n else None,
        "bins": bins,
    }


def bias(calibration: dict) -> str:
    """``"matched"``, ``"over"`` or ``"under"``: the mean confidence against the accuracy of :func:`reliability`."""
    gap = calibration["mean_confidence"] - calibration["accuracy"]
    if abs(gap) < MATCH_TOLERANCE:
        return "matched"
    return "over" if gap > 0 else "under"


def thresholds(confidence, correct, levels=THRESHOLDS) -> list[dict]:
    """For each threshold t: how many predictions have confidence ≥ t, and how accurate those are."""
    conf = np.asarray(confidence, dtype=float).ravel()
    ok = np.asarray(correct, dtype=bool).ravel()
    out = []
    for t in levels:
        keep = conf >= t
        k = int(keep.sum())
        out.append({"threshold": t, "accepted": k, "rejected": int(len(conf) - k),
                    "accuracy": round(float(ok[keep].mean()), 6) if k else None})
    return out


def from_photos(photos: list[dict], n_bins: int = 10) -> dict | None:
    """:func:`reliability` of per-photo records (``label``, ``predicted``, ``confidence``); None without photos."""
    if not photos:
        return None
    conf = [p["confidence"] for p in photos]
    ok = [p["label"] == p["predicted"] for p in photos]
    out = reliability(conf, ok, n_bins)
    out["thresholds"] = thresholds(conf, ok)
    return out
