import numpy as np
import pytest

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


def test_a_photo_hashed_once_is_known_by_what_stat_says_until_it_changes(tmp_path, monkeypatch):
    """The remembered hash is used only while size, times, inode and device are all unchanged: a rewrite in place of
    the same size with its modification time put back is read again (its change time moved)."""
    import os
    import shutil

    from conftest import PHOTOS
    from imgclf.embeddings import digests
    from imgclf.errors import ImageError

    monkeypatch.setattr(digests, "SETTLING_SECONDS", 0.0)
    (tmp_path / "a").mkdir()
    photo = tmp_path / "a" / "p.jpg"
    shutil.copy(sorted((PHOTOS / "daisy").iterdir())[0], photo)
    known = digests.KnownDigests(tmp_path / "cache")
    digest = known.content_hash(photo)
    assert digest == content_hash(photo.read_bytes())
    known.save()
    again = digests.KnownDigests(tmp_path / "cache")
    assert again.get(photo) == digest

    st = photo.stat()
    data = bytearray(photo.read_bytes())
    data[-3] ^= 0xFF
    photo.write_bytes(bytes(data))
    os.utime(photo, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert photo.stat().st_size == st.st_size and photo.stat().st_mtime_ns == st.st_mtime_ns
    assert again.get(photo) is None and again.content_hash(photo) == content_hash(bytes(data)) != digest

    monkeypatch.setattr(digests, "SETTLING_SECONDS", 3600.0)  # changed in the last hour: hashed, not remembered
    fresh = tmp_path / "a" / "q.jpg"
    shutil.copy(photo, fresh)
    known = digests.KnownDigests(tmp_path / "cache")
    assert known.content_hash(fresh) == content_hash(bytes(data))
    known.save()
    assert digests.KnownDigests(tmp_path / "cache").get(fresh) is None

    os.mkfifo(tmp_path / "a" / "pipe.jpg")  # never opened: refused by what stat says
    with pytest.raises(ImageError, match="not a regular file"):
        known.content_hash(tmp_path / "a" / "pipe.jpg")
    for record in (tmp_path / "cache" / "digests").iterdir():  # a damaged record costs a re-read, nothing else
        record.write_text("{")
    assert digests.KnownDigests(tmp_path / "cache").get(photo) is None


def test_a_photo_given_twice_is_embedded_once_and_answered_twice(tmp_path):
    from conftest import PHOTOS
    from imgclf.backbones import resolve
    from imgclf.embeddings import embed_files

    photos = sorted((PHOTOS / "daisy").glob("*.jpg"))[:3]
    bb = resolve("efficientnet_lite0", None, tmp_path)
    ticks = []
    emb = embed_files([photos[0], photos[1], photos[0], photos[2]], bb, EmbeddingCache(tmp_path, bb.id),
                      lambda done, total, **_: ticks.append((done, total)))
    assert emb.paths == [photos[0], photos[1], photos[0], photos[2]] and emb.n_computed == 3
    assert np.array_equal(emb.vectors[0], emb.vectors[2]) and not np.array_equal(emb.vectors[0], emb.vectors[1])
    assert ticks[-1] == (4, 4)
