"""The photos a check looks at, each stage's inputs in one place: paths, labels, splits, content hashes,
unit-length embeddings and fingerprints, row for row."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from imgclf.checks.fingerprints import Fingerprints
from imgclf.data import SPLITS


@dataclass
class CheckData:
    paths: list[str]
    labels: np.ndarray  # (n,) label names
    splits: np.ndarray  # (n,) train | val | test
    hashes: list[str]
    vectors: np.ndarray  # (n, dim), unit length
    prints: Fingerprints
    label_names: list[str]

    def __len__(self) -> int:
        return len(self.paths)

    def order_key(self, i: int) -> tuple[int, str]:
        """Which of two copies is "the original": the one in the earlier split, then the first by path."""
        return SPLITS.index(str(self.splits[i])), self.paths[i]

    @cached_property
    def unique(self) -> np.ndarray:
        """One row per distinct content (the original of each group of exact copies), in row order."""
        first: dict[str, int] = {}
        for i in sorted(range(len(self)), key=self.order_key):
            first.setdefault(self.hashes[i], i)
        return np.array(sorted(first.values()), dtype=np.int64)

    def nearest(self, i: int, label: str, k: int = 3) -> list[str]:
        """Paths of the ``k`` distinct photos of ``label`` most like photo ``i`` (by embedding), ``i`` itself left out."""
        rows = self.unique
        rows = rows[(self.labels[rows] == label) & (rows != i)]
        order = np.argsort(-(self.vectors[rows] @ self.vectors[i]), kind="stable")[:k]
        return [self.paths[j] for j in rows[order]]
