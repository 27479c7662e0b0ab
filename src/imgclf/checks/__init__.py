"""``imgclf check``: what is wrong with the photos, before a model trained on them is trusted.

:func:`check` scans a data folder as ``train`` does, embeds it through the same cache (a folder
already trained on is checked without running the network) and runs every check on the result;
``train`` runs the same checks (:func:`run_checks`) on the embeddings it computed. The stages,
each a module: :mod:`~imgclf.checks.fingerprints` (size, contrast, sharpness, perceptual hash),
:mod:`~imgclf.checks.copies`, :mod:`~imgclf.checks.labels`, :mod:`~imgclf.checks.outliers`,
:mod:`~imgclf.checks.quality`; what they report: :mod:`~imgclf.checks.findings`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from imgclf.checks.findings import FIX_PLAN_COLUMNS, KINDS, CheckResult, Finding, unreadable

__all__ = ["check", "run_checks", "CheckResult", "Finding", "KINDS", "FIX_PLAN_COLUMNS"]

#: Bumped whenever a check or a threshold changes, so cached results of older checks are not reused.
CHECKS_VERSION = 9


def check(
    data_dir: str | os.PathLike,
    backbone: str | None = None,
    weights: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    crop: str | None = None,
    quantize: bool = False,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    progress: Callable[..., None] | None = None,
    log: Callable[[str], None] | None = None,
) -> CheckResult:
    """Check the photos of ``data_dir`` (laid out as for ``train``) with the same backbone, crop and cache
    options as ``train``. Nothing in ``data_dir`` is changed."""
    from imgclf.backbones import DEFAULT_BACKBONE, resolve
    from imgclf.embeddings.cache import EmbeddingCache
    from imgclf.files.locations import default_cache_dir
    from imgclf.data import scan_labelled
    from imgclf.embeddings.compute import embed_files

    start = time.perf_counter()
    cache_root = Path(cache_dir) if cache_dir else default_cache_dir()
    dataset = scan_labelled(data_dir, val_fraction, test_fraction, cache_root=cache_root)
    calibration = [p.path for p in dataset.photos if p.split == "train"] if quantize else None
    bb = resolve(backbone or DEFAULT_BACKBONE, weights, cache_root, log=log, quantize=quantize, calibration=calibration, crop=crop)
    emb = embed_files([p.path for p in dataset.photos], bb, EmbeddingCache(cache_root, bb.id), progress)
    result = run_checks(dataset, emb, bb.preprocessing.input_size, cache_root, seed, bb.id)
    result.seconds = time.perf_counter() - start
    return result


def run_checks(dataset, emb, input_size: int, cache_root: Path | None, seed: int = 0, backbone_id: str = "") -> CheckResult:
    """Every check on a scanned ``dataset`` (:class:`imgclf.data.Dataset`) and its embeddings
    (:class:`imgclf.embeddings.compute.Embeddings`); the result is cached by what it depends on."""
    from imgclf.checks.copies import copies
    from imgclf.checks.data import CheckData
    from imgclf.checks.fingerprints import fingerprints
    from imgclf.checks.labels import label_findings
    from imgclf.checks.outliers import Typicality, outliers
    from imgclf.checks.quality import quality
    from imgclf.heads.linear import l2_normalize

    start = time.perf_counter()
    by_path = {p.path: p for p in dataset.photos}
    photos = [by_path[p] for p in emb.paths]
    paths = [str(p.path) for p in photos]
    key = _key(paths, emb.hashes, [p.label for p in photos], [p.split for p in photos], input_size, seed, backbone_id)
    cached = _cached(cache_root, key)
    if cached is not None:
        found, advice = cached
    else:
        data = CheckData(paths, np.array([p.label for p in photos], dtype=object), np.array([p.split for p in photos], dtype=object),
                         list(emb.hashes), l2_normalize(emb.vectors), fingerprints(emb.paths, emb.hashes, cache_root), list(dataset.labels))
        labels = label_findings(data, seed)
        unlike, instead = outliers(data, Typicality(data), {f.path: f for f in labels if f.kind == "label_error"})
        found = copies(data) + [f for f in labels if f.path not in instead] + unlike + quality(data, input_size)
        advice = _advice(data, seed)
        _store(cache_root, key, found, advice)
    unread = [unreadable(s.path, s.reason) for s in dataset.skipped] + [
              unreadable(str(p), reason, by_path[p].label) for p, reason in sorted(emb.errors.items())]
    rank = {kind: i for i, kind in enumerate(KINDS)}
    findings = sorted(unread + found, key=lambda f: rank[f.kind])  # stable: each check's own order within a kind
    return CheckResult(str(dataset.root), len(dataset.photos), list(dataset.labels), findings, thresholds(input_size),
                       time.perf_counter() - start, advice)


def _advice(data, seed: int) -> dict:
    """What more photos would add (:func:`imgclf.heads.curves.advise` on the distinct photos; {} when it cannot say)."""
    from imgclf.heads.curves import advise

    rows = data.unique
    names = data.label_names
    y = np.array([names.index(str(lab)) for lab in data.labels[rows]], np.int64)
    advice = advise(data.vectors[rows], y, names, seed)
    return advice.to_dict() if advice is not None else {}



def thresholds(input_size: int) -> dict:
    """The thresholds the checks apply, as the JSON reports them."""
    from imgclf.checks import copies, labels, outliers, quality
    from imgclf.heads.estimate import FOLDS

    return {"near_duplicate": {"max_hash_distance": copies.MAX_HASH_DISTANCE, "min_layout_correlation": copies.MIN_LAYOUT},
            "label_error": {"min_margin": labels.MIN_MARGIN, "folds": FOLDS, "C": labels.C,
                            "fold_photos_per_label": labels.FOLD_PHOTOS_PER_LABEL},
            "outlier": {"max_robust_z": outliers.MAX_Z, "label_error_while_within_z": outliers.LIKE_Z},
            "too_small": {"min_side": input_size // 2}, "blurry": {"min_sharpness": quality.MIN_SHARPNESS},
            "near_uniform": {"min_contrast": quality.MIN_CONTRAST},
            "imbalance": {"max_ratio": labels.MAX_RATIO}, "confused_labels": {"min_rate": labels.MIN_CONFUSION}}


def _key(*parts: Sequence) -> str:
    h = hashlib.blake2b(digest_size=20)
    h.update(json.dumps([CHECKS_VERSION, *[list(p) if not isinstance(p, (int, str)) else p for p in parts]]).encode())
    return h.hexdigest()


def _cached(cache_root: Path | None, key: str) -> tuple[list[Finding], dict] | None:
    """The findings and the advice stored for ``key``, or None (not stored, or damaged)."""
    if cache_root is None:
        return None
    try:
        stored = json.loads((Path(cache_root) / "checks" / f"{key}.json").read_text(encoding="utf-8"))
        advice = stored["advice"]
        if not isinstance(advice, dict):
            return None
        return [Finding(**{"path": None, **row}) for row in stored["findings"]], advice  # a finding about labels has no path
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _store(cache_root: Path | None, key: str, findings: list[Finding], advice: dict) -> None:
    if cache_root is None:
        return
    from imgclf.files import write_text_atomic

    try:
        write_text_atomic(Path(cache_root) / "checks" / f"{key}.json",
                          json.dumps({"findings": [f.to_dict() for f in findings], "advice": advice}))
    except OSError:
        pass
