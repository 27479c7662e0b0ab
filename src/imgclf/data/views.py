"""Deterministic augmented views of a photo, embedded once and cached like the plain view.

retrain.py switched its cache off whenever distortions were on; here each view has its own
cache entry (content hash + view name), so augmentation costs one embedding per view, once.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

from imgclf.runtime.preprocessing import Preprocessing, center_crop, normalize, resize_shorter

#: Views in the order ``--augment N`` takes them (the plain centre crop is always embedded too).
VIEWS = ("flip", "full", "full-flip", "zoom", "zoom-flip", "top-left", "bottom-right")


def view(img: Image.Image, name: str, pre: Preprocessing) -> np.ndarray:
    """One named view of an RGB image, preprocessed like :class:`Preprocessing` does the centre crop."""
    s = pre.input_size
    if name in ("flip", "top-left", "bottom-right"):
        resized = resize_shorter(img, pre.resize_to, pre.interpolation)
        if name == "flip":
            out = ImageOps.mirror(center_crop(resized, s))
        else:
            w, h = resized.size
            left, top = (0, 0) if name == "top-left" else (w - s, h - s)
            out = resized.crop((left, top, left + s, top + s))
    elif name.startswith("full"):  # the whole photo, squeezed: nothing cropped away
        out = img.resize((s, s), Image.Resampling.BICUBIC)
    elif name.startswith("zoom"):  # a tighter centre crop: the subject larger
        out = center_crop(resize_shorter(img, int(s * 1.4), pre.interpolation), s)
    else:
        raise ValueError(f"unknown view {name!r}")
    if name.endswith("-flip"):
        out = ImageOps.mirror(out)
    return normalize(out, pre)


def views_for(n: int) -> tuple[str, ...]:
    """The first ``n`` augmented views."""
    if not 0 <= n <= len(VIEWS):
        raise ValueError(f"--augment takes 0 to {len(VIEWS)} views")
    return VIEWS[:n]
