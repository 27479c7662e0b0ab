"""The backbone of a model that answers several labels per photo: the photo seen whole and in parts.

One object of a photo can fill a small corner of it; the whole photo's embedding then hardly shows it. This backbone
takes the photo at twice the base backbone's side (``2S``) and shows the base network ten views of it: the whole
photo (averaged down to ``S``) and a 3 × 3 grid of half-size crops a quarter apart, each ``S`` pixels. The
element-wise largest of the ten views' embeddings is strong in any feature one view shows strongly, so a small object is
strong in it, and a label's score can be that of the one view that shows it (``benchmarks/multilabel.py``).

All of it is one ONNX graph built once from the base backbone's and cached under its own id (``<base id>-views<N>``),
so every place that runs a model — training, predict, the server, the engines and the exports — shows a photo the
same ten views. Its feature map (for class activation maps) is the whole view's.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from imgclf.files import atomic_directory

#: Bump when the graph below changes: a new id, so nothing stale is reused.
VIEWS_FORMAT = 3
#: The views' grid: ``GRID`` × ``GRID`` half-size crops, plus the whole photo.
GRID = 3
VIEWS = GRID * GRID + 1
#: The graph's tensor of every view's embedding, view-major (views · N, dim): what a fused model scores.
VIEW_ROWS = "imgclf_view_embeddings"
_INPUT = "input"


def with_views(base, cache_root: Path):
    """The views version of the :class:`~imgclf.backbones.Backbone` ``base``, built once and cached."""
    from imgclf.backbones.base import load_cached

    vid = f"{base.id}-views{VIEWS_FORMAT}"
    out_dir = Path(cache_root) / "backbones" / vid

    def load():
        bb = load_cached(out_dir, base.name, vid, base.timm_name, base.weights, base.weights_path)
        if bb is None:
            return None
        size = json.loads((out_dir / "backbone.json").read_text())["views"].get("map_size")
        return replace(bb, views=VIEWS, feature_map_size=tuple(size) if size else None)

    cached = load()
    if cached is None:
        _build(base, out_dir)
        cached = load()
    assert cached is not None, "the views backbone was not written"
    return cached


def _build(base, out_dir: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(base.onnx_path))
    graph = model.graph
    side = base.preprocessing.input_size
    inner_input, inner_output = "imgclf_views_batch", VIEW_ROWS
    old_input = graph.input[0].name
    for node in graph.node:
        node.input[:] = [inner_input if name == old_input else name for name in node.input]
        node.output[:] = [inner_output if name == "embedding" else name for name in node.output]
    step = side // 2
    nodes = [helper.make_node("AveragePool", [_INPUT], ["imgclf_view_whole"], kernel_shape=[2, 2], strides=[2, 2])]
    crops = ["imgclf_view_whole"]
    consts = [numpy_helper.from_array(np.array([2, 3], np.int64), "imgclf_view_axes")]
    for y in range(GRID):
        for x in range(GRID):
            starts, ends = f"imgclf_view_{y}{x}_starts", f"imgclf_view_{y}{x}_ends"
            consts += [numpy_helper.from_array(np.array([y * step, x * step], np.int64), starts),
                       numpy_helper.from_array(np.array([y * step + side, x * step + side], np.int64), ends)]
            nodes.append(helper.make_node("Slice", [_INPUT, starts, ends, "imgclf_view_axes"], [f"imgclf_view_{y}{x}"]))
            crops.append(f"imgclf_view_{y}{x}")
    nodes.append(helper.make_node("Concat", crops, [inner_input], axis=0))
    consts += [numpy_helper.from_array(np.array([VIEWS, -1, base.dim], np.int64), "imgclf_views_shape"),
               numpy_helper.from_array(np.array([-1, VIEWS * base.dim], np.int64), "imgclf_views_row"),
               numpy_helper.from_array(np.array([0], np.int64), "imgclf_views_axis0")]
    tail = [  # (10N, d) view-major → (N, 10 d), each photo's views side by side
        helper.make_node("Reshape", [inner_output, "imgclf_views_shape"], ["imgclf_views_stacked"]),
        helper.make_node("Transpose", ["imgclf_views_stacked"], ["imgclf_views_by_photo"], perm=[1, 0, 2]),
        helper.make_node("Reshape", ["imgclf_views_by_photo", "imgclf_views_row"], ["embedding"]),
    ]
    feature_map = base.feature_map  # every view's, view-major (10N, C, h, w): the fused graph places each view's map
    if feature_map:
        inferred = onnx.shape_inference.infer_shapes(model)
        dims = next((v.type.tensor_type.shape.dim for v in inferred.graph.value_info if v.name == feature_map), None)
        map_size = [d.dim_value for d in dims][2:] if dims is not None else []
        if len(map_size) != 2 or not all(map_size):
            feature_map = None  # the map's size is not fixed: no maps
    kept = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + kept + tail)
    graph.initializer.extend(consts)
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info(_INPUT, TensorProto.FLOAT, ["batch", 3, 2 * side, 2 * side]))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", VIEWS * base.dim]))
    onnx.checker.check_model(model)
    meta = json.loads((Path(base.onnx_path).parent / "backbone.json").read_text())
    with atomic_directory(out_dir) as tmp:
        onnx_path = tmp / "backbone.onnx"
        onnx.save(model, str(onnx_path))
        pre = replace(base.preprocessing, input_size=2 * side)
        meta.update(onnx_bytes=onnx_path.stat().st_size, dim=VIEWS * base.dim, id=f"{base.id}-views{VIEWS_FORMAT}", preprocessing=pre.to_dict(),
                    feature_map=feature_map, views={"count": VIEWS, "grid": GRID, "from": base.id,
                                                    "map_size": map_size if feature_map else None})
        (tmp / "backbone.json").write_text(json.dumps(meta, indent=2))


def split_views(x: np.ndarray, views: int = VIEWS) -> np.ndarray:
    """(N, views × d) embeddings of this backbone → (N, views, d)."""
    return x.reshape(len(x), views, -1)


def pooled(x: np.ndarray, views: int = VIEWS) -> np.ndarray:
    """(N, d): the element-wise largest of each photo's views' embeddings."""
    return split_views(x, views).max(1)
