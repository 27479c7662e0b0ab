"""Photos → embeddings: the backbone run over files, through a checksummed cache keyed by content and backbone."""

from imgclf.embeddings.cache import EmbeddingCache
from imgclf.embeddings.compute import Embeddings, Progress, embed_files, embed_views

__all__ = ["EmbeddingCache", "Embeddings", "Progress", "embed_files", "embed_views"]
