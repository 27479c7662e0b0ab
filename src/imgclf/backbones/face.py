"""The ``face`` backbone: dlib's 128-D face descriptor (:mod:`imgclf.runtime.faces`) behind a pass-through ONNX graph.

The descriptor is computed outside ONNX Runtime (the backbone's ``encoder``); the graph
only passes it on, so the fused ``model.onnx`` (head and "unknown" rule on the descriptor)
is built, stored and read like any other backbone's.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from imgclf.files import atomic_directory
from imgclf.runtime.preprocessing import Preprocessing

if TYPE_CHECKING:
    from imgclf.backbones.base import Backbone

_FORMAT = 1


def resolve_face(cache_root: Path) -> "Backbone":
    """The face backbone; its pass-through graph is written to ``cache_root`` once."""
    from imgclf.files.digests import file_sha256
    from imgclf.backbones.base import FACE, Backbone
    from imgclf.runtime.faces import CHIP_SIZE, DIM, ENCODER, SAME_PERSON_SIMILARITY, model_file

    weights = model_file("encoder")
    backbone_id = f"{FACE}-{file_sha256(weights, follow_links=True)[:16]}-e{_FORMAT}"
    out_dir = cache_root / "backbones" / backbone_id
    onnx_path = out_dir / "backbone.onnx"
    if not onnx_path.is_file():
        with atomic_directory(out_dir) as tmp:
            write_passthrough(tmp / "backbone.onnx", DIM)
    return Backbone(
        name=FACE,
        id=backbone_id,
        timm_name="",
        weights=f"face_recognition_models ({weights.name})",
        onnx_path=onnx_path,
        # the aligned chip, scaled to [0, 1]; the encoder takes it back to 8-bit pixels
        preprocessing=Preprocessing(input_size=CHIP_SIZE, crop_pct=1.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), crop="face_chip"),
        dim=DIM,
        min_similarity=SAME_PERSON_SIMILARITY,
        encoder=ENCODER,
    )


def write_passthrough(path: Path, dim: int) -> None:
    """An ONNX graph ``input`` (N, dim) → ``embedding`` (N, dim)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["embedding"])],
        "imgclf_face_descriptor",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", dim])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="imgclf")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
