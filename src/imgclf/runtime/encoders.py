"""Encoders: a step outside ONNX between preprocessing and a backbone's graph.

The face descriptor of ``--backbone face`` is one (dlib computes it; the graph only passes it on);
most backbones have none, and their graph takes the preprocessed images as they are.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from imgclf.errors import ImgclfError


def _as_is(batch: np.ndarray) -> np.ndarray:
    return batch


def encoder(name: str | None) -> Callable[[np.ndarray], np.ndarray]:
    """The step between preprocessing and the ONNX graph of a backbone that is not all ONNX.

    ``name`` is :attr:`Backbone.encoder <imgclf.backbones.Backbone.encoder>` (also stored in a
    model's ``imgclf.json``); ``None``: the ONNX graph takes the preprocessed images as they are.
    """
    if name is None:
        return _as_is
    from imgclf.runtime import faces

    if name == faces.ENCODER:
        return faces.encode
    raise ImgclfError(f"unknown encoder {name!r}: this model needs a newer imgclf")
