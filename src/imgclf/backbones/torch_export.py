"""Build a timm backbone with its weights and export it to ONNX (the only torch code on the predict path's side)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from imgclf.errors import ImgclfError
from imgclf.files import atomic_directory
from imgclf.runtime.preprocessing import Preprocessing

_CLASSIFIER_KEYS = ("_fc.", "fc.", "classifier.", "head.fc.", "head.", "last_linear.")


def load_state_dict(path: Path) -> dict:
    """Tensors from a safetensors file or a state dict saved with ``torch.save`` (never unpickles code)."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:
            raise ImgclfError(f"cannot read weights {path.name}: {e}") from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ImgclfError(f"cannot load weights {path.name} safely (weights_only): {first}") from None
    for wrapper in ("state_dict", "model", "model_state_dict", "net"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ImgclfError(f"weights {path.name} is not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def apply_weights(model, state: dict, source: str) -> None:
    """Load ``state`` into ``model`` by name, or in order when names differ but shapes match."""
    target = model.state_dict()
    by_name = {k: v for k, v in state.items() if k in target}
    if len(by_name) == len(target) and all(by_name[k].shape == target[k].shape for k in target):
        model.load_state_dict(by_name, strict=True)
        return
    ordered = [(k, v) for k, v in state.items() if not k.startswith(_CLASSIFIER_KEYS)]
    if len(ordered) == len(target) and all(v.shape == t.shape for (_, v), t in zip(ordered, target.values())):
        model.load_state_dict({tk: v for tk, (_, v) in zip(target, ordered)}, strict=True)
        return
    missing = [k for k in target if k not in state][:3]
    raise ImgclfError(
        f"weights {source} do not fit this backbone ({len(state)} tensors, model needs {len(target)}; "
        f"e.g. missing {', '.join(missing)})"
    )


def build_model(timm_name: str, weights_path: Path | None):
    """A timm model without classifier, in eval mode, with weights loaded."""
    import timm

    if weights_path is None:
        if not hub_reachable():
            raise ImgclfError(
                f"no weights for backbone {timm_name}: pass --weights FILE (safetensors or state dict); "
                "the timm hub is not reachable from here (offline)"
            )
        try:
            model = timm.create_model(timm_name, pretrained=True, num_classes=0)
        except Exception as e:
            raise ImgclfError(
                f"no weights for backbone {timm_name}: pass --weights FILE (safetensors or state dict); "
                f"the timm hub is unreachable ({type(e).__name__})"
            ) from None
    else:
        model = timm.create_model(timm_name, pretrained=False, num_classes=0)
        apply_weights(model, load_state_dict(weights_path), weights_path.name)
    return model.eval()


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub (timm's weights source) can be reached, decided within ``timeout`` s."""
    import socket

    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or os.environ.get("IMGCLF_OFFLINE"):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def preprocessing_of(model) -> Preprocessing:
    import timm.data

    cfg = timm.data.resolve_data_config({}, model=model)
    size = cfg["input_size"][-1]
    return Preprocessing(
        input_size=int(size),
        crop_pct=float(cfg.get("crop_pct") or 0.875),
        interpolation=str(cfg.get("interpolation") or "bicubic"),
        mean=tuple(float(v) for v in cfg["mean"]),
        std=tuple(float(v) for v in cfg["std"]),
    )


def export_backbone(timm_name: str, weights_path: Path | None, out_dir: Path, builtin: bool = False) -> None:
    """Write ``backbone.onnx`` and ``backbone.json`` into ``out_dir`` atomically."""
    import torch

    model = build_model(timm_name, weights_path)
    pre = preprocessing_of(model)
    x = torch.zeros(2, 3, pre.input_size, pre.input_size)
    with torch.no_grad():
        dim = int(model(x).shape[1])
    with atomic_directory(out_dir) as tmp:
        onnx_path = tmp / "backbone.onnx"
        export_module(model, pre.input_size, onnx_path, ["embedding"])
        meta = {"timm_name": timm_name, "dim": dim, "preprocessing": pre.to_dict(), "onnx_bytes": onnx_path.stat().st_size}
        feature_map = pooled_feature_map(onnx_path, dim)
        if feature_map is not None:
            meta["feature_map"] = feature_map
        (tmp / "backbone.json").write_text(json.dumps(meta, indent=2))


def pooled_feature_map(onnx_path: Path, dim: int) -> str | None:
    """The tensor whose global average is the ``embedding`` output — the last feature map (N, dim, h, w) —
    when the graph ends in average pooling (then a linear head's class activation map is exact); else ``None``."""
    import onnx

    graph = onnx.load(str(onnx_path)).graph
    made_by = {out: node for node in graph.node for out in node.output}
    node = made_by.get("embedding")
    while node is not None and node.op_type in ("Reshape", "Flatten", "Squeeze", "Identity"):
        node = made_by.get(node.input[0])
    if node is None or node.op_type not in ("GlobalAveragePool", "ReduceMean"):
        return None
    if node.op_type == "ReduceMean":
        axes = [a.ints for a in node.attribute if a.name == "axes"]
        consts = {t.name: onnx.numpy_helper.to_array(t).tolist() for t in graph.initializer}
        consts.update({n.output[0]: onnx.numpy_helper.to_array(n.attribute[0].t).tolist()
                       for n in graph.node if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"})
        axes = list(axes[0]) if axes else consts.get(node.input[1]) if len(node.input) > 1 else None
        if sorted(a % 4 for a in axes or []) != [2, 3]:
            return None
    return node.input[0]


def export_module(module, input_size: int, onnx_path: Path, output_names: list[str], fast: bool = False) -> None:
    """Export ``module`` (``input`` (N, 3, S, S) → ``output_names``) to ONNX with a dynamic batch.

    By default torch's dynamo exporter, whose graphs run faster in ONNX Runtime but which
    takes seconds; ``fast`` (or the dynamo exporter's failure) uses the TorchScript exporter.
    """
    import contextlib
    import io
    import logging

    import torch

    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    x = torch.zeros(2, 3, input_size, input_size)
    names = {"input_names": ["input"], "output_names": output_names}
    if fast:
        _export_torchscript(module, x, onnx_path, names)
        return
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            program = torch.onnx.export(
                module, (x,), dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
                external_data=False, **names,
            )
            program.save(str(onnx_path), external_data=False)
        return
    except Exception:
        onnx_path.unlink(missing_ok=True)
    _export_torchscript(module, x, onnx_path, names)


def _export_torchscript(module, x, onnx_path: Path, names: dict) -> None:
    import contextlib
    import io
    import warnings

    import torch

    axes = {name: {0: "batch"} for name in [*names["input_names"], *names["output_names"]]}
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
        # chosen on purpose: seconds faster than the dynamo exporter, for graphs that live only while training
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based ONNX export", DeprecationWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        torch.onnx.export(module, (x,), str(onnx_path), dynamo=False, opset_version=17, dynamic_axes=axes, **names)
