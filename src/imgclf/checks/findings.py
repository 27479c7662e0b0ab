"""What ``imgclf check`` reports: one :class:`Finding` per problem, one :class:`CheckResult` per folder.

Every finding names its photo (``path``; ``None`` for a finding about labels), its ``kind``
(one of :data:`KINDS`), a ``reason`` in words, a ``score`` (how sure or how bad, larger is
worse) and the ``action`` a person could take. Kind-specific fields:

- ``exact_duplicate`` / ``near_duplicate``: ``other`` (the copy it matches), ``similarity``,
  ``leakage`` (the two sit in different splits), ``conflict`` (they carry different labels);
- ``label_error``: ``label`` (given), ``suggested`` (what the photo looks like), ``examples`` (the
  photos of the suggested label most like it);
- ``missing_label`` / ``extra_label`` (several labels per photo): ``label``, the one the photo probably shows but lacks,
  or has but probably does not show;
- ``outlier``: ``label``, ``similarity`` (its score), ``examples`` (typical photos of its label);
- ``too_small``, ``blurry``, ``near_uniform``, ``unreadable``: ``label``;
- ``imbalance``: ``label`` (the smallest label); ``confused_labels``: ``labels`` (the pair).

imgclf never moves or deletes a photo: the findings and ``--fix-plan`` are for a person to act on.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass, field, fields

#: The kinds of findings, in the order they are listed.
KINDS = ("unreadable", "exact_duplicate", "near_duplicate", "label_error", "missing_label", "extra_label", "outlier",
         "too_small", "blurry", "near_uniform", "imbalance", "confused_labels")
#: The columns of ``--fix-plan``.
FIX_PLAN_COLUMNS = ["path", "kind", "label", "suggested", "other", "score", "action"]


@dataclass
class Finding:
    kind: str
    path: str | None
    reason: str
    score: float
    action: str
    label: str | None = None
    suggested: str | None = None
    other: str | None = None
    similarity: float | None = None
    leakage: bool | None = None
    conflict: bool | None = None
    labels: list[str] | None = None
    examples: list[str] | None = None

    def to_dict(self) -> dict:
        """The finding as JSON has it: the fields its kind uses (``None`` fields left out)."""
        return {f.name: (round(v, 4) if isinstance(v, float) else list(v) if isinstance(v, list) else v)
                for f in _FIELDS if (v := getattr(self, f.name)) is not None}


_FIELDS = fields(Finding)


def unreadable(path: str, reason: str, label: str | None = None) -> Finding:
    """The finding of a file that could not be read as a photo."""
    return Finding("unreadable", path, reason, 1.0, "open it: re-save it as JPEG or PNG, or remove it", label=label)


@dataclass
class CheckResult:
    """The findings about one data folder, worst first within each kind, and what was looked at."""

    root: str
    photos: int
    labels: list[str]
    findings: list[Finding] = field(default_factory=list)
    thresholds: dict = field(default_factory=dict)
    seconds: float = 0.0
    #: What more photos would add (:func:`imgclf.heads.curves.advise`, as a dict; empty with fewer than two labels).
    advice: dict = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Findings per kind, every kind listed."""
        c = Counter(f.kind for f in self.findings)
        return {kind: c[kind] for kind in KINDS}

    def of_kind(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]

    def to_dict(self) -> dict:
        return {"root": self.root, "photos": self.photos, "labels": self.labels, "counts": self.counts(),
                "thresholds": self.thresholds, "seconds": round(self.seconds, 3),
                "findings": [f.to_dict() for f in self.findings], "advice": self.advice}

    def summary(self, leave_out: tuple[str, ...] = ()) -> list[str]:
        """One line per kind found but those in ``leave_out``, e.g. ``3 near duplicates (1 across splits: leakage)``."""
        lines = []
        for kind, n in self.counts().items():
            if not n or kind in leave_out:
                continue
            text = f"{n} {kind.replace('_', ' ')}{'s' if n != 1 and not kind.endswith('s') else ''}"
            if kind in ("exact_duplicate", "near_duplicate"):
                found = self.of_kind(kind)
                leaks, conflicts = sum(bool(f.leakage) for f in found), sum(bool(f.conflict) for f in found)
                extra = [f"{leaks} across splits: leakage"] * bool(leaks) + [f"{conflicts} under different labels"] * bool(conflicts)
                text += f" ({'; '.join(extra)})" if extra else ""
            lines.append(text)
        return lines

    def fix_plan_csv(self) -> str:
        """The findings as an editable table (:data:`FIX_PLAN_COLUMNS`)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(FIX_PLAN_COLUMNS)
        for f in self.findings:
            label = f.label if f.labels is None else " / ".join(f.labels)
            writer.writerow([f.path or "", f.kind, label or "", f.suggested or "", f.other or "", f"{f.score:.4f}", f.action])
        return out.getvalue()
