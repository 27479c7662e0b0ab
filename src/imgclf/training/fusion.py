"""Fuse a backbone's ONNX graph, a linear head and the "unknown" score into one self-contained ONNX model.

The fused model maps a preprocessed batch ``input`` (N, 3, S, S) — or a face descriptor
(N, 128) — to ``embedding`` (N, dim), ``probabilities`` (N, classes) and ``similarity`` (N),
and, when the backbone's last feature map is known, ``cam`` (N, classes, h, w).

The backbone's graph is never parsed: protobuf merges a message with fields appended after
it (repeated fields are extended, singular ones replaced), so the new nodes, weights,
outputs and metadata are encoded here and appended to the backbone file's bytes. That keeps
the ``onnx`` package (half a second to import) off every training run; the tests load the
fused files with ``onnx`` and its checker.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from imgclf.backbones.views import VIEW_ROWS
from imgclf.heads.linear import LinearHead
from imgclf.runtime.artifact import (CAM, EMBEDDING, PHOTO_SIMILARITIES, POOLED_EMBEDDING, PROBABILITIES, REFERENCE_COORDS,
                                    SIMILARITY)
_FLOAT, _INT64 = 1, 7  # TensorProto.DataType
_ATTR_INT, _ATTR_INTS, _ATTR_STRING = 2, 7, 3  # AttributeProto.AttributeType
_NEAREST = b"nearest"  # a string attribute's value


def fuse(backbone_onnx: Path, head: LinearHead, labels: list[str], out_path: Path, metadata: dict[str, str] | None = None,
         feature_map: str | None = None) -> None:
    """Write ``backbone_onnx`` (whose output is ``embedding``) plus the head's ``probabilities`` to ``out_path``;
    with ``feature_map`` (the tensor whose spatial mean is ``embedding``) also the :data:`CAM` output."""
    k = len(labels)
    nodes = [
        _node("LpNormalization", [EMBEDDING], ["imgclf_normalized"], axis=1, p=2),
        _node("MatMul", ["imgclf_normalized", "imgclf_head_weight"], ["imgclf_matmul"]),
        _node("Add", ["imgclf_matmul", "imgclf_head_bias"], ["logits"]),
        _node("Softmax", ["logits"], [PROBABILITIES], axis=1),
    ]
    weights = [_tensor("imgclf_head_weight", head.weight.T.astype(np.float32)), _tensor("imgclf_head_bias", head.bias.astype(np.float32))]
    outputs = [_value_info(PROBABILITIES, ["N", k])]
    if feature_map is not None:
        data = Path(backbone_onnx).read_bytes()
        nodes += [  # cam = conv1x1(feature map, W) / ||embedding||, as the head sees the unit embedding
            _node("Conv", [feature_map, "imgclf_cam_kernel"], ["imgclf_cam_raw"], kernel_shape=[1, 1]),
            _reduce("ReduceL2", EMBEDDING, "imgclf_cam_norm", _opset(data) >= 18, keepdims=1),
            _node("Reshape", ["imgclf_cam_norm", "imgclf_cam_shape"], ["imgclf_cam_norm4"]),
            _node("Div", ["imgclf_cam_raw", "imgclf_cam_norm4"], [CAM]),
        ]
        weights += [_tensor("imgclf_cam_kernel", np.ascontiguousarray(head.weight.astype(np.float32)[:, :, None, None])),
                    _tensor("imgclf_cam_shape", np.array([-1, 1, 1, 1], np.int64))]
        if _opset(data) >= 18:
            weights.append(_tensor("imgclf_cam_axes", np.array([1], np.int64)))
        outputs.append(_value_info(CAM, ["N", k, "H", "W"]))
    patch = _graph(nodes, weights, outputs)
    meta = {"labels": json.dumps(labels), **(metadata or {})}
    Path(out_path).write_bytes(Path(backbone_onnx).read_bytes() + _model(patch, meta, producer="imgclf"))


def fuse_views(backbone_onnx: Path, heads, labels: list[str], out_path: Path, metadata: dict[str, str] | None = None,
               feature_map: str | None = None, map_size: tuple[int, int] | None = None) -> str:
    """Write a views backbone (:mod:`imgclf.backbones.views`: ``embedding`` is (N, views × dim)) plus
    :class:`~imgclf.heads.sigmoid.SigmoidHeads` to ``out_path``: each view scored, a label's logit ``mix`` times its best
    view's plus ``1 - mix`` times the pooled views', ``probabilities`` its sigmoid (one independent probability per
    label); with ``feature_map`` (every view's, of ``map_size``) also :data:`CAM` (:func:`_views_cam`). Returns the name
    of the views' element-wise largest embedding, which the "unknown" rule compares."""
    data = Path(backbone_onnx).read_bytes()
    new = _opset(data) >= 18
    k, views, dim = len(labels), heads.views, heads.weight.shape[1]
    pooled = POOLED_EMBEDDING

    def reduce(op: str, src: str, dst: str, axes: list[int], keepdims: int) -> bytes:
        return _reduce(op, src, dst, new, keepdims, axes, _axes_name(axes))

    nodes = [  # every view's embedding, view-major (views · N, dim), as the views backbone computes them
        _node("LpNormalization", [VIEW_ROWS], ["imgclf_each_view_unit"], axis=1, p=2),
        _node("MatMul", ["imgclf_each_view_unit", "imgclf_head_weight"], ["imgclf_view_matmul"]),
        _node("Add", ["imgclf_view_matmul", "imgclf_head_bias"], ["imgclf_view_logits"]),
        _node("Reshape", ["imgclf_view_logits", "imgclf_view_logit_shape"], ["imgclf_view_logits_by_view"]),
        reduce("ReduceMax", "imgclf_view_logits_by_view", "imgclf_best_view_logits", [0], 0),
        _node("Reshape", [VIEW_ROWS, "imgclf_view_embedding_shape"], ["imgclf_fused_views"]),
        reduce("ReduceMax", "imgclf_fused_views", pooled, [0], 0),
        # mix × the best view's logits + (1 − mix) × the pooled views' (heads.mix, chosen out of fold)
        _node("LpNormalization", [pooled], ["imgclf_pooled_unit"], axis=1, p=2),
        _node("MatMul", ["imgclf_pooled_unit", "imgclf_head_weight"], ["imgclf_pooled_matmul"]),
        _node("Add", ["imgclf_pooled_matmul", "imgclf_head_bias"], ["imgclf_pooled_logits"]),
        _node("Mul", ["imgclf_best_view_logits", "imgclf_mix"], ["imgclf_best_view_part"]),
        _node("Mul", ["imgclf_pooled_logits", "imgclf_unmix"], ["imgclf_pooled_part"]),
        _node("Add", ["imgclf_best_view_part", "imgclf_pooled_part"], ["logits"]),
        _node("Sigmoid", ["logits"], [PROBABILITIES]),
    ]
    weights = [_tensor("imgclf_head_weight", np.ascontiguousarray(heads.weight.T, np.float32)),
               _tensor("imgclf_head_bias", heads.bias.astype(np.float32)),
               _tensor("imgclf_view_logit_shape", np.array([views, -1, k], np.int64)),
               _tensor("imgclf_view_embedding_shape", np.array([views, -1, dim], np.int64)),
               _tensor("imgclf_mix", np.array(heads.mix, np.float32)),
               _tensor("imgclf_unmix", np.array(1.0 - heads.mix, np.float32))]
    axes = {(0,)}
    outputs = [_value_info(PROBABILITIES, ["N", k])]
    if feature_map is not None:
        cam_nodes, cam_weights = _views_cam(feature_map, heads.weight, views, map_size, reduce)
        nodes += cam_nodes
        weights += cam_weights
        axes.update({(1,), (2, 3)})
        outputs.append(_value_info(CAM, ["N", k, 4 * map_size[0], 4 * map_size[1]]))
    if new:
        weights += [_tensor(_axes_name(a), np.array(a, np.int64)) for a in sorted(axes)]
    meta = {"labels": json.dumps(labels), **(metadata or {})}
    Path(out_path).write_bytes(data + _model(_graph(nodes, weights, outputs), meta, producer="imgclf"))
    return pooled


def _views_cam(feature_map: str, weight: np.ndarray, views: int, map_size: tuple[int, int], reduce) -> tuple[list, list]:
    """The nodes of a views model's :data:`CAM` (N, labels, 4h, 4w): each view's logit for the label, varied across the
    view by its class activation map (less the map's mean), placed where the view lies on a grid of quarter cells — a
    half-size crop at twice the scale, the whole photo at four times — and at each place the largest over the views
    that cover it. A label a small part of the photo shows is hot there and nowhere else."""
    h, w = map_size
    k = weight.shape[0]
    grid = int(round((views - 1) ** 0.5))
    nodes = [
        _node("Conv", [feature_map, "imgclf_cam_kernel"], ["imgclf_cam_raw"], kernel_shape=[1, 1]),
        reduce("ReduceMean", "imgclf_cam_raw", "imgclf_cam_mean", [2, 3], 1),
        _node("Sub", ["imgclf_cam_raw", "imgclf_cam_mean"], ["imgclf_cam_spread"]),
        reduce("ReduceMean", feature_map, "imgclf_view_embedding", [2, 3], 0),
        reduce("ReduceL2", "imgclf_view_embedding", "imgclf_cam_norm", [1], 1),
        _node("Max", ["imgclf_cam_norm", "imgclf_cam_least_norm"], ["imgclf_cam_safe_norm"]),
        _node("Reshape", ["imgclf_cam_safe_norm", "imgclf_cam_shape"], ["imgclf_cam_norm4"]),
        _node("Div", ["imgclf_cam_spread", "imgclf_cam_norm4"], ["imgclf_cam_detail"]),
        # each view's logits, view-major as the feature map is: (views · N, K) → (views · N, K, 1, 1)
        _node("Reshape", ["imgclf_view_logits", "imgclf_cam_logit_shape"], ["imgclf_cam_logits"]),
        _node("Add", ["imgclf_cam_detail", "imgclf_cam_logits"], ["imgclf_view_cams"]),
        _node("Reshape", ["imgclf_view_cams", "imgclf_view_cams_shape"], ["imgclf_view_cams_by_view"]),
    ]
    weights = [_tensor("imgclf_cam_kernel", np.ascontiguousarray(weight.astype(np.float32)[:, :, None, None])),
               _tensor("imgclf_cam_shape", np.array([-1, 1, 1, 1], np.int64)),
               _tensor("imgclf_cam_least_norm", np.array(1.0, np.float32)),  # a blank view's tiny features stay tiny
               _tensor("imgclf_cam_logit_shape", np.array([-1, k, 1, 1], np.int64)),
               _tensor("imgclf_view_cams_shape", np.array([views, -1, k, h, w], np.int64)),
               _tensor("imgclf_cam_roi", np.zeros(0, np.float32)),
               _tensor("imgclf_cam_scale2", np.array([1, 1, 2, 2], np.float32)),
               _tensor("imgclf_cam_scale4", np.array([1, 1, 4, 4], np.float32)),
               _tensor("imgclf_cam_axis0", np.array([0], np.int64)),
               _tensor("imgclf_cam_floor", np.array(-1e4, np.float32))]
    placed = []
    for v in range(views):
        one = f"imgclf_cam_view{v}"
        nodes += [_node("Slice", ["imgclf_view_cams_by_view", f"imgclf_cam_at{v}", f"imgclf_cam_to{v}", "imgclf_cam_axis0"],
                        [one + "_5d"]),
                  _node("Squeeze", [one + "_5d", "imgclf_cam_axis0"], [one])]
        weights += [_tensor(f"imgclf_cam_at{v}", np.array([v], np.int64)), _tensor(f"imgclf_cam_to{v}", np.array([v + 1], np.int64))]
        if v == 0:  # the whole photo: four times its map's cells
            nodes.append(_node("Resize", [one, "imgclf_cam_roi", "imgclf_cam_scale4"], [one + "_placed"], mode=_NEAREST))
        else:  # a half-size crop at row y, column x of the grid, a quarter of the photo apart
            y, x = divmod(v - 1, grid)
            pads = [0, 0, y * h, x * w, 0, 0, (grid - 1 - y) * h, (grid - 1 - x) * w]
            nodes += [_node("Resize", [one, "imgclf_cam_roi", "imgclf_cam_scale2"], [one + "_big"], mode=_NEAREST),
                      _node("Pad", [one + "_big", f"imgclf_cam_pads{v}", "imgclf_cam_floor"], [one + "_placed"])]
            weights.append(_tensor(f"imgclf_cam_pads{v}", np.array(pads, np.int64)))
        placed.append(one + "_placed")
    nodes.append(_node("Max", placed, [CAM]))
    return nodes, weights


def add_similarity(model_path: Path, reference, metadata: dict[str, str] | None = None, embedding: str = EMBEDDING) -> None:
    """Append the ``similarity`` output of :class:`imgclf.heads.rejection.Reference` to ``embedding`` (the graph's
    output of that name, or the tensor a fusion names), in place: the mean of the largest cosine similarity to a
    prototype and to a training photo (and ``photo_similarities``), or for a reference without photos the largest
    cosine to a prototype."""
    data = Path(model_path).read_bytes()
    new_reduce = _opset(data) >= 18  # ReduceMax takes its axes as an input from opset 18 on

    def reduce_max(src: str, dst: str) -> bytes:
        return _reduce("ReduceMax", src, dst, new_reduce, axes_name="imgclf_axes")

    nodes = [
        _node("LpNormalization", [embedding], ["imgclf_unit_embedding"], axis=1, p=2),
        _node("MatMul", ["imgclf_unit_embedding", "imgclf_prototypes"], ["imgclf_prototype_cosines"]),
    ]
    if not reference.keeps_photos:  # train --private: the nearest prototype alone, no photo in the graph
        nodes.append(reduce_max("imgclf_prototype_cosines", SIMILARITY))
        weights = [_tensor("imgclf_prototypes", np.ascontiguousarray(reference.prototypes.T, np.float32))]
        if new_reduce:
            weights.append(_tensor("imgclf_axes", np.array([1], np.int64)))
        patch = _graph(nodes, weights, [_value_info(SIMILARITY, ["N"])])
        Path(model_path).write_bytes(data + _model(patch, metadata or {}))
        return
    nodes += [
        reduce_max("imgclf_prototype_cosines", "imgclf_prototype_similarity"),
        _node("MatMul", ["imgclf_unit_embedding", "imgclf_reference_basis"], ["imgclf_photo_coords"]),
        _node("MatMul", ["imgclf_photo_coords", REFERENCE_COORDS], ["imgclf_photo_cosines"]),
        reduce_max("imgclf_photo_cosines", "imgclf_photo_similarity"),
        _node("Add", ["imgclf_prototype_similarity", "imgclf_photo_similarity"], ["imgclf_similarity_sum"]),
        _node("Mul", ["imgclf_similarity_sum", "imgclf_half"], [SIMILARITY]),
        _node("Identity", ["imgclf_photo_cosines"], [PHOTO_SIMILARITIES]),
    ]
    weights = [
        _tensor("imgclf_prototypes", np.ascontiguousarray(reference.prototypes.T, np.float32)),
        _tensor("imgclf_reference_basis", np.ascontiguousarray(reference.basis, np.float32)),
        _tensor(REFERENCE_COORDS, np.ascontiguousarray(reference.coords, np.float32)),
        _tensor("imgclf_half", np.array(0.5, np.float32)),
    ]
    if new_reduce:
        weights.append(_tensor("imgclf_axes", np.array([1], np.int64)))
    outputs = [_value_info(SIMILARITY, ["N"]), _value_info(PHOTO_SIMILARITIES, ["N", reference.coords.shape[1]])]
    patch = _graph(nodes, weights, outputs)
    Path(model_path).write_bytes(data + _model(patch, metadata or {}))


def _reduce(op: str, src: str, dst: str, axes_as_input: bool, keepdims: int = 0, axes=(1,),
            axes_name: str = "imgclf_cam_axes") -> bytes:
    """``op`` over ``axes``: from opset 18 on an input, the initializer ``axes_name``; before, an attribute."""
    if axes_as_input:
        return _node(op, [src, axes_name], [dst], keepdims=keepdims)
    return _node(op, [src], [dst], axes=list(axes), keepdims=keepdims)


def _axes_name(axes) -> str:
    """The initializer holding ``axes`` in a views fusion (one per set of axes it reduces over)."""
    return f"imgclf_axes_{'_'.join(map(str, axes))}"


# --- protobuf encoding of the few ONNX messages appended above (field numbers from onnx.proto) ---


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64 values are ten-byte varints
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, value) -> bytes:
    """One field: an int (varint), or bytes / str / an encoded message (length-delimited)."""
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _node(op: str, inputs: list[str], outputs: list[str], **attrs) -> bytes:
    out = b"".join(_field(1, i) for i in inputs) + b"".join(_field(2, o) for o in outputs) + _field(4, op)
    for name, value in attrs.items():
        if isinstance(value, bytes):
            attr = _field(1, name) + _field(4, value) + _field(20, _ATTR_STRING)
        elif isinstance(value, list):
            attr = _field(1, name) + b"".join(_field(8, v) for v in value) + _field(20, _ATTR_INTS)
        else:
            attr = _field(1, name) + _field(3, int(value)) + _field(20, _ATTR_INT)
        out += _field(5, attr)
    return out


def _tensor(name: str, array: np.ndarray) -> bytes:
    kind = {np.dtype(np.float32): _FLOAT, np.dtype(np.int64): _INT64}[array.dtype]
    raw = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
    return b"".join(_field(1, int(d)) for d in array.shape) + _field(2, kind) + _field(8, name) + _field(9, raw)


def _value_info(name: str, dims: list) -> bytes:
    shape = b"".join(_field(1, _field(2, d) if isinstance(d, str) else _field(1, int(d))) for d in dims)
    tensor_type = _field(1, _FLOAT) + _field(2, shape)
    return _field(1, name) + _field(2, _field(1, tensor_type))


def _graph(nodes: list[bytes], initializers: list[bytes], outputs: list[bytes]) -> bytes:
    return b"".join(_field(1, n) for n in nodes) + b"".join(_field(5, t) for t in initializers) + b"".join(_field(12, o) for o in outputs)


def _model(graph: bytes, metadata: dict[str, str], producer: str | None = None) -> bytes:
    out = _field(7, graph) + b"".join(_field(14, _field(1, k) + _field(2, v)) for k, v in metadata.items())
    return out + (_field(2, producer) if producer else b"")


def _opset(data: bytes) -> int:
    """The default-domain opset of a serialized ModelProto (its top-level fields only are read)."""
    version, pos = 0, 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _read_varint(data, pos)
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            if number == 8:  # opset_import: OperatorSetIdProto(domain = 1, version = 2)
                domain, v = _opset_entry(data[pos : pos + length])
                if domain in ("", "ai.onnx"):
                    version = max(version, v)
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unexpected protobuf wire type {wire} in an ONNX model")
    return version


def _opset_entry(data: bytes) -> tuple[str, int]:
    domain, version, pos = "", 0, 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        if key & 7 == 2:
            length, pos = _read_varint(data, pos)
            if key >> 3 == 1:
                domain = data[pos : pos + length].decode("utf-8")
            pos += length
        else:
            value, pos = _read_varint(data, pos)
            if key >> 3 == 2:
                version = value
    return domain, version


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7

