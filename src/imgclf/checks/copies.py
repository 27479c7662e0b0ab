"""Copies: the same file twice (``exact_duplicate``) and the same picture resized, recompressed,
slightly cropped or recoloured (``near_duplicate``), each marked when it leaks across splits or
carries another label.

Two photos are near-duplicates when their perceptual hashes differ in at most
:data:`MAX_HASH_DISTANCE` of 64 bits and their 8 × 8 grey layouts correlate at least
:data:`MIN_LAYOUT`; the embedding is not used (a JPEG at quality 50 of a 320 px photo moves
it further than another photo of the same flower). Thresholds from ``benchmarks/check.py``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np

from imgclf.checks.data import CheckData
from imgclf.checks.findings import Finding
from imgclf.checks.quality import MIN_CONTRAST

#: Largest Hamming distance of two perceptual hashes (of 64 bits) that still makes a copy.
MAX_HASH_DISTANCE = 12
#: Smallest correlation of two 8 × 8 grey layouts that still makes a copy.
MIN_LAYOUT = 0.9
#: Hashes compared at once (memory: this many × the number of photos, eight bytes each).
_BLOCK = 256


def copy_groups(paths: Sequence[str], pairs: Iterable[tuple[str, str]]) -> np.ndarray:
    """An id per path of ``paths`` that copies of one picture share: the ``pairs`` (a finding's ``path`` and
    ``other``) joined transitively; pairs naming a path not in ``paths`` are left out."""
    row = {p: i for i, p in enumerate(paths)}
    parent = np.arange(len(paths))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        if a in row and b in row:
            parent[root(row[a])] = root(row[b])
    return np.array([root(i) for i in range(len(paths))], dtype=np.int64)


def copies(data: CheckData) -> list[Finding]:
    """``exact_duplicate`` and ``near_duplicate`` findings, the later photo of each pair named as ``path``."""
    return exact_duplicates(data) + near_duplicates(data)


def exact_duplicates(data: CheckData) -> list[Finding]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, h in enumerate(data.hashes):
        groups[h].append(i)
    out = []
    for idx in groups.values():
        if len(idx) < 2:
            continue
        original, *others = sorted(idx, key=data.order_key)
        out += [_pair("exact_duplicate", data, i, original, 1.0) for i in others]
    return sorted(out, key=lambda f: (f.path or ""))


def near_duplicates(data: CheckData) -> list[Finding]:
    rows = data.unique
    p = data.prints
    rows = rows[p.ok[rows] & (p.contrast[rows] >= MIN_CONTRAST)]  # flat photos all look alike
    packed = np.packbits(p.phash[rows].astype(bool), axis=1).view(np.uint64)[:, 0]  # the 64 bits as one integer
    layout = p.layout[rows].astype(np.float32)
    out = []
    for start in range(0, len(rows), _BLOCK):  # each block against itself and the photos after it: each pair once
        distance = np.bitwise_count(packed[start:start + _BLOCK, None] ^ packed[None, start:])
        for a, c in zip(*np.nonzero(distance <= MAX_HASH_DISTANCE)):
            if a < c and float(layout[start + a] @ layout[start + c]) >= MIN_LAYOUT:
                first, second = sorted((rows[start + a], rows[start + c]), key=data.order_key)
                out.append(_pair("near_duplicate", data, second, first, 1 - float(distance[a, c]) / 64))
    return sorted(out, key=lambda f: (-f.similarity, f.path))


def _pair(kind: str, data: CheckData, i: int, original: int, similarity: float) -> Finding:
    leakage = str(data.splits[i]) != str(data.splits[original])
    conflict = str(data.labels[i]) != str(data.labels[original])
    what = "the same file as" if kind == "exact_duplicate" else "a copy of"
    where = []
    if conflict:
        where.append(f"labelled {data.labels[i]}, the other {data.labels[original]}")
    if leakage:
        where.append(f"in {data.splits[i]}, the other in {data.splits[original]}")
    reason = f"{what} {data.paths[original]}" + (f" ({'; '.join(where)})" if where else "")
    if conflict:
        action = "decide which label is right; keep one copy under it"
    elif leakage:
        action = "keep one copy (or both in the same split): a copy across splits flatters the test"
    else:
        action = "keep one copy: the picture counts twice in training"
    return Finding(kind, data.paths[i], reason, similarity, action, label=str(data.labels[i]), other=data.paths[original],
                   similarity=similarity, leakage=leakage, conflict=conflict)
