"""ONNX Runtime sessions: the one place they are made, and how bulk inference uses the cores."""

from __future__ import annotations

import os


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
    session = ort.InferenceSession(onnx if isinstance(onnx, bytes) else str(onnx), opts, providers=["CPUExecutionProvider"])
    if isinstance(onnx, bytes) and hasattr(session, "_model_bytes"):
        # ONNX Runtime's Python wrapper keeps the bytes to re-create the session on another provider after a failure,
        # which a CPU session never does; kept, a model's bytes would stay in memory beside its graph for good
        session._model_bytes = None
    return session
