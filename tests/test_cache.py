import numpy as np

from imgclf.embeddings.cache import EmbeddingCache
from imgclf.files.digests import content_hash


def test_roundtrip_and_damage_is_detected(tmp_path):
    cache = EmbeddingCache(tmp_path, "bb")
    key = content_hash(b"photo bytes")
    vec = np.arange(1280, dtype=np.float32)
    assert cache.get(key) is None
    cache.put(key, vec)
    np.testing.assert_array_equal(cache.get(key), vec)

    entry = cache._path(key)
    blob = bytearray(entry.read_bytes())
    blob[100] ^= 0xFF  # one flipped bit in the middle
    entry.write_bytes(bytes(blob))
    assert cache.get(key) is None
    assert not entry.exists(), "a damaged entry is removed so it gets recomputed"

    cache.put(key, vec)
    entry.write_bytes(entry.read_bytes()[:-40])  # truncated
    assert cache.get(key) is None

    cache.put(key, vec)
    entry.write_bytes(b"")
    assert cache.get(key) is None


def test_keys_are_per_backbone(tmp_path):
    a, b = EmbeddingCache(tmp_path, "a"), EmbeddingCache(tmp_path, "b")
    a.put("k" * 40, np.ones(4, np.float32))
    assert b.get("k" * 40) is None
