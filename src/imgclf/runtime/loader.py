"""Bytes → model-input pixels: decoded (big JPEGs at reduced size), cropped, resized.

Photos are cut to 8-bit model-input pixels (:func:`load_pixels`) in worker threads (Pillow
releases the GIL) and normalised a whole batch at a time (:meth:`Preprocessing.batch`) right
before inference (:func:`imgclf.runtime.batching.run_batched`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from imgclf.runtime.images import decode, read_bytes
from imgclf.runtime.preprocessing import Preprocessing

#: JPEGs are decoded at a reduced size (DCT scaling, Pillow's ``draft``) that keeps the
#: shorter side at least this many times the resize target, so the bicubic resize still
#: downsamples by 2× or more. Measured against full decoding (``tests/test_speed.py``):
#: embedding cosine similarity ≥ 0.999 on real photos; margin 1 fell to 0.986.
DRAFT_MARGIN = 2.0


def draft_side(pre: Preprocessing) -> int:
    """The shorter side a JPEG may be decoded at (DCT scaling) for ``pre``."""
    if pre.crop:  # the face is a part of the photo: keep enough pixels to find and crop it
        from imgclf.runtime.faces import DECODE_SIDE

        return DECODE_SIDE
    return int(math.ceil(pre.resize_to * DRAFT_MARGIN))


def preprocess_data(data: bytes, pre: Preprocessing, fast: bool = True) -> np.ndarray:
    """Image bytes → one preprocessed (3, S, S) array; raises :class:`ImageError`.

    ``fast`` is ``pre.batch([load_pixels(data, pre)])[0]``: big JPEGs decoded at reduced
    size, :meth:`Preprocessing.fast` (equal to the reference path within the tolerance tested
    in ``tests/test_speed.py``); ``fast=False`` is the reference: full decode,
    :meth:`Preprocessing.__call__`.
    """
    if fast:
        return pre.batch([load_pixels(data, pre)])[0]
    return preprocess_image(decode(data), pre)


def load_pixels(data: bytes, pre: Preprocessing) -> np.ndarray:
    """Image bytes → :meth:`Preprocessing.pixels` (uint8, S × S × 3) of the photo (or of its face,
    ``pre.crop``), big JPEGs decoded at reduced size; raises :class:`ImageError`.

    Bulk paths load pixels in worker threads and normalise whole batches with
    :meth:`Preprocessing.batch` (``run_batched(..., collate=pre.batch)``).
    """
    return pre.pixels(crop_image(decode(data, max_side=draft_side(pre)), pre))


def preprocess_image(img: Image.Image, pre: Preprocessing) -> np.ndarray:
    """Decoded RGB image → model input: :func:`crop_image`, then ``pre`` (the reference path)."""
    return pre(crop_image(img, pre))


def crop_image(img: Image.Image, pre: Preprocessing) -> Image.Image:
    """``img`` cut to ``pre.crop`` (the face; raises :class:`~imgclf.runtime.faces.NoFaceError`), or as it is."""
    if not pre.crop:
        return img
    from imgclf.runtime.faces import crop

    return crop(img, pre.crop)


def pixel_loader(pre: Preprocessing) -> Callable[[Path], np.ndarray]:
    """Path → :func:`load_pixels`; batch the results with ``pre.batch``."""

    def load(path: Path) -> np.ndarray:
        return load_pixels(read_bytes(path), pre)

    return load
