"""ONNX Runtime sessions: the one place they are made, how bulk inference uses the cores, and encoders.

An encoder is a step outside ONNX between preprocessing and a backbone's graph (the face
descriptor of ``--backbone face``); most backbones have none.
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np

from imgclf.errors import ImgclfError


def cpu_count() -> int:
    """Cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def inference_plan() -> tuple[int, int]:
    """``(streams, threads)``: how bulk inference (embedding many photos) uses the cores.

    ``streams`` batches run concurrently, each in a session with ``threads`` intra-op
    threads: one single-threaded stream per core, at most 4 (each keeps its own
    activations). docs/benchmarks.md (Speed) compares this with one session on all cores.
    """
    cores = cpu_count()
    streams = min(cores, 4)
    return streams, max(1, cores // streams)


def create_session(onnx: str | os.PathLike | bytes, threads: int | None = None, spinning: bool = False):
    """An ONNX Runtime CPU session of an ONNX file (or its bytes) with all graph optimisations and ``threads`` intra-op threads.

    ``threads`` is capped at the cores this process may use. ONNX Runtime's idle threads
    sleep instead of spinning (``spinning=False``): the same cores decode photos, and a
    spinning thread would take a core from the decoder.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = min(threads or cpu_count(), cpu_count())
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(onnx if isinstance(onnx, bytes) else str(onnx), opts, providers=["CPUExecutionProvider"])


def _as_is(batch: np.ndarray) -> np.ndarray:
    return batch


def encoder(name: str | None) -> Callable[[np.ndarray], np.ndarray]:
    """The step between preprocessing and the ONNX graph of a backbone that is not all ONNX.

    ``name`` is :attr:`Backbone.encoder <imgclf.backbones.Backbone.encoder>` (also stored in a
    model's ``imgclf.json``); ``None``: the ONNX graph takes the preprocessed images as they are.
    """
    if name is None:
        return _as_is
    from imgclf import faces

    if name == faces.ENCODER:
        return faces.encode
    raise ImgclfError(f"unknown encoder {name!r}: this model needs a newer imgclf")
