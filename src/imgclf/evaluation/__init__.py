"""How well a model does on labelled photos: :func:`evaluate` and the metrics it and training report."""

from imgclf.evaluation.folder import evaluate

__all__ = ["evaluate"]
