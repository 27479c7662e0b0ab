"""``train``: photos on disk → embeddings → head → a self-contained model folder."""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import partial
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from imgclf import __version__
from imgclf.backbones import DEFAULT_BACKBONE, Backbone, resolve
from imgclf.cache import EmbeddingCache, default_cache_dir
from imgclf.datasets import SPLITS, Dataset, Skipped, ensure_training_photos, scan_labelled
from imgclf.duplicates import find_duplicates
from imgclf.embedding import Progress, embed_files
from imgclf.errors import ImgclfError
from imgclf.finetune import FineTuneConfig
from imgclf.files import atomic_directory, write_json_atomic
from imgclf.fusion import fuse
from imgclf.head import LinearHead, fit_head
from imgclf.metrics import summarize
from imgclf.model import CARD_FILE, LABELS_FILE, META_FILE, METRICS_FILE, MODEL_FILE
from imgclf.model_card import render_card
from imgclf.report import REPORT_FILE, from_training, write_report

#: A label needs at least this many readable photos to be trained and validated.
MIN_PHOTOS_PER_LABEL = 2
FORMAT_VERSION = 1


@dataclass
class TrainResult:
    """What ``train`` did: where the model is, what it learned from, how well it does."""

    model_dir: Path
    labels: list[str]
    counts: dict[str, dict[str, int]]
    metrics: dict
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    n_computed: int = 0

    @property
    def val_accuracy(self) -> float | None:
        return (self.metrics.get("val") or {}).get("accuracy")

    @property
    def test_accuracy(self) -> float | None:
        return (self.metrics.get("test") or {}).get("accuracy")


def train(
    data_dir: str | os.PathLike,
    model_dir: str | os.PathLike,
    backbone: str = DEFAULT_BACKBONE,
    weights: str | os.PathLike | None = None,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    fine_tune: bool | FineTuneConfig = False,
    progress: Progress | None = None,
    log: Callable[[str], None] | None = None,
    command: str | None = None,
) -> TrainResult:
    """Train a classifier on ``data_dir`` and write it to ``model_dir`` (atomically).

    ``data_dir`` holds ``<label>/<images>`` or ``train|val|test/<label>/<images>``.
    ``fine_tune`` (True or a :class:`FineTuneConfig`) trains the backbone's last blocks too.
    ``progress(done, total)`` is called while embedding and ``log(message)`` before slow steps.
    Raises :class:`ImgclfError` for data the classifier cannot be trained on.
    """
    start = time.perf_counter()
    model_dir = Path(model_dir)
    _check_output(model_dir)
    dataset = scan_labelled(data_dir, val_fraction, test_fraction)
    cache_root = Path(cache_dir) if cache_dir else default_cache_dir()
    bb = resolve(backbone, weights, cache_root, log=log)
    emb = embed_files([p.path for p in dataset.photos], bb, EmbeddingCache(cache_root, bb.id), progress)

    by_path = {p.path: p for p in dataset.photos}
    photos = [by_path[p] for p in emb.paths]
    skipped = [Skipped(str(p), reason) for p, reason in sorted(emb.errors.items())]
    dups = find_duplicates(photos, emb.hashes)
    skipped += dups.conflicts
    keep = dups.keep
    photos, moved = ensure_training_photos([photos[i] for i in keep], dataset.labels)
    vectors = emb.vectors[keep]
    counts = _counts(dataset.labels, photos)
    _check_counts(counts)
    warnings = dups.warnings() + moved + _imbalance_warnings(counts)

    index = {lab: i for i, lab in enumerate(dataset.labels)}
    y = np.array([index[p.label] for p in photos], dtype=np.int64)
    split = np.array([p.split for p in photos])
    tr, va, te = (split == s for s in SPLITS)
    head = fit_head(vectors[tr], y[tr], len(dataset.labels), vectors[va], y[va], seed=seed)
    paths = np.array([p.path for p in photos], dtype=object)
    probs = {name: head.probabilities(vectors[m]) for name, m in (("train", tr), ("val", va), ("test", te))}
    write_onnx = partial(_fuse_onnx, bb, head, dataset.labels)
    tuned = None
    if fine_tune:
        from imgclf import finetune

        config = fine_tune if isinstance(fine_tune, finetune.FineTuneConfig) else finetune.FineTuneConfig(seed=seed)
        tuned = finetune.fine_tune(
            bb, head, list(zip(paths[tr], y[tr])), list(zip(paths[va], y[va])), config, progress=progress, log=log
        )
        tuned_onnx = cache_root / "tmp" / f"fine-tuned-{os.getpid()}.onnx"
        tuned_onnx.parent.mkdir(parents=True, exist_ok=True)
        finetune.export_onnx(tuned.model, bb.preprocessing.input_size, tuned_onnx)
        for name, m in (("val", va), ("test", te)):  # scored by the exact model that ships
            probs[name] = finetune.onnx_probabilities(tuned_onnx, list(paths[m]), bb.preprocessing)
        write_onnx = partial(_move_file, tuned_onnx)
    metrics = {
        "train": _split_metrics(probs["train"], y[tr], paths[tr], dataset.labels, detail=False),
        "val": _split_metrics(probs["val"], y[va], paths[va], dataset.labels),
        "test": _split_metrics(probs["test"], y[te], paths[te], dataset.labels),
        "counts": counts,
        "skipped": [s.to_dict() for s in skipped],
        "duplicates": [s.to_dict() for s in dups.duplicates],
        "leakage": [s.to_dict() for s in dups.leaks],
        "warnings": warnings,
        "head": {"type": "softmax-linear", "C": head.C, "class_weight": "balanced", "seed": seed},
        "embedding": {"computed": emb.n_computed, "cached": len(emb.paths) + len(emb.errors) - emb.n_computed},
    }
    if tuned is not None:
        metrics["fine_tune"] = {**asdict(config), "best_epoch": tuned.best_epoch, "history": tuned.history,
                                "seconds": round(tuned.seconds, 1), "estimated_seconds": round(tuned.estimate_seconds, 1)}
        metrics["train"] = None  # the probe's training accuracy says nothing about the fine-tuned network
    seconds = time.perf_counter() - start
    metrics["train_seconds"] = round(seconds, 3)
    meta = _metadata(bb, dataset, head, seed, command)
    if tuned is not None:
        meta["head"]["fine_tuned"] = True
    _write_model(model_dir, write_onnx, dataset.labels, meta, metrics)
    return TrainResult(model_dir, dataset.labels, counts, metrics, skipped, warnings, time.perf_counter() - start, emb.n_computed)


def _check_output(model_dir: Path) -> None:
    if model_dir.exists():
        if not model_dir.is_dir():
            raise ImgclfError(f"output {model_dir} exists and is not a folder")
        if any(model_dir.iterdir()) and not (model_dir / META_FILE).exists():
            raise ImgclfError(f"output folder {model_dir} is not empty and holds no imgclf model; refusing to replace it")


def _counts(labels: list[str], photos) -> dict[str, dict[str, int]]:
    c = Counter((p.label, p.split) for p in photos)
    return {lab: {s: c[(lab, s)] for s in SPLITS} for lab in labels}


def _check_counts(counts: dict[str, dict[str, int]]) -> None:
    for lab, by_split in counts.items():
        total = sum(by_split.values())
        if total < MIN_PHOTOS_PER_LABEL:
            raise ImgclfError(
                f"label {lab!r} has {total} readable photo{'s' if total != 1 else ''}; "
                f"at least {MIN_PHOTOS_PER_LABEL} are needed to train and validate"
            )


def _imbalance_warnings(counts: dict[str, dict[str, int]]) -> list[str]:
    train = {lab: c["train"] for lab, c in counts.items()}
    lo, hi = min(train.values()), max(train.values())
    if lo and hi / lo >= 3:
        small = min(train, key=train.get)
        big = max(train, key=train.get)
        return [f"class imbalance: {big} has {hi} training photos, {small} only {lo}; balanced class weights compensate"]
    return []


def _split_metrics(probs: np.ndarray, y: np.ndarray, paths, labels: list[str], detail: bool = True) -> dict | None:
    if len(y) == 0:
        return None
    pred = probs.argmax(1)
    out = summarize(y, pred, labels)
    if detail:
        out["misclassified"] = sorted(
            (
                {"path": str(paths[i]), "label": labels[y[i]], "predicted": labels[pred[i]], "confidence": round(float(probs[i, pred[i]]), 6)}
                for i in np.flatnonzero(pred != y)
            ),
            key=lambda m: -m["confidence"],
        )
        top = np.argsort(-probs, axis=1, kind="stable")[:, :3]
        out["photos"] = [  # per photo, for the report and the model card's calibration
            {"path": str(paths[i]), "label": labels[y[i]], "predicted": labels[pred[i]],
             "confidence": round(float(probs[i, pred[i]]), 6), "label_confidence": round(float(probs[i, y[i]]), 6),
             "top_k": [{"label": labels[j], "confidence": round(float(probs[i, j]), 6)} for j in top[i]]}
            for i in range(len(y))
        ]
    else:
        del out["confusion_matrix"], out["per_class"]
    return out


def _metadata(bb: Backbone, dataset: Dataset, head: LinearHead, seed: int, command: str | None) -> dict:
    import onnxruntime

    return {
        "format_version": FORMAT_VERSION,
        "imgclf_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "labels": dataset.labels,
        "backbone": bb.to_dict(),
        "preprocessing": bb.preprocessing.to_dict(),
        "onnx": {"file": MODEL_FILE, "input": "input", "outputs": ["probabilities", "embedding"],
                 "input_shape": ["N", 3, bb.preprocessing.input_size, bb.preprocessing.input_size]},
        "head": {"type": "softmax-linear on L2-normalised embeddings", "C": head.C, "seed": seed},
        "data": {"root": str(Path(dataset.root).absolute()), "given_splits": dataset.given_splits},
        "command": command or "imgclf.train(...)",
        "versions": {"python": platform.python_version(), "onnxruntime": onnxruntime.__version__, **_training_versions()},
    }


def _training_versions() -> dict:
    out = {}
    for name in ("torch", "timm", "onnx", "scipy"):
        mod = sys.modules.get(name)
        if mod is None and name in ("onnx", "scipy"):
            mod = __import__(name)
        if mod is not None:
            out[name] = getattr(mod, "__version__", "?")
    return out


def _move_file(src: Path, dst: Path) -> None:
    shutil.move(src, dst)


def _fuse_onnx(bb: Backbone, head: LinearHead, labels: list[str], out_path: Path) -> None:
    fuse(bb.onnx_path, head, labels, out_path, {"imgclf_preprocessing": json.dumps(bb.preprocessing.to_dict())})


def _write_model(model_dir: Path, write_onnx: Callable[[Path], None], labels: list[str], meta: dict, metrics: dict) -> None:
    with atomic_directory(model_dir) as tmp:
        write_onnx(tmp / MODEL_FILE)
        write_json_atomic(tmp / LABELS_FILE, labels)
        write_json_atomic(tmp / META_FILE, meta)
        write_json_atomic(tmp / METRICS_FILE, metrics)
        (tmp / CARD_FILE).write_text(render_card(meta, metrics), encoding="utf-8")
        write_report(tmp / REPORT_FILE, from_training(meta, metrics), title=f"imgclf model {model_dir.name}: training report")
