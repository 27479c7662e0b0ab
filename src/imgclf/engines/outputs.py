"""Write prediction and embedding rows to ``.parquet``, ``.csv`` or ``.jsonl``, streaming.

Rows arrive in batches (lists of dicts from the local engine, Arrow tables from Ray) and
are appended as they come, so memory stays bounded however many photos there are. The
file is written under a temporary name and renamed when complete: a crashed or
interrupted job never leaves a half-written file behind under the requested name.

Columns
  predictions: :data:`imgclf.runtime.prediction.FIELDS` (``path, status, label, confidence, similarity,
  top_k, error``, and ``set`` with ``--error-rate``), the same shape as ``predict -f json`` and the HTTP API
  embeddings:  ``path, hash, label, split, embedding (list<float32>), error``

In CSV, ``top_k`` becomes ``top1_label, top1_confidence, …`` and an embedding a JSON
array. A row whose file could not be used has ``error`` set and nulls elsewhere.
Parquet needs pyarrow (``pip install 'imgclf[ray]'``); CSV and JSON Lines do not.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

from imgclf.runtime.artifact import check_not_artefact
from imgclf.files import Claim, to_json, writing_to
from imgclf.runtime.prediction import csv_header, csv_row

from imgclf.engines.core import EMBEDDINGS, PREDICTIONS
from imgclf.errors import ImgclfError

FORMATS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl"}
#: The columns of an embeddings CSV (the embedding as a JSON array).
EMBEDDING_CSV_COLUMNS = ("path", "hash", "label", "split", "error", "embedding", "backbone")
#: Schema metadata key of a parquet file's imgclf description (JSON).
META_KEY = b"imgclf"


def format_of(path: str | os.PathLike) -> str:
    """``parquet``, ``csv`` or ``jsonl`` from the output file's extension."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ImgclfError(f"unknown output format {Path(path).suffix or '(no extension)'!r} for {path}: use .parquet, .csv or .jsonl")
    return fmt


def _pa():
    try:
        import pyarrow
    except ImportError:
        raise ImgclfError("parquet files need pyarrow: pip install 'imgclf[ray]' (or write .csv / .jsonl)") from None
    return pyarrow


def schema(kind: str, label_set: bool = False, multi_label: bool = False):
    """The Arrow schema of ``kind`` rows (:data:`PREDICTIONS` or :data:`EMBEDDINGS`); predictions with ``label_set``
    have a ``set`` column (``predict --error-rate``), and those of a model of several labels per photo (``multi_label``)
    a ``labels`` column."""
    pa = _pa()
    if kind == PREDICTIONS:
        top = pa.struct([("label", pa.string()), ("confidence", pa.float64())])
        return pa.schema([("path", pa.string()), ("status", pa.string()), ("label", pa.string()), ("confidence", pa.float64()),
                          ("similarity", pa.float64()), ("top_k", pa.list_(top)), ("error", pa.string())]
                         + ([("set", pa.list_(pa.string()))] if label_set else [])
                         + ([("labels", pa.list_(top))] if multi_label else []))
    return pa.schema([("path", pa.string()), ("hash", pa.string()), ("label", pa.string()), ("split", pa.string()),
                      ("embedding", pa.list_(pa.float32())), ("error", pa.string())])


def to_arrow(rows: list[dict], kind: str, label_set: bool = False, multi_label: bool = False):
    """A batch of rows → an Arrow table with :func:`schema` (embedding vectors copied once, no Python floats)."""
    pa = _pa()
    sch = schema(kind, label_set, multi_label)
    if kind != EMBEDDINGS:
        return pa.Table.from_pylist(rows, schema=sch)
    vecs = [r["embedding"] for r in rows]
    valid = np.array([v is not None for v in vecs], dtype=bool)
    lengths = np.array([0 if v is None else len(v) for v in vecs], dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = np.concatenate([v for v in vecs if v is not None]).astype(np.float32) if valid.any() else np.zeros(0, np.float32)
    emb = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.float32()), mask=pa.array(~valid))
    cols = {name: pa.array([r[name] for r in rows], pa.string()) for name in ("path", "hash", "label", "split", "error")}
    return pa.Table.from_arrays([cols["path"], cols["hash"], cols["label"], cols["split"], emb, cols["error"]], schema=sch)


class Writer:
    """``with Writer(path, kind) as w: w.write(batch)``; the file appears complete on exit, or not at all."""

    def __init__(self, path: str | os.PathLike, kind: str, top_k: int = 3, metadata: dict | None = None,
                 label_set: bool = False, multi_label: bool = False):
        if kind not in (PREDICTIONS, EMBEDDINGS):
            raise ValueError(kind)
        check_not_artefact(path, "output")
        self.path = Path(path)
        self.format = format_of(path)
        self.kind, self.top_k, self.label_set, self.multi_label = kind, top_k, label_set, multi_label
        self._claim = Claim(path, "output")
        self.metadata = {"kind": kind, **(metadata or {})}
        #: Embeddings rows in CSV and JSON Lines name the backbone that made them (parquet: in its schema metadata),
        #: so that ``train --embeddings`` can check it.
        self._backbone = ((self.metadata.get("backbone") or {}).get("id") or "")
        self.rows = self.errors = 0
        self._tmp: Path | None = None
        self._file = self._csv = self._parquet = None

    def __enter__(self) -> "Writer":
        if self.format == "parquet":
            _pa()
        with writing_to(self.path, "output"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.tmp-")
        self._tmp = Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # an ordinary file's permissions, not mkstemp's 0600
        if self.format == "parquet":
            import pyarrow.parquet as pq

            os.close(fd)
            sch = schema(self.kind, self.label_set, self.multi_label).with_metadata({META_KEY: json.dumps(self.metadata)})
            self._parquet = pq.ParquetWriter(str(self._tmp), sch)
        else:
            self._file = os.fdopen(fd, "w", encoding="utf-8", newline="")
            if self.format == "csv":
                self._csv = csv.writer(self._file, lineterminator="\n")
                self._csv.writerow(self._csv_header())
        return self

    def __exit__(self, exc_type, *exc) -> None:
        try:
            if self._parquet is not None:
                self._parquet.close()
            if self._file is not None:
                self._file.close()
            if exc_type is None:
                self._claim.commit(self._tmp)
        finally:
            if self._tmp is not None and self._tmp.exists():
                with contextlib.suppress(OSError):
                    self._tmp.unlink()

    def write(self, batch) -> None:
        """Append a batch: a list of row dicts or an Arrow table with :func:`schema`."""
        is_table = not isinstance(batch, list)
        n = batch.num_rows if is_table else len(batch)
        if n == 0:
            return
        if self.format == "parquet":
            table = batch if is_table else to_arrow(batch, self.kind, self.label_set, self.multi_label)
            self._parquet.write_table(table.cast(schema(self.kind, self.label_set, self.multi_label)) if is_table else table)
            self.errors += n - table["error"].null_count
        else:
            rows = batch.to_pylist() if is_table else batch
            for r in rows:
                self.errors += r.get("error") is not None
                if self.format == "jsonl":
                    row = {**_plain(r), "backbone": self._backbone} if self.kind == EMBEDDINGS else _plain(r)
                    self._file.write(to_json(row, indent=None) + "\n")
                else:
                    self._csv.writerow(self._csv_row(r))
        self.rows += n

    def _csv_header(self) -> list[str]:
        if self.kind == EMBEDDINGS:
            return list(EMBEDDING_CSV_COLUMNS)
        return csv_header(self.top_k, label_set=self.label_set, multi_label=self.multi_label)

    def _csv_row(self, r: dict) -> list:
        if self.kind == EMBEDDINGS:
            vec = r["embedding"]
            text = "" if vec is None else json.dumps([float(x) for x in vec])
            return [r["path"], r["hash"] or "", r["label"] or "", r["split"] or "", r["error"] or "", text, self._backbone]
        return csv_row(r, self.top_k, label_set=self.label_set, multi_label=self.multi_label)


def _plain(r: dict) -> dict:
    vec = r.get("embedding")
    if isinstance(vec, np.ndarray):
        r = {**r, "embedding": [float(x) for x in vec]}
    return r


def write_all(path: str | os.PathLike, kind: str, batches: Iterable, **kwargs) -> Writer:
    """Write every batch to ``path``; returns the closed writer (``rows``, ``errors``)."""
    with Writer(path, kind, **kwargs) as w:
        for b in batches:
            w.write(b)
    return w
