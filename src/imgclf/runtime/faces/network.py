"""dlib's face-recognition ResNet run by ONNX Runtime: the same 128-D descriptors as dlib's own, five times faster.

dlib-bin is built without a BLAS, and its network took 80–90 ms a face on one core here; the same network in ONNX
Runtime takes 7 ms (``benchmarks/face_speed.py``). The graph is built the first time it is needed from the face
extra's own weight file, ``dlib_face_recognition_resnet_model_v1.dat``: the layers are dlib's definition of the
network (:func:`layers`, as in dlib's ``face_recognition.cpp``), the weights are read from the file in the order
dlib writes them (each tensor a small header of dlib integers, then little-endian floats), each batch-norm is folded
into the convolution below it. The graph is then checked against dlib's own descriptor of a test chip, and kept in
imgclf's cache under the weight file's digest. Should any of this fail, dlib computes the descriptors as before.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

#: dlib's mean pixel (red, green, blue), subtracted before the pixels are divided by 256.
MEAN_RGB = (122.781998, 117.000999, 104.297997)
#: Largest difference from dlib's own descriptor of the test chip that the graph may show.
TOLERANCE = 1e-4
_VERSION = 1

_lock = threading.Lock()
_state: dict = {}


def layers() -> list[tuple]:
    """The network, input first: ``("con", filters, kernel, stride)`` (each followed by its batch-norm), ``("relu",)``,
    ``("max_pool", kernel, stride)``, ``("avg_pool", kernel, stride)``, ``("tag", i)`` (remember the current output as
    i), ``("skip", i)`` (go back to it), ``("add", i)`` (add it), ``("mean",)`` (over the image), ``("fc", outputs)``."""

    def block(n: int, stride: int) -> list[tuple]:
        return [("con", n, 3, stride), ("relu",), ("con", n, 3, 1)]

    def residual(n: int) -> list[tuple]:
        return [("tag", 1), *block(n, 1), ("add", 1), ("relu",)]

    def residual_down(n: int) -> list[tuple]:
        return [("tag", 1), *block(n, 2), ("tag", 2), ("skip", 1), ("avg_pool", 2, 2), ("add", 2), ("relu",)]

    net = [("con", 32, 7, 2), ("relu",), ("max_pool", 3, 2)]
    net += residual(32) * 3
    for n, repeats in ((64, 3), (128, 2), (256, 2)):
        net += residual_down(n) + residual(n) * repeats
    return net + residual_down(256) + [("mean",), ("fc", 128)]


def read_weights(data: bytes) -> list[np.ndarray]:
    """Each convolution's weights and biases, its batch-norm's scales and shifts, and the last layer's matrix, input
    first, as float32 vectors found in dlib's serialised network ``data``."""
    sizes, channels = [], 3
    for layer in layers():
        if layer[0] == "con":
            filters, kernel = layer[1], layer[2]
            sizes += [filters * channels * kernel * kernel + filters, 2 * filters]
            channels = filters
        elif layer[0] == "fc":
            sizes.append(channels * layer[1])
    out, at = [], 0
    for size in sizes:
        while True:
            at = data.find(b"\x01\x02", at)  # a tensor starts with its format version, 2, as a dlib integer
            if at < 0:
                raise ValueError(f"no tensor of {size} values after the previous one")
            dims, cursor = [], at + 2
            for _ in range(4):
                value, cursor = _dlib_int(data, cursor)
                if value is None:
                    break
                dims.append(value)
            if len(dims) == 4 and min(dims) >= 1 and int(np.prod(dims)) == size and cursor + 4 * size <= len(data):
                out.append(np.frombuffer(data, "<f4", size, cursor).astype(np.float32))
                at = cursor + 4 * size
                break
            at += 1
    return out


def _dlib_int(data: bytes, at: int) -> tuple[int | None, int]:
    """A non-negative integer as dlib writes it (a byte holding its length, then its bytes, little-endian)."""
    if at >= len(data):
        return None, at
    head = data[at]
    n = head & 0x0F
    if head & 0xF0 or n > 8:
        return None, at
    return int.from_bytes(data[at + 1:at + 1 + n], "little"), at + 1 + n


def build(data: bytes) -> bytes:
    """The ONNX graph ``pixels`` (N, 3, 150, 150), RGB in [0, 1] as imgclf preprocesses a chip → ``descriptor`` (N, 128)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = iter(read_weights(data))
    nodes, inits = [], []

    def const(value, dtype=np.float32) -> str:
        name = f"c{len(inits)}"
        inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def node(op: str, inputs: list[str], **attrs) -> str:
        out = f"t{len(nodes)}"
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    # dlib reads 8-bit pixels: back to them, then less dlib's mean pixel, over 256
    x = node("Round", [node("Mul", ["pixels", const(255.0)])])
    x = node("Div", [node("Sub", [x, const(np.array(MEAN_RGB).reshape(1, 3, 1, 1))]), const(256.0)])
    shape, tags = (3, 150, 150), {}
    for layer in layers():
        kind = layer[0]
        if kind == "con":
            filters, kernel, stride = layer[1:]
            pad = 0 if stride != 1 else kernel // 2  # dlib's default padding
            params, norm = next(weights), next(weights)
            w = params[: filters * shape[0] * kernel * kernel].reshape(filters, shape[0], kernel, kernel)
            gamma, beta = norm[:filters], norm[filters:]
            x = node("Conv", [x, const(w * gamma[:, None, None, None]), const(params[w.size:] * gamma + beta)],
                     kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad] * 4)
            shape = (filters, *((side + 2 * pad - kernel) // stride + 1 for side in shape[1:]))
        elif kind == "relu":
            x = node("Relu", [x])
        elif kind in ("max_pool", "avg_pool"):
            kernel, stride = layer[1:]
            x = node("MaxPool" if kind == "max_pool" else "AveragePool", [x], kernel_shape=[kernel, kernel], strides=[stride, stride])
            shape = (shape[0], *((side - kernel) // stride + 1 for side in shape[1:]))
        elif kind == "tag":
            tags[layer[1]] = (x, shape)
        elif kind == "skip":
            x, shape = tags[layer[1]]
        elif kind == "add":  # dlib adds tensors of different sizes as if the smaller were padded with zeros
            other, other_shape = tags[layer[1]]
            full = tuple(max(a, b) for a, b in zip(shape, other_shape))
            x = node("Add", [_padded(x, shape, full, node, const), _padded(other, other_shape, full, node, const)])
            shape = full
        elif kind == "mean":
            x = node("Flatten", [node("GlobalAveragePool", [x])])
            shape = (shape[0],)
        elif kind == "fc":
            x = node("MatMul", [x, const(next(weights).reshape(shape[0], layer[1]))])
    nodes[-1].output[0] = "descriptor"
    graph = helper.make_graph(nodes, "dlib_face_recognition_resnet_model_v1",
                              [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 3, 150, 150])],
                              [helper.make_tensor_value_info("descriptor", TensorProto.FLOAT, ["N", 128])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="imgclf")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _padded(x: str, shape: tuple, full: tuple, node, const) -> str:
    if shape == full:
        return x
    return node("Pad", [x, const([0, 0, 0, 0, 0, *(f - s for f, s in zip(full, shape))], np.int64)])


def test_chip() -> np.ndarray:
    """A (150, 150, 3) chip of colour ramps, on which the graph must give dlib's own descriptor."""
    r, c = np.mgrid[0:150, 0:150]
    return np.stack([(r * 7 + c) % 256, (r * 3 + c * 5) % 256, (r + c * 2) % 256], axis=-1).astype(np.uint8)


def session(weights: Path, dlib_descriptor):
    """An ONNX Runtime session of the network of ``weights`` (built once and cached), or None when it cannot be built
    or differs from ``dlib_descriptor(chip)`` (dlib's own) by more than :data:`TOLERANCE`."""
    with _lock:
        if weights not in _state:
            _state[weights] = _load(weights, dlib_descriptor)
        return _state[weights]


def graph_path(weights: Path) -> Path:
    """Where the graph built from ``weights`` is kept: imgclf's cache, under the weight file's digest."""
    from imgclf.files import default_cache_dir, file_sha256

    return default_cache_dir() / "faces" / f"dlib-resnet-{file_sha256(weights, follow_links=True)[:16]}-v{_VERSION}.onnx"


def _load(weights: Path, dlib_descriptor):
    from imgclf.files import write_bytes_atomic
    from imgclf.runtime.session import create_session

    try:
        path = graph_path(weights)
        if not path.is_file():
            write_bytes_atomic(path, build(weights.read_bytes()), durable=False)
        run = create_session(path, threads=1)
        chip = test_chip()
        ours = run.run(None, {"pixels": (chip.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]})[0][0]
        if np.abs(ours - np.asarray(dlib_descriptor(chip), np.float32)).max() > TOLERANCE:
            return None
        return run
    except Exception:  # whatever failed (a weight file it cannot read, a damaged cached graph), dlib does the work
        return None
