"""What a model says about one photo, and its one serialised shape.

Every consumer writes predictions through :meth:`Prediction.to_row`: ``predict -f json``,
``predict -o x.jsonl`` / ``.parquet`` / ``.csv``, the engines and the HTTP API, so each gives
the same keys:

``path``
    the photo as it was asked for;
``status``
    ``ok`` (an answer), ``unknown`` (unlike every label: ``similarity`` below the model's
    threshold), ``none`` (a model of several labels per photo found none of them), ``no_face`` (a face model
    found no face) or ``error`` (the file could not be used);
``label``
    the answer: a label (of several, the most probable), ``"unknown"``, ``"none"``, ``"no face"``, or null on an
    error;
``confidence``, ``top_k``
    the best guess's probability and the best ``k`` guesses (``[{label, confidence}]``), also
    for ``unknown``; null and ``[]`` for ``no_face`` and ``error``;
``similarity``
    the "unknown" rule's score (higher = more like the training photos; null for a model without the rule);
``error``
    why the file could not be used (null otherwise);
``neighbors`` (only when asked for: ``predict --neighbors K``)
    ``[{"path", "label", "similarity"}, …]``: the K training photos most like this one (cosine of
    their embeddings), paths relative to the training data folder;
``set`` (only when asked for: ``predict --error-rate A``)
    the labels that hold the true one with probability at least 1 − A on new photos of the known labels,
    most probable first (see :mod:`imgclf.runtime.label_sets`); empty only on ``no_face`` and ``error`` rows;
``levels`` (models trained with ``--hierarchy``)
    ``[{"label", "confidence"}, …]``: the most probable node at each level of the label tree, top first (a node's
    probability is the sum of its leaves'); ``label`` is the deepest one whose confidence reaches the model's
    target, and ``confidence`` its confidence;
``labels`` (models of several labels per photo: ``train --labels`` / ``--multi-label``)
    ``[{"label", "confidence"}, …]``: every label whose probability reaches its threshold, most probable first
    (each probability independent of the others'); empty for ``none``, ``no_face`` and ``error``;
``explanation`` (only when asked for: ``predict --explain DIR``)
    ``{"heatmap": PNG path, "peak": [x, y], "label", "box": [left, top, right, bottom]}``: where
    the model looked for ``label``, ``peak`` where its map peaks, in the photo's pixels.

In CSV, ``top_k`` becomes ``top1_label, top1_confidence, …`` (:func:`csv_header`, :func:`csv_row`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

OK, UNKNOWN_STATUS, NONE_STATUS, NO_FACE_STATUS, ERROR = "ok", "unknown", "none", "no_face", "error"
#: The label of a photo unlike every label (and of the class trained from ``unknown/`` folders).
UNKNOWN = "unknown"
#: The answer of a model of several labels per photo when no label reaches its threshold.
NONE = "none"
STATUSES = (OK, UNKNOWN_STATUS, NONE_STATUS, NO_FACE_STATUS, ERROR)
#: The keys of :meth:`Prediction.to_row`, in order.
FIELDS = ("path", "status", "label", "confidence", "similarity", "top_k", "error")


@dataclass
class Prediction:
    """One photo's answer; see the module docstring for what each field means."""

    path: str
    status: str
    label: str | None
    confidence: float | None = None
    top_k: list[dict] = field(default_factory=list)
    similarity: float | None = None
    error: str | None = None
    explanation: dict | None = None
    neighbors: list[dict] | None = None
    label_set: list[str] | None = None
    levels: list[dict] | None = None
    labels: list[dict] | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is none of {', '.join(STATUSES)}")

    def to_row(self) -> dict:
        """The serialised prediction: every key of :data:`FIELDS`, always, and ``explanation`` when there is one."""
        row = {"path": self.path, "status": self.status, "label": self.label, "confidence": self.confidence,
               "similarity": self.similarity, "top_k": list(self.top_k), "error": self.error}
        if self.explanation is not None:
            row["explanation"] = self.explanation
        if self.neighbors is not None:
            row["neighbors"] = self.neighbors
        if self.label_set is not None:
            row["set"] = self.label_set
        if self.levels is not None:
            row["levels"] = self.levels
        if self.labels is not None:
            row["labels"] = self.labels
        return row

    @classmethod
    def from_row(cls, row: dict) -> "Prediction":
        """The inverse of :meth:`to_row` (extra keys are ignored)."""
        return cls(row["path"], row["status"], row["label"], row.get("confidence"), list(row.get("top_k") or []),
                   row.get("similarity"), row.get("error"), row.get("explanation"), row.get("neighbors"), row.get("set"), row.get("levels"),
                   row.get("labels"))


#: CSV columns of an explanation (``predict --explain``), after the top-k columns.
EXPLANATION_COLUMNS = ["explanation_label", "explanation_heatmap", "explanation_peak_x", "explanation_peak_y"]


#: CSV columns of a model of several labels per photo: the answered labels and their probabilities, each ``;``-joined.
LABELS_COLUMNS = ["labels", "labels_confidence"]


def csv_header(top_k: int, explained: bool = False, neighbors: int = 0, label_set: bool = False,
               multi_label: bool = False) -> list[str]:
    header = [f for f in FIELDS if f != "top_k"]
    for i in range(1, top_k + 1):
        header += [f"top{i}_label", f"top{i}_confidence"]
    header += EXPLANATION_COLUMNS if explained else []
    for i in range(1, neighbors + 1):
        header += [f"neighbor{i}_path", f"neighbor{i}_label", f"neighbor{i}_similarity"]
    return header + (["set"] if label_set else []) + (LABELS_COLUMNS if multi_label else [])


def csv_row(row: dict, top_k: int | None = None, explained: bool = False, neighbors: int = 0, label_set: bool = False,
            multi_label: bool = False) -> list[str]:
    """One :meth:`Prediction.to_row` as CSV cells: numbers with 6 decimals, nulls empty; a label set's labels, and a
    multi-label model's answered labels and their probabilities, joined by ``;``."""
    def cell(v) -> str:
        if v is None:
            return ""
        return f"{v:.6f}" if isinstance(v, float) else str(v)

    cells = [cell(row[f]) for f in FIELDS if f != "top_k"]
    for t in row["top_k"] or []:
        cells += [t["label"], cell(t["confidence"])]
    if top_k is not None:  # pad, so that explanation columns stay in place
        cells += [""] * (len(FIELDS) - 1 + 2 * top_k - len(cells))
    if explained:
        e = row.get("explanation") or {}
        peak = e.get("peak") or ["", ""]
        cells += [e.get("label", ""), e.get("heatmap", ""), str(peak[0]), str(peak[1])]
    for n in (row.get("neighbors") or [])[:neighbors]:
        cells += [n["path"], n["label"], cell(n["similarity"])]
    if label_set:
        cells += [""] * (len(csv_header(top_k or 0, explained, neighbors)) - len(cells)) if top_k is not None else []
        cells.append(";".join(row.get("set") or []))
    if multi_label:
        if top_k is not None:
            cells += [""] * (len(csv_header(top_k, explained, neighbors, label_set)) - len(cells))
        answered = row.get("labels") or []
        cells += [";".join(a["label"] for a in answered), ";".join(cell(a["confidence"]) for a in answered)]
    return cells
