"""Find labelled photos on disk: label folders or ``train/ val/ test/`` folders of them.

Scanning only looks at names and folder structure; whether a file is really a usable
image is decided later, when its bytes are decoded. Hidden files and OS junk are
ignored silently; symlink loops are detected, never followed twice.
"""

from __future__ import annotations

import os
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from imgclf.errors import ImgclfError
from imgclf.runtime.artifact import is_model_folder
from imgclf.data.splits import SPLITS, SplitMemory, assign_splits
from imgclf.runtime.inputs import MODEL_FOLDER_REASON, Skipped, is_ignored, walk_files

_IMAGE_MAGIC = (
    b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"RIFF", b"II*\x00", b"MM\x00*",
)


@dataclass(frozen=True)
class Photo:
    """One candidate photo with its label and split (``train``, ``val`` or ``test``)."""

    path: Path
    label: str
    split: str


@dataclass
class Dataset:
    """The photos found under a data folder, before any of them is decoded."""

    root: Path
    labels: list[str]
    photos: list[Photo]
    given_splits: bool
    skipped: list[Skipped] = field(default_factory=list)

    def counts(self) -> dict[str, dict[str, int]]:
        """``{label: {split: n}}`` for every label and split."""
        c = Counter((p.label, p.split) for p in self.photos)
        return {lab: {s: c[(lab, s)] for s in SPLITS} for lab in self.labels}


def looks_like_image(path: Path) -> bool:
    """Cheap sniff of the first bytes, used only to spot loose photos beside label folders."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return False
    return head.startswith(_IMAGE_MAGIC) or head[4:12] in (b"ftypheic", b"ftypavif", b"ftypmif1")


def _label_dirs(root: Path) -> tuple[list[Path], list[Path]]:
    """Sub-folders (labels) and loose files directly under ``root``."""
    dirs, files = [], []
    for e in sorted(os.scandir(root), key=lambda e: e.name):
        if is_ignored(e.name):
            continue
        try:
            (dirs if e.is_dir(follow_symlinks=True) else files).append(Path(e.path))
        except OSError:
            files.append(Path(e.path))
    return dirs, files


def _check_folder(root: Path) -> None:
    if not root.exists():
        raise ImgclfError(f"data folder not found: {root}")
    if not root.is_dir():
        raise ImgclfError(f"not a folder: {root}")


def _photos_of_labels(
    root: Path, split: str | None, val_fraction: float, test_fraction: float, skipped: list[Skipped], layout: str = "",
    memory: SplitMemory | None = None,
) -> tuple[list[str], list[Photo]]:
    dirs, files = _label_dirs(root)
    loose = [f for f in files if looks_like_image(f)]
    if loose and dirs:
        raise ImgclfError(
            f"{len(loose)} image(s) directly in {root} beside label folders (e.g. {loose[0].name}); "
            f"move them into a label folder{layout}"
        )
    labels, photos = [], []
    for d in dirs:
        if is_model_folder(d):
            skipped.append(Skipped(str(d), MODEL_FOLDER_REASON))
            continue
        labels.append(d.name)
        found = list(walk_files(d, skipped))
        rels = [f.relative_to(d).as_posix() for f in found]
        splits = ([split] * len(found) if split else
                  assign_splits(rels, val_fraction, test_fraction, memory.label(d.name) if memory else None))
        photos += [Photo(f, d.name, s) for f, s in zip(found, splits)]
    if not labels:
        what = "only loose images" if loose else "no label folders"
        raise ImgclfError(f"{root} has {what}: expected one sub-folder per label, each holding its photos{layout}")
    return labels, photos


def scan_labelled(
    root: str | os.PathLike, val_fraction: float = 0.1, test_fraction: float = 0.1, min_labels: int = 1,
    cache_root: str | os.PathLike | None = None,
) -> Dataset:
    """Scan ``<label>/<images>`` or ``train|val|test/<label>/<images>`` under ``root``.

    Without given splits each label's photos are split by :func:`assign_splits`, remembering the
    splits under ``cache_root`` (None: nothing remembered, the same split for the same photos). With a
    ``train`` folder but no ``val`` folder, validation photos are carved from ``train`` the same way.
    Folders holding an imgclf model are left out and listed in ``skipped``.
    """
    root = Path(root)
    _check_folder(root)
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ImgclfError("--val-fraction and --test-fraction must be in [0, 1) and sum to less than 1")
    skipped: list[Skipped] = []
    split_dirs = {s: root / s for s in SPLITS if (root / s).is_dir() and not is_model_folder(root / s)}
    carved_from = root if not split_dirs else split_dirs["train"]
    memory = SplitMemory(cache_root, carved_from, val_fraction, test_fraction if not split_dirs else 0.0)
    if not split_dirs:
        labels, photos = _photos_of_labels(root, None, val_fraction, test_fraction, skipped, memory=memory)
        dataset = Dataset(root, labels, photos, given_splits=False, skipped=skipped)
    else:
        layout = (f" ({root} was read as split folders because it has {', '.join(s + '/' for s in split_dirs)}; "
                  "each split holds one sub-folder per label. If these are your labels, rename them)")
        if "train" not in split_dirs:
            raise ImgclfError(f"{root} has {'/'.join(split_dirs)} folders but no train/ folder{layout}")
        labels, photos = _photos_of_labels(split_dirs["train"], None if "val" not in split_dirs else "train",
                                           val_fraction, 0.0, skipped, layout, memory)
        for s in ("val", "test"):
            if s in split_dirs:
                s_labels, s_photos = _photos_of_labels(split_dirs[s], s, 0, 0, skipped, layout)
                extra = sorted(set(s_labels) - set(labels))
                if extra:
                    raise ImgclfError(f"labels of {s}/ and train/ disagree: {', '.join(extra)} in {s}/ only")
                photos += s_photos
        dataset = Dataset(root, labels, photos, given_splits=True, skipped=skipped)
    _one_level_too_high(dataset)
    if not dataset.photos:
        raise ImgclfError(f"no files found in the label folders of {root}")
    if "val" not in split_dirs:
        memory.save([p for p in dataset.photos if p.path.is_relative_to(carved_from)],
                    {lab: carved_from / lab for lab in dataset.labels})
    if len(dataset.labels) < min_labels:
        raise ImgclfError(f"only one label ({dataset.labels[0]}) in {root}: this needs at least two label folders")
    return dataset


def _one_level_too_high(dataset: Dataset) -> None:
    """A single label folder holding ``train/``, ``val/`` or ``test/`` folders of label folders is a data folder one
    level down, not a label: say what was read and which folder was probably meant."""
    if dataset.given_splits or len(dataset.labels) != 1:
        return
    inner = dataset.root / dataset.labels[0]
    splits = [s for s in SPLITS if (inner / s).is_dir() and any(p.is_dir() for p in (inner / s).iterdir())]
    if splits:
        raise ImgclfError(f"{dataset.root} holds one folder, {dataset.labels[0]}/, which holds split folders ({', '.join(s + '/' for s in splits)}) "
                          f"of label folders: read as it is, it would train a one-label model called {dataset.labels[0]!r}. "
                          f"Did you mean {inner}?")


def normalisation_warnings(labels: list[str]) -> list[str]:
    """Labels that look the same but differ in Unicode normalisation (NFC ``rosé`` vs NFD ``rosé``)."""
    groups: dict[str, list[str]] = {}
    for lab in labels:
        groups.setdefault(unicodedata.normalize("NFC", lab), []).append(lab)
    return [
        f"labels {' and '.join(ascii(v) for v in same)} look the same but are spelled with different Unicode "
        "characters (NFC/NFD): they are trained as different labels; rename one folder to merge them"
        for same in groups.values() if len(same) > 1
    ]
