"""Exact duplicates (same content hash) among the photos of a dataset."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from imgclf.data import SPLITS, Photo
from imgclf.runtime.inputs import Skipped



@dataclass
class DuplicateReport:
    """Which photos to keep, and what was dropped and why."""

    keep: list[int]
    conflicts: list[Skipped] = field(default_factory=list)
    duplicates: list[Skipped] = field(default_factory=list)
    leaks: list[Skipped] = field(default_factory=list)

    def warnings(self) -> list[str]:
        out = []
        if self.conflicts:
            out.append(f"{len(self.conflicts)} file(s) are the same photo under different labels; all copies were left out")
        if self.leaks:
            out.append(f"{len(self.leaks)} photo(s) of the val/test split also appear in train (leakage); they were kept out of val/test")
        if self.duplicates:
            out.append(f"{len(self.duplicates)} duplicate photo(s) within a label were counted once")
        return out


def find_duplicates(photos: list[Photo], hashes: list[str]) -> DuplicateReport:
    """Group ``photos`` by content hash.

    The same photo under two labels is a conflict (every copy dropped); a photo in
    train and in val/test keeps only its train copy (leakage); other copies within a
    label are counted once, the copy in the earliest split kept.
    """
    groups: dict[str, list[int]] = defaultdict(list)
    for i, h in enumerate(hashes):
        groups[h].append(i)
    report = DuplicateReport(keep=[])
    for idx in groups.values():
        if len(idx) == 1:
            report.keep.append(idx[0])
            continue
        labels = sorted({photos[i].label for i in idx})
        if len(labels) > 1:
            for i in idx:
                report.conflicts.append(Skipped(str(photos[i].path), f"conflict: the same photo is under labels {', '.join(labels)}"))
            continue
        idx = sorted(idx, key=lambda i: (SPLITS.index(photos[i].split), str(photos[i].path)))
        kept = photos[idx[0]]
        report.keep.append(idx[0])
        for i in idx[1:]:
            entry = Skipped(str(photos[i].path), f"duplicate of {kept.path}")
            leak = kept.split == "train" and photos[i].split != "train"
            (report.leaks if leak else report.duplicates).append(entry)
    report.keep.sort()
    return report
