"""The one table of photos a training run works on, row for row: path, label, split, content hash, embedding."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgclf.data import SPLITS, Dataset
from imgclf.runtime.inputs import Skipped


@dataclass
class PhotoTable:
    """The usable photos of a data folder after copies are resolved; every array has one row per photo.

    ``y`` indexes ``labels``; ``split`` is ``train``, ``val`` or ``test``; ``vectors`` the embeddings (a fine-tuned
    network replaces them with its own).
    """

    dataset: Dataset
    paths: np.ndarray
    y: np.ndarray
    split: np.ndarray
    hashes: np.ndarray
    vectors: np.ndarray

    @property
    def labels(self) -> list[str]:
        return self.dataset.labels

    @property
    def train(self) -> np.ndarray:
        return self.split == "train"

    @property
    def val(self) -> np.ndarray:
        return self.split == "val"

    @property
    def test(self) -> np.ndarray:
        return self.split == "test"

    def counts(self) -> dict[str, dict[str, int]]:
        """``{label: {split: n}}``."""
        c = Counter((self.labels[i], s) for i, s in zip(self.y, self.split))
        return {lab: {s: c[(lab, s)] for s in SPLITS} for lab in self.labels}

    @classmethod
    def of(cls, dataset: Dataset, photos: list, hashes: list[str], vectors: np.ndarray) -> "PhotoTable":
        index = {lab: i for i, lab in enumerate(dataset.labels)}
        return cls(dataset, np.array([p.path for p in photos], dtype=object), np.array([index[p.label] for p in photos], dtype=np.int64),
                   np.array([p.split for p in photos]), np.array(hashes, dtype=object), vectors)


@dataclass
class Cleaning:
    """What became of the photos that are not in the table, and what the user should know about the rest."""

    skipped: list[Skipped] = field(default_factory=list)
    duplicates: list[Skipped] = field(default_factory=list)
    leaks: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def relative(path, root) -> str:
    """``path`` relative to the data folder, POSIX-style (as ``neighbors.json`` keeps it)."""
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).as_posix()
