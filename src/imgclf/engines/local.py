"""The local engine: every photo through one :class:`~imgclf.engines.core.Runner` in this process.

Decoding runs in a thread pool ahead of inference (``imgclf.runtime.batching.run_batched``) and
ONNX Runtime uses every core, exactly as ``imgclf predict`` and ``imgclf train`` do.
"""

from __future__ import annotations

import os
from typing import Callable, Iterator

from imgclf.engines.core import Item, Runner
from imgclf.runtime.batching import DEFAULT_BATCH

#: Rows per batch handed to the writer.
CHUNK = 256


def run(
    runner: Runner, items: list[Item], batch_size: int = DEFAULT_BATCH,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[list[dict]]:
    """Yield lists of output rows, in input order."""
    total, done = len(items), 0
    chunk: list[dict] = []
    for row in runner.iter_rows(iter(items), batch_size):
        chunk.append(row)
        if len(chunk) >= CHUNK:
            done += len(chunk)
            yield chunk
            chunk = []
            if progress:
                progress(done, total)
    if chunk:
        done += len(chunk)
        yield chunk
    if progress:
        progress(done, total)


def predict_runner(model_dir: str | os.PathLike, top_k: int = 3, threshold: float | None = None, reject: bool = True,
                   error_rate: float | None = None):
    from imgclf.engines.core import PredictRunner
    from imgclf.runtime.model import Model

    return PredictRunner(Model.load(model_dir), top_k, threshold=threshold, reject=reject, error_rate=error_rate)


def embed_runner(backbone):
    from imgclf.engines.core import EmbedRunner

    return EmbedRunner(backbone.onnx_path, backbone.preprocessing, encoder_name=backbone.encoder)
