"""Photos with several labels each: from a manifest file, or from label folders that share photos.

A manifest (``train --labels FILE``) is CSV with the columns ``path`` and ``labels`` (labels separated by ``;``) and
optionally ``split`` (``train``, ``val`` or ``test``: the test photos are measured on, the others learned from), or JSON Lines of ``{"path", "labels": [...], "split"}``. Paths
are relative to the data folder; a photo with no label is a valid negative ("none of these"). Rows that name no file,
leave the data folder, repeat a photo, hold an empty label or an unknown column are reported by line number and
nothing is trained: nothing is guessed.

Without a manifest, ``train --multi-label`` reads label folders: a photo (the same content) under several label folders
has all those labels, and a photo under ``unknown/`` or ``_background/`` has none.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from imgclf.data.scan import scan_labelled
from imgclf.data.splits import SPLITS
from imgclf.errors import ImgclfError
from imgclf.runtime.inputs import Skipped

#: Label folders whose photos have no label in a multi-label model (as they are negatives in a single-label one).
NO_LABEL_FOLDERS = ("unknown", "_background")
#: The columns (CSV) and keys (JSON Lines) a manifest may have; ``path`` and ``labels`` are required.
COLUMNS = ("path", "labels", "split")
#: The largest manifest read (bytes): a bigger file is not a list of photos.
MAX_MANIFEST_BYTES = 256 * 2**20
#: Bad rows named in the one-line error; the rest are counted.
SHOWN_PROBLEMS = 5


@dataclass(frozen=True)
class Tagged:
    """One photo with its labels (none: a negative) and its split."""

    path: Path
    labels: tuple[str, ...]
    split: str
    #: Label folders: the file of each label the photo is in, by label (its copies, :func:`merge_copies`).
    files: tuple[tuple[str, Path], ...] = ()


@dataclass
class TaggedSet:
    """The photos of a multi-label data folder, before any is decoded; ``source`` says where the labels came from."""

    root: Path
    labels: list[str]
    photos: list[Tagged]
    source: str
    given_splits: bool = False
    skipped: list[Skipped] = field(default_factory=list)

    def matrix(self, photos: list[Tagged] | None = None) -> np.ndarray:
        """(photos, labels) of 0/1: which photo has which label."""
        index = {lab: k for k, lab in enumerate(self.labels)}
        photos = self.photos if photos is None else photos
        out = np.zeros((len(photos), len(self.labels)), np.int8)
        for i, p in enumerate(photos):
            out[i, [index[lab] for lab in p.labels]] = 1
        return out


def read_manifest(data_dir: str | os.PathLike, manifest: str | os.PathLike) -> TaggedSet:
    """The photos a manifest names, with their labels; :class:`ImgclfError` naming the bad rows by line number."""
    root, path = Path(data_dir), Path(manifest)
    if not root.is_dir():
        raise ImgclfError(f"data folder not found: {root}")
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise ImgclfError(f"{path} is over {MAX_MANIFEST_BYTES // 2**20} MB: not a list of photos")
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise ImgclfError(f"--labels file not found: {path}") from None
    except UnicodeDecodeError:
        raise ImgclfError(f"{path} is not UTF-8 text: a manifest is CSV (path,labels) or JSON Lines") from None
    except OSError as e:
        raise ImgclfError(f"cannot read {path}: {e.strerror or e}") from None
    jsonl = path.suffix.lower() in (".jsonl", ".ndjson") or text.lstrip().startswith("{")
    rows, problems = (_jsonl_rows if jsonl else _csv_rows)(text)
    photos: list[Tagged] = []
    seen: dict[str, int] = {}
    for line, rel, labels, split in rows:
        where = _inside(root, rel)
        if isinstance(where, str):
            problems.append((line, where))
            continue
        key = os.path.normcase(os.path.normpath(rel))
        if key in seen:
            problems.append((line, f"{rel!r} is listed already on line {seen[key]}"))
            continue
        seen[key] = line
        photos.append(Tagged(where, labels, split or ""))
    if problems:
        shown = "; ".join(f"line {n}: {why}" for n, why in sorted(problems)[:SHOWN_PROBLEMS])
        more = f" (and {len(problems) - SHOWN_PROBLEMS} more)" if len(problems) > SHOWN_PROBLEMS else ""
        raise ImgclfError(f"{path.name}: {len(problems)} bad row{'s' if len(problems) > 1 else ''}, nothing trained — {shown}{more}")
    if not photos:
        raise ImgclfError(f"{path.name} lists no photos")
    given = any(p.split for p in photos)
    if given and not all(p.split for p in photos):
        raise ImgclfError(f"{path.name}: some rows have a split and some do not; give every row one, or none")
    photos = [replace(p, split="test" if p.split == "test" else "train") for p in photos]
    given = any(p.split == "test" for p in photos)
    labels = sorted({lab for p in photos for lab in p.labels})
    if not labels:
        raise ImgclfError(f"{path.name} gives no photo a label: a model needs at least one label")
    return TaggedSet(root, labels, photos, f"the manifest {path.name}", given_splits=given)


def _csv_rows(text: str) -> tuple[list[tuple[int, str, tuple[str, ...], str | None]], list[tuple[int, str]]]:
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return [], [(1, "the file is empty; the first line names the columns: path,labels")]
    unknown = [h for h in header if h not in COLUMNS]
    missing = [c for c in ("path", "labels") if c not in header]
    if unknown or missing:
        why = (f"unknown column {unknown[0]!r}" if unknown else f"no {missing[0]!r} column")
        return [], [(1, f"{why}: the columns are path, labels and optionally split")]
    rows, problems = [], []
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            problems.append((line, f"{len(row)} cells where the header has {len(header)} (a label list with a comma? "
                                   "separate labels with ';')"))
            continue
        cells = dict(zip(header, row))
        _take(line, _row(cells["path"], cells["labels"].split(";") if cells["labels"].strip() else [], cells.get("split")),
              rows, problems)
    return rows, problems


def _jsonl_rows(text: str) -> tuple[list, list]:
    rows, problems = [], []
    for line, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError:
            problems.append((line, "not a JSON object"))
            continue
        if not isinstance(obj, dict):
            problems.append((line, "not a JSON object"))
            continue
        unknown = [k for k in obj if k not in COLUMNS]
        if unknown or "path" not in obj or "labels" not in obj:
            why = f"unknown key {unknown[0]!r}" if unknown else "no 'path'" if "path" not in obj else "no 'labels'"
            problems.append((line, f"{why}: the keys are path, labels and optionally split"))
            continue
        labels = obj["labels"]
        if not isinstance(labels, list) or not all(isinstance(lab, str) for lab in labels) or not isinstance(obj["path"], str):
            problems.append((line, "'path' must be a string and 'labels' a list of strings"))
            continue
        _take(line, _row(obj["path"], labels, obj.get("split")), rows, problems)
    return rows, problems


def _take(line: int, parsed, rows: list, problems: list) -> None:
    """A parsed row (:func:`_row`) into ``rows`` as ``(line, path, labels, split)``, or why it is bad into ``problems``."""
    if isinstance(parsed, str):
        problems.append((line, parsed))
    else:
        rows.append((line, *parsed))


def _row(path: str, labels: list[str], split) -> tuple[str, tuple[str, ...], str | None] | str:
    """A row's path, labels and split, or why the row is bad."""
    if not path.strip():
        return "no path"
    names = [lab.strip() for lab in labels]
    if any(not lab for lab in names):
        return f"an empty label in {';'.join(labels)!r}"
    bad = [lab for lab in names if lab in (".", "..") or "/" in lab or "\\" in lab]
    if bad:
        return f"label {bad[0]!r} cannot be a label name"
    if split not in (None, "", *SPLITS):
        return f"split {split!r} is none of {', '.join(SPLITS)}"
    return path.strip(), tuple(sorted(set(names))), split or None


def _inside(root: Path, rel: str) -> Path | str:
    """The file ``rel`` names under ``root``, or why it cannot be used."""
    from imgclf.files import path_kind

    if os.path.isabs(rel) or ".." in Path(rel).parts:
        return f"{rel!r} is not a path inside the data folder"
    full = root / rel
    kind = path_kind(full)
    if kind is None:
        return f"no file {rel!r}"
    if kind == "special" or (kind == "symlink" and not full.is_file()):
        return f"{rel!r} is not a regular file"
    if kind == "folder":
        return f"{rel!r} is a folder"
    return full


def scan_folders(data_dir: str | os.PathLike) -> TaggedSet:
    """Label folders as multi-label data: each file with the label of its folder (``unknown/`` and ``_background/``:
    none); :func:`merge_copies` joins the labels of one photo found under several folders once its content is known.
    ``train/`` and ``test/`` folders of label folders are given splits (``val/`` is learned from with ``train/``)."""
    dataset = scan_labelled(data_dir, 0.0, 0.0)
    photos = [Tagged(p.path, () if p.label in NO_LABEL_FOLDERS else (p.label,), "test" if p.split == "test" else "train",
                     () if p.label in NO_LABEL_FOLDERS else ((p.label, p.path),)) for p in dataset.photos]
    labels = [lab for lab in dataset.labels if lab not in NO_LABEL_FOLDERS]
    if not labels:
        raise ImgclfError(f"{data_dir} has only photos without a label (unknown/, _background/): add a label folder")
    return TaggedSet(Path(data_dir), labels, photos, "label folders (a photo in several folders has each label)",
                     dataset.given_splits and any(p.split == "test" for p in photos), list(dataset.skipped))


def merge_copies(tagged: TaggedSet, hashes: dict[Path, str]) -> tuple[TaggedSet, int]:
    """One photo per content: the labels of its copies joined (the first path kept); and how many copies were merged."""
    first: dict[str, int] = {}
    merged: list[Tagged] = []
    copies = 0
    for p in tagged.photos:
        key = hashes.get(p.path)
        if key is None:
            continue
        if key in first:
            i = first[key]
            merged[i] = replace(merged[i], labels=tuple(sorted(set(merged[i].labels) | set(p.labels))),
                                files=merged[i].files + p.files)
            copies += 1
        else:
            first[key] = len(merged)
            merged.append(p)
    return replace(tagged, photos=merged), copies
