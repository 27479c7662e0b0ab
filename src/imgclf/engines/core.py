"""The one decode → preprocess → ONNX pipeline that both engines run.

The local engine streams every photo through :meth:`Runner.iter_rows` once; each Ray
actor builds the same :class:`Runner` (one ONNX Runtime session per actor) and calls
:meth:`Runner.iter_rows` on each batch Ray Data hands it. Per photo the work is
:func:`imgclf.runtime.loader.load_pixels`, as for ``train`` and ``predict``; per batch it is
``Preprocessing.batch`` and one session run (``imgclf.runtime.batching.run_batched`` does the
batching for both engines).
A file that cannot be read or decoded becomes a row with ``error`` set, never an exception.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from imgclf.files.digests import content_hash
from imgclf.errors import ImageError, ImgclfError
from imgclf.runtime.images import read_bytes
from imgclf.runtime.batching import DEFAULT_BATCH, run_batched
from imgclf.runtime.loader import load_pixels
from imgclf.runtime.encoders import encoder
from imgclf.runtime.session import create_session
from imgclf.runtime.preprocessing import Preprocessing

PREDICTIONS = "predictions"
EMBEDDINGS = "embeddings"


@dataclass
class Item:
    """One photo on its way through the pipeline.

    ``path`` is what the output shows, ``source`` where the bytes are read from (an absolute
    path, so Ray workers with another working directory find it), or ``data`` the bytes
    themselves. ``hash`` is filled in once the bytes are read.
    """

    path: str
    source: str | None = None
    data: bytes | None = None
    label: str | None = None
    split: str | None = None
    hash: str | None = None


class Runner:
    """Loads items, runs one ONNX session on batches, turns results into output rows."""

    kind: str

    def __init__(self, pre: Preprocessing, threads: int | None = None):
        self.pre = pre
        self.threads = threads

    def load(self, item: Item) -> np.ndarray:
        data = item.data if item.data is not None else read_bytes(item.source or item.path)
        item.data = None  # the bytes are not needed after decoding; do not keep a batch of them
        if self.kind == EMBEDDINGS:
            item.hash = content_hash(data)
        return load_pixels(data, self.pre)

    def forward(self, batch: np.ndarray) -> Sequence[np.ndarray]:
        raise NotImplementedError

    def row(self, item: Item, out: tuple[np.ndarray, ...] | ImageError) -> dict:
        raise NotImplementedError

    def photos_per_run(self, batch_size: int) -> int:
        """How many photos a batch of ``batch_size`` images holds (one image a photo)."""
        return batch_size

    def iter_rows(self, items: Iterable[Item], batch_size: int = DEFAULT_BATCH, loaders: int | None = None) -> Iterator[dict]:
        """Rows in input order; ``loaders`` decode threads feed batches of ``batch_size`` images
        (:meth:`photos_per_run` photos)."""
        per_run = self.photos_per_run(batch_size)
        for item, out in run_batched(items, self.load, self.forward, per_run, loaders or self.threads, collate=self.pre.batch):
            yield self.row(item, out)


class PredictRunner(Runner):
    """Scores from a model folder's fused ONNX model, formatted by :meth:`imgclf.runtime.model.Model.prediction`.

    ``threshold`` and ``reject`` are the "unknown" rule, and ``error_rate`` the label sets, as in
    :meth:`imgclf.runtime.model.Model.predict`.
    """

    kind = PREDICTIONS

    def __init__(self, model, top_k: int = 3, threads: int | None = None, threshold: float | None = None, reject: bool = True,
                 error_rate: float | None = None):
        super().__init__(model.preprocessing, threads)
        self.model = model
        self.top_k = top_k
        self.threshold = threshold
        self.reject = reject
        self.error_rate = error_rate
        model.check_error_rate(error_rate)  # a model without label sets: one line, before any photo

    def forward(self, batch: np.ndarray) -> Sequence[np.ndarray]:
        return [self.model.scores(batch)]

    def photos_per_run(self, batch_size: int) -> int:
        return self.model.photos_per_run(batch_size)

    def row(self, item: Item, out) -> dict:
        if isinstance(out, ImageError):
            return self.model.failed(item.path, out, self.error_rate).to_row()
        return self.model.prediction(item.path, out[0], self.top_k, self.threshold, self.reject, self.error_rate).to_row()


class EmbedRunner(Runner):
    """Backbone embeddings (one vector per photo) from a backbone's ONNX export."""

    kind = EMBEDDINGS

    def __init__(self, onnx_path: str | os.PathLike, pre: Preprocessing, threads: int | None = None, encoder_name: str | None = None):
        super().__init__(pre, threads)
        self.session = create_session(onnx_path, threads)
        self.input = self.session.get_inputs()[0].name
        self.encode = encoder(encoder_name)

    def forward(self, batch: np.ndarray) -> Sequence[np.ndarray]:
        return self.session.run(None, {self.input: self.encode(batch)})[:1]

    def row(self, item: Item, out) -> dict:
        error = out.reason if isinstance(out, ImageError) else None
        vec = None if error else np.asarray(out[0], dtype=np.float32)
        return {"path": item.path, "hash": item.hash, "label": item.label, "split": item.split, "embedding": vec, "error": error}


# --- what to process --------------------------------------------------------------------------------

_GLOB_CHARS = frozenset("*?[")


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Files, folders (recursively, as ``imgclf predict`` walks them) and quoted globs → files, sorted per input."""
    from imgclf.runtime.inputs import iter_inputs

    expanded: list[str] = []
    for raw in inputs:
        s = str(raw)
        if not os.path.lexists(s) and _GLOB_CHARS & set(s):
            matches = sorted(glob.glob(s, recursive=True))
            if not matches:
                raise ImgclfError(f"no files match {s}")
            expanded += matches
        else:
            expanded.append(s)
    return list(iter_inputs(expanded))


def predict_items(inputs: Iterable[str | os.PathLike]) -> list[Item]:
    """Items for ``predict``: the path as given, read from its absolute path."""
    files = expand_inputs(inputs)
    if not files:
        raise ImgclfError("no files found in the given paths")
    return [Item(str(p), source=os.path.abspath(p)) for p in files]


def embed_items(data_dir: str | os.PathLike, val_fraction: float = 0.1, test_fraction: float = 0.1,
                cache_root: str | os.PathLike | None = None) -> tuple[list[Item], list[str]]:
    """Items for ``embed``: every photo of a labelled folder with its label and split; and the labels.

    ``path`` is relative to ``data_dir`` (POSIX), so a file embedded on a cluster is matched
    to the same photo in a copy of the folder elsewhere.
    """
    from imgclf.data import scan_labelled

    dataset = scan_labelled(data_dir, val_fraction, test_fraction, cache_root=cache_root)
    root = dataset.root
    items = [
        Item(p.path.relative_to(root).as_posix(), source=os.path.abspath(p.path), label=p.label, split=p.split)
        for p in dataset.photos
    ]
    return items, dataset.labels
