"""Embeddings → head and rule → model folder: :func:`train` and its stages (the head, the "unknown" rule, the
estimates, the fused graph, fine-tuning)."""

from imgclf.training.flow import TrainResult, train

__all__ = ["TrainResult", "train"]
