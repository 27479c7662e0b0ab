"""Embeddings → answers: the linear head (and its temperature), the "unknown" rule, and out-of-fold estimates —
the fitting that ``train`` ships and ``check`` uses to find label mistakes."""
