"""Nested label folders read as a tree (``train --hierarchy``): ``animals/birds/robin/…`` is the label
``animals/birds/robin``; the splits are made within each such label, in proportion."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from imgclf.data.scan import Dataset
from imgclf.data.splits import SplitMemory, assign_splits
from imgclf.errors import ImgclfError


def nest(dataset: Dataset, val_fraction: float, test_fraction: float, cache_root: Path | None) -> Dataset:
    """``dataset`` (scanned with its top folders as labels) relabelled by the folder each photo is in, relative to the
    data folder (or to its split folder); a folder that holds both photos and label folders is refused in one line."""
    def leaf(photo) -> tuple[str, str]:
        rel = Path(photo.path).relative_to(dataset.root).parts
        if dataset.given_splits:
            rel = rel[1:]
        return "/".join(rel[:-1]), "/".join(rel)

    named = [(p, *leaf(p)) for p in dataset.photos]
    leaves = sorted({label for _, label, _ in named})
    inner = sorted({"/".join(label.split("/")[:k]) for label in leaves for k in range(1, label.count("/") + 1)})
    both = [node for node in inner if node in leaves]
    if both:
        raise ImgclfError(f"--hierarchy: {both[0]}/ holds photos beside its label folders; move them into a label folder "
                          "under it (every photo's folder is its label)")
    if dataset.given_splits:
        photos = [replace(p, label=label) for p, label, _ in named]
    else:
        memory = SplitMemory(cache_root, dataset.root, val_fraction, test_fraction)
        photos = []
        for label in leaves:
            mine = [(p, rel) for p, lab, rel in named if lab == label]
            within = [rel[len(label) + 1:] for _, rel in mine]
            splits = assign_splits(within, val_fraction, test_fraction, memory.label(label))
            photos += [replace(p, label=label, split=s) for (p, _), s in zip(mine, splits)]
        memory.save(photos, {label: dataset.root / label for label in leaves})
    return replace(dataset, labels=leaves, photos=photos)
