"""Fuse a backbone's ONNX graph and a linear head into one self-contained ONNX model.

The fused model maps a preprocessed batch ``input`` (N, 3, S, S) to ``probabilities``
(N, classes) and also exposes the backbone's ``embedding`` (N, dim).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from imgclf.head import LinearHead

INPUT = "input"
PROBABILITIES = "probabilities"
EMBEDDING = "embedding"


def fuse(backbone_onnx: Path, head: LinearHead, labels: list[str], out_path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write the fused model to ``out_path``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(backbone_onnx))
    graph = model.graph
    emb_out = graph.output[0].name
    k = len(labels)
    graph.initializer.extend([
        numpy_helper.from_array(np.ascontiguousarray(head.weight.T, np.float32), "imgclf_head_weight"),
        numpy_helper.from_array(np.ascontiguousarray(head.bias, np.float32), "imgclf_head_bias"),
    ])
    graph.node.extend([
        helper.make_node("LpNormalization", [emb_out], ["imgclf_normalized"], axis=1, p=2),
        helper.make_node("MatMul", ["imgclf_normalized", "imgclf_head_weight"], ["imgclf_matmul"]),
        helper.make_node("Add", ["imgclf_matmul", "imgclf_head_bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], [PROBABILITIES], axis=1),
    ])
    batch = graph.input[0].type.tensor_type.shape.dim[0]
    batch_dim = batch.dim_param or "batch"
    if emb_out != EMBEDDING:
        graph.node.append(helper.make_node("Identity", [emb_out], [EMBEDDING]))
    old_emb = graph.output[0]
    del graph.output[:]
    graph.output.extend([
        helper.make_tensor_value_info(PROBABILITIES, TensorProto.FLOAT, [batch_dim, k]),
        helper.make_tensor_value_info(EMBEDDING, TensorProto.FLOAT, [d.dim_param or d.dim_value for d in old_emb.type.tensor_type.shape.dim]),
    ])
    meta = {"labels": json.dumps(labels), **(metadata or {})}
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "imgclf"
    onnx.checker.check_model(model)
    onnx.save(model, str(out_path))


SIMILARITY = "similarity"


def add_similarity(model_path: Path, reference, metadata: dict[str, str] | None = None) -> None:
    """Append the ``similarity`` output of :class:`imgclf.rejection.Reference` to ``embedding``, in place:
    the mean of the largest cosine similarity to a prototype and to a training photo."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(model_path))
    graph = model.graph
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    emb = next(o for o in graph.output if o.name == EMBEDDING)
    batch = emb.type.tensor_type.shape.dim[0]
    graph.initializer.extend([
        numpy_helper.from_array(np.ascontiguousarray(reference.prototypes.T, np.float32), "imgclf_prototypes"),
        numpy_helper.from_array(np.ascontiguousarray(reference.photos.T, np.float32), "imgclf_reference_photos"),
        numpy_helper.from_array(np.array(0.5, np.float32), "imgclf_half"),
    ])
    if opset >= 18:
        graph.initializer.append(numpy_helper.from_array(np.array([1], np.int64), "imgclf_axes"))

    def reduce_max(src: str, dst: str):
        if opset < 18:
            return helper.make_node("ReduceMax", [src], [dst], axes=[1], keepdims=0)
        return helper.make_node("ReduceMax", [src, "imgclf_axes"], [dst], keepdims=0)

    graph.node.extend([
        helper.make_node("LpNormalization", [EMBEDDING], ["imgclf_unit_embedding"], axis=1, p=2),
        helper.make_node("MatMul", ["imgclf_unit_embedding", "imgclf_prototypes"], ["imgclf_prototype_cosines"]),
        reduce_max("imgclf_prototype_cosines", "imgclf_prototype_similarity"),
        helper.make_node("MatMul", ["imgclf_unit_embedding", "imgclf_reference_photos"], ["imgclf_photo_cosines"]),
        reduce_max("imgclf_photo_cosines", "imgclf_photo_similarity"),
        helper.make_node("Add", ["imgclf_prototype_similarity", "imgclf_photo_similarity"], ["imgclf_similarity_sum"]),
        helper.make_node("Mul", ["imgclf_similarity_sum", "imgclf_half"], [SIMILARITY]),
    ])
    graph.output.append(helper.make_tensor_value_info(SIMILARITY, TensorProto.FLOAT, [batch.dim_param or batch.dim_value]))
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    onnx.save(model, str(model_path))
