"""Backbones: named feature extractors, exported once to ONNX and cached.

:func:`resolve` turns a name (a built-in such as ``efficientnet_lite0``, or any timm
model name) plus optional weights file into a ready :class:`Backbone`. The default
backbone's ONNX export ships inside imgclf (``shipped/``, written by
``scripts/export_backbone.py``), so the default path needs neither torch nor timm; every
other backbone is exported once with the ``torch`` extra and cached.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Sequence

from imgclf.backbones.base import (  # noqa: F401 (the registry is read through this package)
    BUILTINS, DEFAULT_BACKBONE, FACE, SHIPPED_DIR, TORCH_EXTRA, Backbone, Builtin, builtin_weights_file, load_cached, make_id,
    require_torch,
)
from imgclf.errors import ImgclfError
from imgclf.files.digests import file_sha256


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
        from imgclf.files.locations import default_cache_dir

        fp = resolve(name, weights, cache_dir, log)
        root = Path(cache_dir) if cache_dir else default_cache_dir()
        return quantized(fp, [Path(p) for p in calibration or ()], root, log)
    from imgclf.files.locations import default_cache_dir

    cache_root = Path(cache_dir) if cache_dir else default_cache_dir()
    timm_name = BUILTINS[name].timm_name if name in BUILTINS else name
    if weights is not None:
        weights_path = Path(weights)
        if not weights_path.is_file():
            raise ImgclfError(f"weights file not found: {weights}")
        weights_desc = weights_path.name
        key = file_sha256(weights_path, follow_links=True)[:16]
    elif name in BUILTINS and (shipped := _shipped(name)) is not None:
        return shipped
    elif name in BUILTINS:
        weights_path = builtin_weights_file(name)
        weights_desc = f"{BUILTINS[name].package} ({weights_path.name})"
        key = file_sha256(weights_path, follow_links=True)[:16]
    else:
        weights_path = None
        weights_desc = "timm hub (pretrained)"
        key = "hub"
    backbone_id = make_id(name, key)
    out_dir = cache_root / "backbones" / backbone_id
    cached = load_cached(out_dir, name, backbone_id, timm_name, weights_desc, weights_path)
    if cached is not None:
        return cached
    _check_timm_name(timm_name)
    if log:
        log(f"exporting backbone {name} to ONNX (once; later runs reuse it)…")
    from imgclf.backbones.torch_export import export_backbone

    export_backbone(timm_name, weights_path, out_dir, builtin=name in BUILTINS and weights is None)
    cached = load_cached(out_dir, name, backbone_id, timm_name, weights_desc, weights_path)
    assert cached is not None, "export wrote no backbone"
    return cached


def _shipped(name: str) -> Backbone | None:
    """The built-in backbone ``name`` from the export that ships with imgclf, or ``None`` if there is none."""
    folder = SHIPPED_DIR / name
    try:
        meta = json.loads((folder / "backbone.json").read_text())
    except (OSError, ValueError):
        return None
    return load_cached(folder, name, meta["id"], BUILTINS[name].timm_name, meta["weights"], None)


def _resolve_face_input(name, weights, cache_dir, log, quantize: bool, crop: str | None) -> Backbone:
    from dataclasses import replace

    from imgclf.backbones.face import resolve_face
    from imgclf.files.locations import default_cache_dir
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


def _check_timm_name(timm_name: str) -> None:
    try:
        import timm
    except ImportError:
        raise ImgclfError(f"backbone {timm_name} is built with torch and timm: {TORCH_EXTRA}") from None
    if not timm.is_model(timm_name):
        close = timm.list_models(f"*{timm_name.split('.')[0][:12]}*")[:5]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ImgclfError(f"unknown backbone {timm_name!r}: use {', '.join(BUILTINS)}, {FACE} or a timm model name{hint}")
