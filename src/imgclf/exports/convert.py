"""ONNX → TensorFlow SavedModel → TensorFlow Lite (the ``tflite`` extra).

onnx2tf turns the ONNX graph into a SavedModel with the input channels last (NHWC, as TensorFlow
and LiteRT take it), but names its outputs ``output_0``, ``output_1``, … in an order of its own.
imgclf tells them apart by running it beside the ONNX graph on real photos, and saves a SavedModel
whose ``serving_default`` signature answers ``probabilities``, ``similarity`` and ``embedding`` by
name. TensorFlow's own converter makes the ``.tflite`` from it (float32, or with ``calibration``
int8 weights and activations with float32 input and output, so an app feeds both the same).

The one weight that grows with the training photos (:data:`~imgclf.runtime.artifact.REFERENCE_COORDS`)
does not go through onnx2tf, which holds many copies of every weight while it converts (at 20,000
photos that alone cost 570 MB more than at 1,000): it becomes an input of the ONNX graph, and the
named SavedModel feeds it from a variable of its own, which TensorFlow's converter folds back in.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgclf.errors import ImgclfError
from imgclf.runtime.artifact import REFERENCE_COORDS

#: What to install for ``--format tflite`` and ``--format saved_model``.
INSTALL = "pip install 'imgclf[tflite]'"


@dataclass
class Converted:
    saved_model: Path
    tflite: Path
    int8: Path | None
    seconds: float


def require_converter(option: str) -> None:
    """One line naming the extra when onnx2tf, TensorFlow or LiteRT is not installed."""
    import importlib.util

    missing = [name for name in ("onnx2tf", "tensorflow", "ai_edge_litert") if importlib.util.find_spec(name) is None]
    if missing:
        raise ImgclfError(f"{option} needs {', '.join(missing)}: {INSTALL}")


def convert(onnx_path: Path, workdir: Path, probe: np.ndarray, calibration: np.ndarray | None = None) -> Converted:
    """Convert ``onnx_path`` (a :func:`~imgclf.exports.graph.portable_graph`) in ``workdir``. ``probe``: a few
    preprocessed photos (N, 3, H, W) to match the outputs by; ``calibration``: photos for int8 (same layout)."""
    from imgclf.exports.native import quiet_native
    from imgclf.exports.runners import onnx_runner

    start = time.perf_counter()
    reference = onnx_runner(onnx_path)(probe)
    with quiet_native():
        import onnx
        import onnx2tf
        import tensorflow as tf

        raw = workdir / "onnx2tf"
        graph = onnx.load(str(onnx_path))
        lifted = _lift(graph, REFERENCE_COORDS)
        try:
            onnx2tf.convert(onnx_graph=graph, output_folder_path=str(raw), output_signaturedefs=True, non_verbose=True)
        except Exception as e:
            raise ImgclfError(f"onnx2tf could not convert the model: {type(e).__name__}: {e}") from None
        del graph
        loaded = tf.saved_model.load(str(raw))
        got = loaded.signatures["serving_default"](input=tf.constant(_channels_last(probe)), **{k: tf.constant(v) for k, v in lifted.items()})
        names = _match(reference, {k: v.numpy() for k, v in got.items()})
        named = workdir / "saved_model"
        _save_named(tf, loaded, names, probe.shape[1:], named, lifted)
        del loaded, got, lifted
        gc.collect()  # TensorFlow's copies of the weights go before the converter makes its own
        tflite = workdir / "classifier.tflite"
        tflite.write_bytes(_tflite(tf, named))
        int8 = None
        if calibration is not None:
            int8 = workdir / "classifier-int8.tflite"
            int8.write_bytes(_tflite(tf, named, _channels_last(calibration)))
    return Converted(named, tflite, int8, time.perf_counter() - start)


def _lift(graph, name: str) -> dict[str, np.ndarray]:
    """Turn the weight ``name`` of ``graph`` (an ``onnx.ModelProto``, changed in place) into an input of the same
    name; ``{name: its values}``, or ``{}`` when the graph has no such weight."""
    from onnx import helper, numpy_helper

    for init in graph.graph.initializer:
        if init.name == name:
            values = numpy_helper.to_array(init)
            graph.graph.initializer.remove(init)
            graph.graph.input.append(helper.make_tensor_value_info(name, init.data_type, list(values.shape)))
            return {name: values}
    return {}


def _channels_last(batch: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(batch.transpose(0, 2, 3, 1), dtype=np.float32)


def _match(reference: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> dict[str, str]:
    """Which of onnx2tf's outputs is which of ours: the one whose values are ours on the probe photos."""
    names: dict[str, str] = {}
    for name, want in reference.items():
        for key, value in got.items():
            if key not in names.values() and value.size == want.size and np.allclose(value.reshape(want.shape), want, atol=1e-3):
                names[name] = key
                break
        else:
            raise ImgclfError(f"the converted model has no output that matches {name!r}: onnx2tf changed the graph's answers")
    return names


def _save_named(tf, loaded, names: dict[str, str], chw: tuple[int, ...], out: Path, lifted: dict[str, np.ndarray]) -> None:
    """A SavedModel whose ``serving_default`` takes ``input`` (N, H, W, C) and answers our outputs by name,
    feeding the converted graph's other inputs from ``lifted``."""
    channels, height, width = chw

    class Classifier(tf.Module):
        def __init__(self):
            super().__init__()
            self.converted = loaded
            self.weights = {name: tf.Variable(values, trainable=False, name=name) for name, values in lifted.items()}

        @tf.function(input_signature=[tf.TensorSpec([None, height, width, channels], tf.float32, name="input")])
        def serve(self, input):  # noqa: A002  (the signature's argument name is what apps call it with)
            out = self.converted.signatures["serving_default"](input=input, **self.weights)
            return {name: tf.identity(out[key], name=name) for name, key in names.items()}

    module = Classifier()
    tf.saved_model.save(module, str(out), signatures={"serving_default": module.serve})


def _tflite(tf, saved_model: Path, calibration: np.ndarray | None = None) -> bytes:
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=["serving_default"])
    if calibration is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ({"input": x[None]} for x in calibration)
    try:
        return converter.convert()
    except Exception as e:
        raise ImgclfError(f"TensorFlow Lite could not convert the model: {type(e).__name__}: {e}") from None
