"""Splits made within each label: in proportion, and remembered so that no photo ever moves between them."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import replace
from pathlib import Path

SPLITS = ("train", "val", "test")


def hash_position(relative_path: str) -> float:
    """A photo's place in [0, 1), from a hash of its path relative to its label folder (the order splits are filled in)."""
    digest = hashlib.sha1(relative_path.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """(validation, test) photos a label of ``n`` photos holds: each fraction of ``n`` rounded half up, at least
    one photo left for training."""
    test = int(n * test_fraction + 0.5)
    val = int(n * val_fraction + 0.5)
    while n and test + val >= n:
        if val >= test and val:
            val -= 1
        else:
            test -= 1
    return val, test


def assign_splits(relative_paths: list[str], val_fraction: float, test_fraction: float,
                  remembered: dict[str, str] | None = None) -> list[str]:
    """The split of each photo of one label, in proportion within the label.

    A photo keeps the split it was given before (``remembered``); new photos fill what the label's
    validation and test splits lack, in their hash order, and the rest train. So adding photos never
    moves one between splits, and a label's held-out photos stay in proportion. (No rule that looks
    at a photo alone can do both: such a rule is the old per-path hash, which left small labels
    with no test photo at all.)
    """
    remembered = remembered or {}
    want_val, want_test = split_sizes(len(relative_paths), val_fraction, test_fraction)
    have = Counter(remembered[r] for r in relative_paths if r in remembered)
    out = {r: remembered[r] for r in relative_paths if remembered.get(r) in SPLITS}
    for rel in sorted((r for r in relative_paths if r not in out), key=hash_position):
        split = "test" if have["test"] < want_test else "val" if have["val"] < want_val else "train"
        have[split] += 1
        out[rel] = split
    return [out[r] for r in relative_paths]


class SplitMemory:
    """The splits given to the photos of one data folder, kept in the cache so that they never move."""

    VERSION = 1

    def __init__(self, cache_root: str | os.PathLike | None, root: Path, val_fraction: float, test_fraction: float):
        key = hashlib.sha256(f"{self.VERSION}|{os.path.realpath(root)}|{val_fraction!r}|{test_fraction!r}".encode(
            "utf-8", "surrogateescape")).hexdigest()[:40]
        self.path = Path(cache_root) / "splits" / f"{key}.json" if cache_root is not None else None
        self.splits: dict[str, dict[str, str]] = {}
        if self.path is not None:
            try:
                loaded = json.loads(self.path.read_text(encoding="utf-8"))
                if isinstance(loaded, dict):
                    self.splits = {k: v for k, v in loaded.items() if isinstance(v, dict)}
            except (OSError, ValueError):
                pass

    def label(self, label: str) -> dict[str, str]:
        return self.splits.get(label, {})

    def save(self, photos: list, label_root: dict[str, Path]) -> None:
        """Remember the split of every photo found now (photos no longer there are forgotten)."""
        if self.path is None:
            return
        table: dict[str, dict[str, str]] = {}
        for p in photos:
            table.setdefault(p.label, {})[p.path.relative_to(label_root[p.label]).as_posix()] = p.split
        if table != self.splits:
            from imgclf.files import write_json_atomic

            try:
                write_json_atomic(self.path, table)
            except OSError:
                pass


def ensure_training_photos(photos: list, labels: list[str]) -> tuple[list, list[str]]:
    """Move a label's held-out photos into train when the hash split left it none there.

    Only labels with very few photos are affected; returns the photos and a warning per label moved.
    """
    in_train = {p.label for p in photos if p.split == "train"}
    starved = [lab for lab in labels if lab not in in_train and any(p.label == lab for p in photos)]
    if not starved:
        return photos, []
    moved = [replace(p, split="train") if p.label in starved else p for p in photos]
    warnings = [f"label {lab!r}: none of its photos were in the train split, so its held-out photos were moved there "
                "(the table counts them in train)" for lab in starved]
    return moved, warnings
