"""Batch prediction and embedding on an engine: ``local`` (this process) or ``ray`` (a Ray cluster).

Both engines run the same pipeline (:mod:`imgclf.engines.core`) and write the same rows
(:mod:`imgclf.engines.outputs`), so they give identical labels, scores and vectors::

    from imgclf.engines import predict, embed
    predict("models/flowers", ["photos/"], "preds.parquet", engine="ray")
    embed("photos/", "emb.parquet", engine="ray", address="ray://head:10001")

and ``imgclf.train(data_dir, model_dir, embeddings="emb.parquet")`` trains the head on
embeddings computed elsewhere.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from imgclf.engines.core import EMBEDDINGS, PREDICTIONS, Item, embed_items, predict_items
from imgclf.errors import ImgclfError
from imgclf.runtime.batching import DEFAULT_BATCH

ENGINES = ("local", "ray")


@dataclass
class JobResult:
    """What a batch job wrote: how many rows, how many with an error, how long it took."""

    output: Path
    rows: int
    errors: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def _check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise ImgclfError(f"unknown engine {engine!r}: use {' or '.join(ENGINES)}")


def _is_uri(s: str) -> bool:
    return "://" in s and not os.path.exists(s)


def iter_predict(
    model_dir: str | os.PathLike, inputs: Iterable[str | os.PathLike], engine: str = "local", *,
    top_k: int = 3, threshold: float | None = None, reject: bool = True, address: str | None = None,
    actors: int | None = None, cpus_per_actor: int = 1, batch_size: int = DEFAULT_BATCH, progress: Callable | None = None,
    error_rate: float | None = None,
):
    """Batches of prediction rows (lists of dicts or Arrow tables), in input order; with ``error_rate``, each row's
    label set (``set``).

    ``address``, ``actors`` and ``cpus_per_actor`` (ONNX threads of each) apply to the Ray engine.
    """
    _check_engine(engine)
    inputs = [str(i) for i in inputs]
    if engine == "local":
        from imgclf.engines import local

        items = predict_items(inputs)
        yield from local.run(local.predict_runner(model_dir, top_k, threshold, reject, error_rate), items, batch_size, progress)
        return
    from imgclf.engines import ray_engine

    uris = [i for i in inputs if _is_uri(i)]
    if uris and len(uris) != len(inputs):
        raise ImgclfError("give either local paths or URIs (s3://…), not both")
    items = None if uris else predict_items(inputs)
    with ray_engine.runtime(address) as ray:
        yield from ray_engine.run_predict(ray, model_dir, items, uris or None, top_k, threshold, reject, actors,
                                          cpus_per_actor, batch_size, progress, error_rate)


def predict(
    model_dir: str | os.PathLike, inputs: Iterable[str | os.PathLike], output: str | os.PathLike,
    engine: str = "local", *, top_k: int = 3, **kwargs,
) -> JobResult:
    """Predict every photo under ``inputs`` and write one row per file to ``output`` (.parquet/.csv/.jsonl)."""
    from imgclf.engines.outputs import Writer
    from imgclf.runtime import artifact

    start = time.perf_counter()
    multi = artifact.read(model_dir).meta.get("multi_label") is not None
    with Writer(output, PREDICTIONS, top_k=top_k, metadata={"model": str(Path(model_dir).absolute())},
                label_set=kwargs.get("error_rate") is not None, multi_label=multi) as w:
        for batch in iter_predict(model_dir, inputs, engine, top_k=top_k, **kwargs):
            w.write(batch)
    return JobResult(Path(output), w.rows, w.errors, time.perf_counter() - start)


def embed(
    data_dir: str | os.PathLike, output: str | os.PathLike, engine: str = "local", *,
    backbone: str | None = None, weights: str | os.PathLike | None = None, crop: str | None = None,
    cache_dir: str | os.PathLike | None = None, val_fraction: float = 0.1, test_fraction: float = 0.1, address: str | None = None, actors: int | None = None,
    cpus_per_actor: int = 1, batch_size: int = DEFAULT_BATCH, progress: Callable | None = None, log: Callable[[str], None] | None = None,
) -> JobResult:
    """Embed every photo of a labelled folder and write path, hash, label, split, embedding, error rows.

    The parquet file records the backbone, so ``train(..., embeddings=output)`` can check it.
    """
    from imgclf.runtime.artifact import IMGCLF_VERSION as __version__
    from imgclf.backbones import DEFAULT_BACKBONE, resolve
    from imgclf.engines.outputs import Writer

    _check_engine(engine)
    start = time.perf_counter()
    from imgclf.files.locations import default_cache_dir

    cache_root = Path(cache_dir) if cache_dir else default_cache_dir()
    items, labels = embed_items(data_dir, val_fraction, test_fraction, cache_root)
    bb = resolve(backbone or DEFAULT_BACKBONE, weights, cache_root, log=log, crop=crop)
    meta = {"backbone": bb.to_dict(), "preprocessing": bb.preprocessing.to_dict(), "labels": labels,
            "data_dir": str(Path(data_dir).absolute()), "val_fraction": val_fraction, "test_fraction": test_fraction,
            "imgclf_version": __version__, "engine": engine}
    with Writer(output, EMBEDDINGS, metadata=meta) as w:
        if engine == "local":
            from imgclf.engines import local

            for batch in local.run(local.embed_runner(bb), items, batch_size, progress):
                w.write(batch)
        else:
            from imgclf.engines import ray_engine

            with ray_engine.runtime(address) as ray:
                for batch in ray_engine.run_embed(ray, bb, items, actors, cpus_per_actor, batch_size, progress):
                    w.write(batch)
    return JobResult(Path(output), w.rows, w.errors, time.perf_counter() - start)


__all__ = ["ENGINES", "EMBEDDINGS", "PREDICTIONS", "Item", "JobResult", "embed", "iter_predict", "predict"]
