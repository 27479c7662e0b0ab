"""The classifier as other runtimes get it: ``model.onnx`` cut down to what an app needs.

Kept: the input (N, 3, H, W), normalised as the sidecar says) and the outputs ``probabilities``,
``similarity`` (compare with the sidecar's ``threshold``: below it the answer is ``unknown``) and
``embedding`` (of a model that sees ten views of a photo, :mod:`imgclf.backbones.views`: their element-wise largest,
(N, dim), rather than the ten side by side). Left out: the class activation maps and the per-training-photo similarities
(explanations stay with imgclf). ``LpNormalization`` is spelled out as ``x / max(sqrt(sum(x²)), ε)``
so that converters without that operator (onnx2tf with TensorFlow 2.20 and later) take the graph.
"""

from __future__ import annotations

from pathlib import Path

from imgclf.runtime.artifact import EMBEDDING, POOLED_EMBEDDING, PROBABILITIES, SIMILARITY

#: The outputs every export carries, in this order.
OUTPUTS = (PROBABILITIES, SIMILARITY, EMBEDDING)
_EPS = 1e-12


def portable_graph(model_onnx: Path, out: Path) -> None:
    """Write the exported graph of ``model_onnx`` (a fused imgclf graph) to ``out``."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(model_onnx))
    graph = model.graph
    graph.initializer.extend([numpy_helper.from_array(np.array([1], np.int64), "imgclf_export_axes"),
                              numpy_helper.from_array(np.array(_EPS, np.float32), "imgclf_export_eps")])
    nodes = []
    for node in graph.node:
        if node.op_type == "LpNormalization" and _attribute(node, "p", 2) == 2 and _attribute(node, "axis", -1) in (1, -1):
            x, y = node.input[0], node.output[0]
            nodes += [helper.make_node("Mul", [x, x], [f"{y}_squares"]),
                      helper.make_node("ReduceSum", [f"{y}_squares", "imgclf_export_axes"], [f"{y}_sum"], keepdims=1),
                      helper.make_node("Sqrt", [f"{y}_sum"], [f"{y}_norm"]),
                      helper.make_node("Max", [f"{y}_norm", "imgclf_export_eps"], [f"{y}_safe_norm"]),
                      helper.make_node("Div", [x, f"{y}_safe_norm"], [y])]
        else:
            nodes.append(node)
    outputs = {o.name: o for o in graph.output}
    if any(POOLED_EMBEDDING in node.output for node in nodes):  # a views model: its pooled embedding is the one exported
        nodes = [n for n in nodes if EMBEDDING not in n.output] + [helper.make_node("Identity", [POOLED_EMBEDDING], [EMBEDDING])]
        width = next(i for i in graph.initializer if i.name == "imgclf_prototypes").dims[0]
        outputs[EMBEDDING] = helper.make_tensor_value_info(EMBEDDING, onnx.TensorProto.FLOAT, ["N", int(width)])
    missing = [name for name in OUTPUTS if name not in outputs]
    if missing:
        raise ValueError(f"{model_onnx} has no {', '.join(missing)} output")
    needed, kept = set(OUTPUTS), []
    for node in reversed(nodes):  # only what the kept outputs depend on
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    del graph.output[:]
    graph.output.extend(outputs[name] for name in OUTPUTS)
    initializers = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    onnx.save(model, str(out))  # checked by running it: every export's parity check


def _attribute(node, name: str, default):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default
