"""The JSON beside every export: what an app needs to feed it and read it, and imgclf's mark on it."""

from __future__ import annotations

from pathlib import Path

from imgclf.runtime.artifact import generator


def sidecar_path(output: Path, fmt: str) -> Path:
    """``FILE.json`` beside a file; inside a SavedModel, its ``assets/imgclf.json``."""
    return output / "assets" / "imgclf.json" if fmt == "saved_model" else output.with_suffix(output.suffix + ".json")


def sidecar(model, fmt: str, int8: bool, parity) -> dict:
    from imgclf.exports.graph import OUTPUTS

    pre = model.preprocessing
    channels_last = fmt != "onnx"
    size = pre.input_size
    return {
        "generator": generator("export"),  # first: how imgclf knows the export beside it is its own
        "format": fmt + (" int8" if int8 else ""),
        "labels": model.labels,
        "input": {"name": "input", "shape": [1, size, size, 3] if channels_last else ["N", 3, size, size],
                  "layout": "NHWC" if channels_last else "NCHW", "dtype": "float32"},
        "preprocessing": {**pre.to_dict(), "resize_to": pre.resize_to,
                          **({"views": "the graph sees the photo whole and as a 3 x 3 grid of half-size crops itself"}
                             if model.views > 1 else {}),
                          "steps": f"RGB, turned upright as its EXIF orientation says; resize the shorter side to {pre.resize_to} px "
                                   f"({pre.interpolation}, the longer side rounded down); crop the centre {size} x {size} (its "
                                   "offsets rounded to the nearest pixel); scale to 0-1; subtract mean and divide by std per channel"},
        "outputs": {"probabilities": (f"one independent probability per label, in the order of labels ({len(model.labels)}); a "
                                      "label is answered when its probability reaches its entry of label_thresholds"
                                      if model.multi_label else f"one per label, in the order of labels ({len(model.labels)})"),
                    "similarity": "how like the training photos it is; below threshold the answer is unknown",
                    "embedding": ("the element-wise largest of the ten views' embeddings" if model.views > 1
                                  else "the backbone's embedding")},
        "output_order": list(OUTPUTS),
        "threshold": model.threshold,
        **({"label_sets": _label_sets(model)} if model.label_sets is not None else {}),
        **({"label_thresholds": dict(zip(model.labels, model.meta["multi_label"]["thresholds"]))} if model.multi_label else {}),
        "parity": parity.to_dict(),
        "model_sha256": model.meta.get("onnx", {}).get("sha256"),
    }


#: The error rates an export's sidecar gives label-set thresholds for.
SIDECAR_RATES = (0.01, 0.02, 0.05, 0.1, 0.2)


def _label_sets(model) -> dict:
    """The label sets an app can make from ``probabilities`` alone: for each error rate A, the probability a label
    needs to be in the set (the best guess is always in it); the set then holds the right label for at least 1 - A of
    new photos of these labels."""
    return {"rule": "the labels whose probability is at least thresholds[A], and the best guess always; right for at "
                    "least 1 - A of new photos of these labels",
            "thresholds": {str(a): round(model.label_sets.threshold(a), 6) for a in SIDECAR_RATES},
            "method": model.label_sets.method, "calibrated_on": model.label_sets.calibrated_on, "n": model.label_sets.n}
