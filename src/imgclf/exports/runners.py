"""Run an exported classifier on a preprocessed batch (N, 3, H, W), whatever runs it:
``probabilities`` (N, labels) and ``similarity`` (N,), by name."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from imgclf.exports.graph import OUTPUTS

Runner = Callable[[np.ndarray], dict[str, np.ndarray]]


def onnx_runner(path: Path) -> Runner:
    from imgclf.runtime.session import create_session

    session = create_session(path, 1)
    name = session.get_inputs()[0].name

    def run(batch: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(OUTPUTS, session.run(list(OUTPUTS), {name: batch})))

    return run


def tflite_runner(path: Path, threads: int = 1) -> Runner:
    """The LiteRT interpreter on ``path``, through its ``serving_default`` signature; one photo per call, as apps run it."""
    from imgclf.exports.native import quiet_native

    with quiet_native():
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path), num_threads=threads)
    runner = interpreter.get_signature_runner("serving_default")

    def run(batch: np.ndarray) -> dict[str, np.ndarray]:
        rows = [runner(input=np.ascontiguousarray(x[None].transpose(0, 2, 3, 1))) for x in batch.astype(np.float32)]
        return _shaped({k: np.stack([np.asarray(r[k]).reshape(-1) for r in rows]) for k in OUTPUTS})

    return run


def saved_model_runner(path: Path) -> Runner:
    """TensorFlow's ``tf.saved_model.load`` on ``path``, through its ``serving_default`` signature."""
    from imgclf.exports.native import quiet_native

    with quiet_native():
        import tensorflow as tf

        serve = tf.saved_model.load(str(path)).signatures["serving_default"]

    def run(batch: np.ndarray) -> dict[str, np.ndarray]:
        out = serve(input=tf.constant(np.ascontiguousarray(batch.transpose(0, 2, 3, 1)), tf.float32))
        return _shaped({k: np.asarray(out[k]).reshape(len(batch), -1) for k in OUTPUTS})

    return run


def _shaped(out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rows of each output as the ONNX graph gives them: ``similarity`` one number a photo."""
    return {k: v[:, 0] if k == "similarity" else v for k, v in out.items()}
