"""Models that grow: ``imgclf add`` puts new photos or labels into a model, ``imgclf forget`` takes labels or photos
out, both without the photos it was trained on.

A model folder keeps every training photo's embedding, label, split and fingerprint (:mod:`~imgclf.training.kept`).
Growing rebuilds the photo table from those rows plus the new photos' embeddings, and runs every stage after the
embeddings as ``train`` does (:func:`~imgclf.training.flow.learn`): checks, head, calibration, "unknown" rule,
estimate, neighbours, card and report. So the result is the model ``train`` would make from the union of the photos,
except that the kept embeddings are float16 and photos keep the splits they had.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from imgclf.backbones import Backbone, resolve
from imgclf.data import Dataset, Photo
from imgclf.embeddings import Embeddings, Progress
from imgclf.errors import ImgclfError
from imgclf.heads.rejection import UNKNOWN
from imgclf.runtime import artifact
from imgclf.training import kept, stages
from imgclf.training.events import Event, Reporter
from imgclf.training.flow import TrainResult, learn
from imgclf.training.settings import Settings


@dataclass
class Grown:
    """A model folder opened to grow: its metadata, labels, kept photos, the settings it was trained with and its
    backbone."""

    path: Path
    meta: dict
    labels: list[str]
    photos: kept.KeptPhotos
    settings: Settings
    backbone: Backbone

    @classmethod
    def open(cls, model_dir: str | os.PathLike, cache_dir: str | os.PathLike | None, log: Callable[[str], None] | None) -> "Grown":
        folder = artifact.read(model_dir)
        meta = folder.meta
        settings_ = meta.get("settings")
        if not isinstance(settings_, dict):
            raise ImgclfError(f"{model_dir} was made by an older imgclf that kept no photos to grow from: train it again "
                              "from its photos")
        if settings_.get("private"):
            raise ImgclfError(f"{model_dir} was trained with --private: it keeps no photos to grow from; train it again with "
                              "the new photos")
        if not settings_.get("can_grow"):
            why = ("fine-tuned" if settings_.get("fine_tune") else "quantised" if settings_.get("quantize")
                   else "trained with --augment")
            raise ImgclfError(f"{model_dir} cannot grow: it was {why}, and new photos could not be embedded alike; "
                              "train it again with the new photos")
        bb_meta = meta["backbone"]
        settings = Settings(backbone=str(settings_.get("backbone") or bb_meta["name"]), weights=settings_.get("weights"),
                            seed=int(meta["head"].get("seed", 0)), cache_dir=cache_dir,
                            val_fraction=float(settings_["val_fraction"]), test_fraction=float(settings_["test_fraction"]),
                            target_acceptance=float(settings_["target_acceptance"]), crop=settings_.get("crop"),
                            hierarchy=bool(settings_.get("hierarchy"))).check()
        bb = resolve(settings.backbone, settings.weights, settings.cache_root, log=log, crop=settings.crop)
        if bb.id != bb_meta.get("id"):
            raise ImgclfError(f"{model_dir} was trained with backbone {bb_meta.get('id')}, which this installation does not "
                              f"have (it has {bb.id}): grow it where it was trained")
        return cls(folder.path, meta, folder.labels, kept.load(folder.path, folder.labels, bb.dim), settings, bb)

    @property
    def root(self) -> Path:
        """The data folder the model was first trained on (its kept paths are relative to it)."""
        return Path(self.meta["data"]["root"])

    @cached_property
    def photo_paths(self) -> list[Path]:
        """Where each kept photo was (it may be gone): its kept path, against the data folder when relative."""
        return [Path(p) if Path(p).is_absolute() else self.root / p for p in self.photos.paths]

    def history(self) -> list[dict]:
        return list(self.meta.get("history") or [{"action": "train", "at": self.meta.get("created"), "photos": len(self.photos)}])


def add(
    model_dir: str | os.PathLike,
    photos_dir: str | os.PathLike,
    output: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: Progress | None = None,
    log: Callable[[str], None] | None = None,
    on_event: Callable[[Event], None] | None = None,
    cancel: threading.Event | None = None,
) -> TrainResult:
    """Add the photos of ``photos_dir`` (label folders, or ``train|val|test/<label>/``) to the model in ``model_dir``:
    to its labels, or as new labels. The model is written to ``output`` (default: replaces ``model_dir``, whole and
    atomically). Photos already in the model are left out; a photo at a path the model holds whose content changed
    replaces the old one. Raises :class:`ImgclfError` for a model that cannot grow (``train --private``, fine-tuned,
    quantised, augmented, or made by an older imgclf)."""
    started = time.perf_counter()
    report = Reporter(on_event, cancel, progress, log)
    base = Grown.open(model_dir, cache_dir, report.log)
    requested = Path(output) if output is not None else base.path
    target = artifact.check_output(requested, photos_dir)
    report.start("scan")
    new = stages.scan(photos_dir, base.settings)
    report.start("embed")
    emb = stages.embed(new, base.backbone, base.settings, report)
    hashes = dict(zip(emb.paths, emb.hashes))
    known = set(zip(base.photos.hashes, (base.labels[i] for i in base.photos.y)))
    already = {p.path for p in new.photos if (hashes.get(p.path), p.label) in known}
    fresh = [p for p in new.photos if p.path not in already]
    if not any(p.path in hashes for p in fresh):
        why = "every photo of it is in the model already" if already else "none of its photos could be read"
        raise ImgclfError(f"nothing to add from {photos_dir}: {why}")
    taken = {p.path for p in fresh}
    keep_old = np.array([p not in taken for p in base.photo_paths], bool)  # a path given again with new content replaces its row
    labels = _merge_labels(base.labels, new.labels)
    if not new.given_splits:
        fresh = _held_out_in_proportion(base, keep_old, fresh, Path(photos_dir))
    dataset, embeddings = _assemble(base, keep_old, labels, fresh, emb, new.skipped)
    entry = {"action": "add", "from": str(Path(photos_dir).absolute()),
             "added": sum(p.path in hashes for p in fresh), "already_in_model": len(already),
             "new_labels": [lab for lab in labels if lab not in base.labels]}
    if already:
        report.log(f"{len(already)} of the photos are in the model already: left out")
    return _learn(requested, target, photos_dir, base, dataset, embeddings, report, started, entry)


def forget(
    model_dir: str | os.PathLike,
    labels: Iterable[str] = (),
    photos: Iterable[str | os.PathLike] = (),
    output: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> TrainResult:
    """Take ``labels`` (every photo of each) and ``photos`` (paths as ``neighbors.json`` and ``predict --neighbors``
    give them, relative to the data folder, or as absolute paths) out of the model in ``model_dir`` and refit it from
    what remains, written to ``output`` (default: replaces ``model_dir``). A label or photo the model does not hold is
    refused by name; so is forgetting every label."""
    started = time.perf_counter()
    report = Reporter(on_event, None, None, log)
    base = Grown.open(model_dir, cache_dir, report.log)
    labels, photos = list(labels), [str(p) for p in photos]
    if not labels and not photos:
        raise ImgclfError("say what to forget: --label LABEL or --photos FILE")
    unknown_labels = [lab for lab in labels if lab not in base.labels]
    if unknown_labels:
        raise ImgclfError(f"the model has no label {unknown_labels[0]!r}; its labels: {', '.join(base.labels)}")
    remaining = [lab for lab in base.labels if lab not in labels]
    if not [lab for lab in remaining if lab != UNKNOWN]:
        raise ImgclfError("forgetting every label leaves nothing to answer: train a new model instead")
    drop = np.isin(base.photos.y, [base.labels.index(lab) for lab in labels])
    if photos:
        drop |= _rows_named(base, photos)
    requested = Path(output) if output is not None else base.path
    target = artifact.check_output(requested)
    report.start("scan")
    empty = Embeddings([], [], np.zeros((0, base.backbone.dim), np.float32))
    dataset, embeddings = _assemble(base, ~drop, remaining, [], empty, [])
    entry = {"action": "forget", "labels": labels, "removed": int(drop.sum())}
    return _learn(requested, target, None, base, dataset, embeddings, report, started, entry)


def _learn(requested: Path, target: Path, data_dir, base: Grown, dataset: Dataset, emb: Embeddings, report: Reporter,
           started: float, entry: dict) -> TrainResult:
    """The stages after the embeddings, on the table assembled; the model's history gains ``entry``."""
    _remember_fingerprints(base, base.settings)
    return learn(requested, target, data_dir, dataset, emb, base.backbone, base.settings, report, started, base.history(), entry)


def _merge_labels(old: list[str], new: list[str]) -> list[str]:
    """The old labels, then the new ones, with ``unknown`` (negative photos) last when either has it."""
    known = [lab for lab in old + [lab for lab in new if lab not in old] if lab != UNKNOWN]
    return known + ([UNKNOWN] if UNKNOWN in old or UNKNOWN in new else [])


def _held_out_in_proportion(base: Grown, keep: np.ndarray, fresh: list[Photo], root: Path) -> list[Photo]:
    """The new photos with splits that keep each label's validation and test splits in proportion to all its photos,
    old and new: old photos keep theirs, new ones fill in the order of their path within the label folder, as
    ``train`` does when photos are added to its data folder (:func:`~imgclf.data.splits.assign_splits`)."""
    from dataclasses import replace

    from imgclf.data.splits import assign_splits

    out = []
    for label in dict.fromkeys(p.label for p in fresh):
        mine = [p for p in fresh if p.label == label]
        old = keep & (base.photos.y == base.labels.index(label)) if label in base.labels else np.zeros(len(keep), bool)
        remembered = {f"\0{i}": str(base.photos.split[i]) for i in np.flatnonzero(old)}
        names = list(remembered) + [_within_label(p, root) for p in mine]
        splits = assign_splits(names, base.settings.val_fraction, base.settings.test_fraction, remembered)[len(remembered):]
        out += [replace(p, split=s) for p, s in zip(mine, splits)]
    return out


def _within_label(photo: Photo, root: Path) -> str:
    """``photo``'s path relative to its label folder (the key :mod:`~imgclf.data.splits` orders new photos by)."""
    try:
        return Path(photo.path).relative_to(root / photo.label).as_posix()
    except ValueError:
        return Path(photo.path).name


def _assemble(base: Grown, keep: np.ndarray, labels: list[str], fresh: list[Photo], emb: Embeddings,
              skipped: list) -> tuple[Dataset, Embeddings]:
    """The dataset and embeddings of the kept rows where ``keep`` is True plus the ``fresh`` photos (their vectors in
    ``emb``), as :func:`~imgclf.training.flow.learn` takes them."""
    rows = base.photos.where(keep)
    paths = [p for p, k in zip(base.photo_paths, keep) if k]
    old = [Photo(path, base.labels[y], str(split)) for path, y, split in zip(paths, rows.y, rows.split)]
    dataset = Dataset(base.root, labels, old + fresh, bool(base.meta["data"].get("given_splits")), list(skipped))
    by_path = dict(zip(emb.paths, range(len(emb.paths))))
    order = [by_path[p.path] for p in fresh if p.path in by_path]
    vectors = np.concatenate([rows.vectors, emb.vectors[order]]) if order else rows.vectors
    embeddings = Embeddings(paths + [emb.paths[i] for i in order], rows.hashes + [emb.hashes[i] for i in order],
                            vectors.astype(np.float32), dict(emb.errors), emb.n_computed)
    return dataset, embeddings


def _remember_fingerprints(base: Grown, settings: Settings) -> None:
    """Put the kept fingerprints into the cache the checks read them from (by content hash), where it lacks them: the
    photos themselves may be gone."""
    from imgclf.checks.fingerprints import VERSION
    from imgclf.embeddings.cache import EmbeddingCache

    cache = EmbeddingCache(settings.cache_root, VERSION, kind="fingerprints")
    for h, row in zip(base.photos.hashes, base.photos.prints):
        if np.isfinite(row).all() and not cache.has(h):
            cache.put(h, row)


def _rows_named(base: Grown, names: list[str]) -> np.ndarray:
    """The kept rows ``names`` name (as kept, or as absolute paths); a name that matches none is refused."""
    as_kept = {p: i for i, p in enumerate(base.photos.paths)}
    absolute = {os.path.abspath(p): i for i, p in enumerate(base.photo_paths)}
    rows = np.zeros(len(base.photos), bool)
    missing = []
    for name in names:
        i = as_kept.get(Path(name).as_posix(), absolute.get(os.path.abspath(name)))
        if i is None:
            missing.append(name)
        else:
            rows[i] = True
    if missing:
        raise ImgclfError(f"the model holds no photo {missing[0]!r}{f' (nor {len(missing) - 1} more of those listed)' if len(missing) > 1 else ''}"
                          "; name photos as predict --neighbors shows them, or by their full path")
    return rows
