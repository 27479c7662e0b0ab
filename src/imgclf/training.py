"""``train``: photos on disk → embeddings → head → a self-contained model folder."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from imgclf import __version__
from imgclf.backbones import DEFAULT_BACKBONE, FACE, Backbone, require_torch, resolve
from imgclf.cache import EmbeddingCache, default_cache_dir
from imgclf.checks import CheckResult, run_checks
from imgclf.checks.labels import imbalance
from imgclf.datasets import SPLITS, Dataset, ensure_training_photos, normalisation_warnings, scan_labelled
from imgclf.runtime.inputs import Skipped
from imgclf.duplicates import find_duplicates
from imgclf.embedding import Progress, embed_files, embed_views
from imgclf.views import views_for
from imgclf.errors import ImgclfError
from imgclf.finetune import FineTuneConfig
from imgclf.files import atomic_directory, to_json, write_bytes_atomic, write_json_atomic, writing_to
from imgclf.fusion import add_similarity, fuse
from imgclf.estimate import (
    accuracy_estimate, cross_validated_accuracy, oof_accuracy, out_of_fold_logits, out_of_fold_similarity, selective,
)
from imgclf.rejection import NEGATIVE_FOLDERS, UNKNOWN, Reference, Rejection, calibrate
from imgclf.head import C_GRID, HeadCache, LinearHead, fit_head, fit_temperature, refit, softmax
from imgclf.metrics import summarize
from imgclf.runtime import artifact
from imgclf.runtime.artifact import (
    CARD_FILE, FORMAT_VERSION, LABELS_FILE, META_FILE, METRICS_FILE, MODEL_FILE, NEIGHBORS_FILE, REPORT_FILE,
)
from imgclf.model_card import render_card
from imgclf.report import from_training, write_report

#: A label needs at least this many readable photos to be trained and validated.
MIN_PHOTOS_PER_LABEL = 2


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
    #: What :func:`imgclf.checks.run_checks` found in the photos (the full list is also in ``metrics["check"]``).
    check: CheckResult | None = None

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
    augment: int = 0,
    target_acceptance: float = 0.95,
    progress: Progress | None = None,
    log: Callable[[str], None] | None = None,
    command: str | None = None,
    embeddings: str | os.PathLike | None = None,
    quantize: bool = False,
    crop: str | None = None,
) -> TrainResult:
    """Train a classifier on ``data_dir`` and write it to ``model_dir`` (atomically).

    ``data_dir`` holds ``<label>/<images>`` or ``train|val|test/<label>/<images>``.
    ``augment`` adds that many cached augmented views of each training photo (see :mod:`imgclf.views`).
    ``fine_tune`` (True or a :class:`FineTuneConfig`) trains the backbone's last blocks too.
    The "unknown" rule is calibrated to accept ``target_acceptance`` of in-distribution photos;
    an ``unknown/`` or ``_background/`` label folder is trained as the class ``unknown``.
    ``progress(done, total)`` is called while embedding and ``log(message)`` before slow steps.
    ``quantize`` uses the int8 backbone (calibrated on the training photos; see :mod:`imgclf.backbones.quantize`).
    ``backbone="face"`` embeds the largest face in each photo (:mod:`imgclf.runtime.faces`; photos
    without one are skipped); ``crop="face"`` shows any other backbone only the face.
    Raises :class:`ImgclfError` for data the classifier cannot be trained on.
    """
    if quantize and fine_tune:
        raise ImgclfError("--quantize and --fine-tune cannot be combined: fine-tuning trains the float backbone")
    if fine_tune and (backbone == FACE or crop):
        raise ImgclfError("--fine-tune is not available with faces (--backbone face, --crop face): the face models are used as they are")
    if augment and backbone == FACE:
        raise ImgclfError("--augment is not available with --backbone face: its descriptor needs the aligned face as it is")
    if fine_tune:
        require_torch("--fine-tune")
    start = time.perf_counter()
    requested, model_dir = Path(model_dir), artifact.check_output(model_dir, data_dir)
    cache_root = Path(cache_dir) if cache_dir else default_cache_dir()
    dataset = _merge_negatives(scan_labelled(data_dir, val_fraction, test_fraction, cache_root=cache_root))
    if fine_tune and len(dataset.labels) == 1:
        raise ImgclfError("--fine-tune needs at least two labels (or an unknown/ folder of other photos): a one-label model has nothing to tell apart")
    bb = resolve(backbone, weights, cache_root, log=log, quantize=quantize,
                 calibration=[p.path for p in dataset.photos if p.split == "train"] if quantize else None, crop=crop)
    if embeddings is not None:  # computed elsewhere (imgclf embed, e.g. on Ray): checked against bb, matched by path
        from imgclf.engines.embeddings_file import load_embeddings

        emb = load_embeddings(embeddings, dataset, bb)
    else:
        emb = embed_files([p.path for p in dataset.photos], bb, EmbeddingCache(cache_root, bb.id), progress)

    by_path = {p.path: p for p in dataset.photos}
    photos = [by_path[p] for p in emb.paths]
    skipped = [Skipped(str(p), reason) for p, reason in sorted(emb.errors.items())]
    dups = find_duplicates(photos, emb.hashes)
    skipped += dups.conflicts
    keep = dups.keep
    photos, moved = ensure_training_photos([photos[i] for i in keep], dataset.labels)
    vectors = emb.vectors[keep]
    skipped = dataset.skipped + skipped
    counts = _counts(dataset.labels, photos)
    label_of = {str(p.path): p.label for p in dataset.photos}
    _check_counts(counts, {lab: [s.reason for s in skipped + dups.duplicates if label_of.get(s.path) == lab] for lab in counts})
    warnings = dups.warnings() + moved + _imbalance_warnings(counts) + normalisation_warnings(dataset.labels)
    findings = run_checks(dataset, emb, bb.preprocessing.input_size, cache_root, seed, bb.id)

    index = {lab: i for i, lab in enumerate(dataset.labels)}
    y = np.array([index[p.label] for p in photos], dtype=np.int64)
    split = np.array([p.split for p in photos])
    tr, va, te = (split == s for s in SPLITS)
    x_fit, y_fit = vectors[tr], y[tr]
    views_computed = 0
    if augment:  # extra cached views of the training photos only; validation and test stay plain
        names = views_for(augment)
        kept_hashes = np.array(emb.hashes)[keep]
        extra, views_computed = embed_views([p.path for p, m in zip(photos, tr) if m], list(kept_hashes[tr]),
                            bb, EmbeddingCache(cache_root, bb.id), names, progress)
        ok = ~np.isnan(extra).any(axis=(1, 2))
        x_fit = np.concatenate([x_fit, extra[ok].reshape(-1, bb.dim)])
        y_fit = np.concatenate([y_fit, np.repeat(y[tr][ok], len(names))])
    heads = HeadCache(cache_root)
    key = heads.key(x_fit, y_fit, vectors[va], y[va], len(dataset.labels), seed, C_GRID)
    selected, final = heads.get(key) or (None, None)
    if selected is None:
        selected = fit_head(x_fit, y_fit, len(dataset.labels), vectors[va], y[va], seed=seed)
        # C is chosen: fit it again on train + validation (validation metrics come from `selected`)
        final = refit(selected, np.concatenate([x_fit, vectors[va]]), np.concatenate([y_fit, y[va]]), len(dataset.labels)) if va.any() else selected
        heads.put(key, selected, final)
    paths = np.array([p.path for p in photos], dtype=object)
    held_out = _held_out_test(dataset, te)
    oof = None if len(dataset.labels) == 1 or fine_tune else _out_of_fold(heads, vectors, y, ~held_out, len(dataset.labels), final.C, seed)
    temperature = fit_temperature(oof[0], y[~held_out]) if oof is not None else 1.0
    selected, head = selected.tempered(temperature), final.tempered(temperature)
    probs = {name: selected.probabilities(vectors[m]) for name, m in (("train", tr), ("val", va))}
    probs["test"] = head.probabilities(vectors[te])
    write_onnx = partial(_fuse_onnx, bb, head, dataset.labels)
    tuned = None
    if fine_tune:
        from imgclf import finetune

        probe_val_accuracy = float(np.mean(probs["val"].argmax(1) == y[va])) if va.any() else None

        config = fine_tune if isinstance(fine_tune, finetune.FineTuneConfig) else finetune.FineTuneConfig(seed=seed)
        # start from the head fitted on the training split only: the refitted one has seen the
        # validation photos, which would make its "epoch 0" unbeatable on validation
        tuned = finetune.fine_tune(
            bb, selected, list(zip(paths[tr], y[tr])), list(zip(paths[va], y[va])), config, progress=progress, log=log
        )
        tuned_onnx = cache_root / "tmp" / f"fine-tuned-{os.getpid()}.onnx"
        tuned_onnx.parent.mkdir(parents=True, exist_ok=True)
        finetune.export_onnx(tuned.model, bb.preprocessing.input_size, tuned_onnx)
        # every photo scored and embedded once more, by the exact model that ships
        tuned_probs, vectors = finetune.onnx_outputs(tuned_onnx, list(paths), bb.preprocessing)
        probs["val"], probs["test"] = tuned_probs[va], tuned_probs[te]
        write_onnx = partial(_move_file, tuned_onnx)
    reference, rule = _rejection_rule(vectors, y, tr, va, dataset.labels, target_acceptance, seed, bb.min_similarity)
    verifier = len(dataset.labels) == 1  # one label and no negatives: it answers that label or "unknown"
    metrics = {
        "estimate": (_verifier_estimate(vectors[held_out], reference, rule, dataset.labels[0]) if verifier else
                     _estimate(vectors, y, held_out, probs["test"][held_out[te]], oof, head.C, len(dataset.labels), seed)),
        "train": _split_metrics(probs["train"], y[tr], paths[tr], dataset.labels, detail=False),
        "val": _split_metrics(probs["val"], y[va], paths[va], dataset.labels),
        "test": _split_metrics(probs["test"], y[te], paths[te], dataset.labels),
        "counts": counts,
        "skipped": [s.to_dict() for s in skipped],
        "duplicates": [s.to_dict() for s in dups.duplicates],
        "leakage": [s.to_dict() for s in dups.leaks],
        "warnings": warnings,
        "check": findings.to_dict(),
        "head": {"type": "softmax-linear", "C": head.C, "class_weight": "balanced", "seed": seed, "augment_views": list(views_for(augment)),
                 "temperature": temperature,
                 "calibrated_on": (f"{oof[1]}-fold out-of-fold logits of {int((~held_out).sum())} photos" if oof is not None else None)},
        "embedding": {"computed": emb.n_computed, "cached": len(emb.paths) - emb.n_computed, "unreadable": len(emb.errors),
                      "views_computed": views_computed},
    }
    if oof is not None:  # every photo's answer from a head that never saw it, calibrated: the reliability diagram's data
        calibrated = softmax(oof[0] / temperature)
        pool_labels = y[~held_out]
        metrics["out_of_fold"] = {"method": oof_accuracy(oof[0], pool_labels, oof[1])["method"], "photos": [
            {"label": dataset.labels[t], "predicted": dataset.labels[int(k)], "confidence": round(float(row[k]), 6)}
            for t, row, k in zip(pool_labels, calibrated, calibrated.argmax(1))]}
    checked = "test" if te.any() else "val"
    metrics["rejection"] = {**rule.to_dict(), **_apply_rule(metrics[checked], vectors[te if te.any() else va], reference, rule, checked)}
    if tuned is not None:
        metrics["fine_tune"] = {**asdict(config), "probe_val_accuracy": probe_val_accuracy, "best_epoch": tuned.best_epoch, "history": tuned.history,
                                "seconds": round(tuned.seconds, 1), "estimated_seconds": round(tuned.estimate_seconds, 1)}
        metrics["train"] = None  # the probe's training accuracy says nothing about the fine-tuned network
    seconds = time.perf_counter() - start
    metrics["train_seconds"] = round(seconds, 3)
    metrics["verifier"] = verifier
    meta = _metadata(bb, dataset, head, seed, command, maps=bb.feature_map is not None and tuned is None)
    if tuned is not None:
        meta["head"]["fine_tuned"] = True
    meta["rejection"] = rule.to_dict()
    pool = _reference_pool(y, tr, va, dataset.labels)
    neighbors = {"photos": [[_relative(p, dataset.root), dataset.labels[c]] for p, c in zip(paths[pool], y[pool])]}
    _write_model(requested, model_dir, data_dir, write_onnx, reference, dataset.labels, meta, metrics, neighbors, cache_root)
    return TrainResult(requested, dataset.labels, counts, metrics, skipped, warnings, time.perf_counter() - start, emb.n_computed,
                       findings)


def _merge_negatives(dataset: Dataset) -> Dataset:
    """Photos of ``unknown/`` and ``_background/`` become the class ``unknown``, listed last."""
    negative = [lab for lab in dataset.labels if lab in NEGATIVE_FOLDERS]
    if not negative:
        return dataset
    labels = [lab for lab in dataset.labels if lab not in NEGATIVE_FOLDERS]
    if len(labels) < 1:
        raise ImgclfError("the data has only negative photos (unknown/, _background/): add at least one label folder")
    photos = [replace(p, label=UNKNOWN) if p.label in NEGATIVE_FOLDERS else p for p in dataset.photos]
    return replace(dataset, labels=labels + [UNKNOWN], photos=photos)


def _counts(labels: list[str], photos) -> dict[str, dict[str, int]]:
    c = Counter((p.label, p.split) for p in photos)
    return {lab: {s: c[(lab, s)] for s in SPLITS} for lab in labels}


def _check_counts(counts: dict[str, dict[str, int]], lost: dict[str, list[str]]) -> None:
    """Every label needs :data:`MIN_PHOTOS_PER_LABEL` usable photos; ``lost`` has the reasons each label's others were left out."""
    for lab, by_split in counts.items():
        total = sum(by_split.values())
        if total < MIN_PHOTOS_PER_LABEL:
            why = Counter(_reason_kind(r) for r in lost.get(lab, []))
            detail = ("; ".join(f"{n} {kind}" for kind, n in why.most_common(3))
                      or ("its folder has no files" if not total else f"its folder holds only {total}"))
            raise ImgclfError(
                f"label {lab!r} has {total} usable photo{'s' if total != 1 else ''} ({detail}); "
                f"at least {MIN_PHOTOS_PER_LABEL} are needed to train and validate"
            )


def _reason_kind(reason: str) -> str:
    """A skip reason without its per-file details: ``image too small (8x8, …)`` → ``image too small``."""
    if reason.startswith("duplicate of "):
        return "copies of another photo of the label"
    if reason.startswith("conflict: "):
        return "copies of photos under another label"
    return reason.split(" (", 1)[0]


def _imbalance_warnings(counts: dict[str, dict[str, int]]) -> list[str]:
    train = {lab: c["train"] for lab, c in counts.items()}
    found = imbalance(train)
    if found is None:
        return []
    big, small, _ = found
    return [f"class imbalance: {big} has {train[big]} training photos, {small} only {train[small]}; balanced class weights compensate"]


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


def _metadata(bb: Backbone, dataset: Dataset, head: LinearHead, seed: int, command: str | None, maps: bool) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "imgclf_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "labels": dataset.labels,
        "backbone": bb.to_dict(),
        "preprocessing": bb.preprocessing.to_dict(),
        "onnx": {"file": MODEL_FILE, "input": "input",
                 "outputs": ["probabilities", "embedding", "similarity"] + (["cam"] if maps else []),
                 # with an encoder (faces) the graph takes the encoder's output, not the image
                 "input_shape": ["N", bb.dim] if bb.encoder else ["N", 3, bb.preprocessing.input_size, bb.preprocessing.input_size]},
        "head": {"type": "softmax-linear on L2-normalised embeddings", "C": head.C, "seed": seed},
        "data": {"root": str(Path(dataset.root).absolute()), "given_splits": dataset.given_splits},
        "command": command or "imgclf.train(...)",
        "versions": {"python": platform.python_version(), **_training_versions()},
    }


def _training_versions() -> dict:
    """Versions of the libraries that shaped the model (torch and timm only when this run used them)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "timm"):
        mod = sys.modules.get(name)
        if mod is not None:
            out[name] = getattr(mod, "__version__", "?")
    for name in ("onnxruntime", "onnx", "scipy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def _move_file(src: Path, dst: Path) -> None:
    shutil.move(src, dst)


def _fuse_onnx(bb: Backbone, head: LinearHead, labels: list[str], out_path: Path) -> None:
    fuse(bb.onnx_path, head, labels, out_path, {"imgclf_preprocessing": json.dumps(bb.preprocessing.to_dict())},
         feature_map=bb.feature_map)


def _rejection_rule(vectors, y, tr, va, labels: list[str], target: float, seed: int,
                    floor: float | None) -> tuple[Reference, Rejection]:
    """The reference of the train + val photos of known labels, and the conformal threshold that accepts ``target`` of new ones.

    Calibrated on out-of-fold scores of every such photo (each scored against a reference
    built without its fold), so the rule keeps its promise on photos it never saw.
    """
    pool = _reference_pool(y, tr, va, labels)
    known = [i for i, lab in enumerate(labels) if lab != UNKNOWN]
    reference = Reference.fit(vectors[pool], y[pool], known)
    scores, folds = out_of_fold_similarity(vectors[pool], y[pool], known, seed)
    return reference, calibrate(scores, target, f"{folds}-fold out-of-fold scores of train + val ({int(pool.sum())} photos)", floor)


def _reference_pool(y, tr, va, labels: list[str]) -> np.ndarray:
    """The photos the reference holds, in its order: train + val photos of known labels."""
    known = [i for i, lab in enumerate(labels) if lab != UNKNOWN]
    return (tr | va) & np.isin(y, known)


def _held_out_test(dataset: Dataset, te: np.ndarray) -> np.ndarray:
    """The photos kept out of every estimate's fitting: the test split the user gave (``test/``); none otherwise,
    so that the estimate uses every labelled photo."""
    return te if dataset.given_splits and te.any() else np.zeros_like(te)


def _out_of_fold(heads: HeadCache, vectors: np.ndarray, y: np.ndarray, pool: np.ndarray, n_classes: int, C: float,
                 seed: int) -> tuple[np.ndarray, int]:
    """Out-of-fold logits of the photos in ``pool`` (:func:`~imgclf.estimate.out_of_fold_logits`), cached by their inputs."""
    key = heads.key("out-of-fold", vectors[pool], y[pool], n_classes, C, seed)
    cached = heads.get_array(key)
    if cached is not None and len(cached) == int(pool.sum()):
        return cached[:, :-1], int(cached[0, -1])
    logits, folds = out_of_fold_logits(vectors[pool], y[pool], n_classes, C, seed)
    heads.put_array(key, np.concatenate([logits, np.full((len(logits), 1), folds, np.float32)], axis=1))
    return logits, folds


def _verifier_estimate(x_test: np.ndarray, reference: Reference, rule: Rejection, label: str) -> dict:
    """A one-label model's accuracy is the share of new photos of its label it accepts: on the test split the user
    gave, else the out-of-fold acceptance the rule was calibrated on (every train and validation photo)."""
    if len(x_test):
        accepted = int((reference.similarity(x_test) >= rule.threshold).sum())
        return accuracy_estimate(accepted, len(x_test), f"photos of {label} accepted in the test split ({len(x_test)} photos)")
    lo, hi = rule.acceptance_interval
    return {"accuracy": rule.expected_acceptance, "low": lo, "high": hi, "n": rule.n,
            "method": f"conformal share of new photos of {label} accepted, from {rule.n} out-of-fold scores"}


def _estimate(vectors, y, held_out, test_probs, oof, C: float, n_classes: int, seed: int) -> dict:
    """Accuracy on new photos, from the most photos there are: the test split the user gave, else cross-validation
    over every labelled photo (a fine-tuned model: a linear head on its embeddings)."""
    if held_out.any():
        n = int(held_out.sum())
        return accuracy_estimate(int((test_probs.argmax(1) == y[held_out]).sum()), n, f"the test split you gave ({n} photos)")
    if oof is not None:
        return oof_accuracy(oof[0], y, oof[1])
    est = cross_validated_accuracy(vectors, y, n_classes, C, seed)
    est["method"] += ", a linear head on the fine-tuned network's embeddings"
    return est


def _apply_rule(split_metrics: dict | None, x: np.ndarray, reference: Reference, rule: Rejection, split: str) -> dict:
    """Accepted and rejected photos of ``split``; its metrics gain coverage and selective accuracy (:func:`selective`)."""
    if not len(x) or not split_metrics:
        return {}
    rejected = reference.similarity(x) < rule.threshold
    photos = split_metrics["photos"]
    split_metrics.update(selective([p["label"] for p in photos], [p["predicted"] for p in photos], list(rejected)))
    return {"split": split, "accepted": int((~rejected).sum()), "rejected": int(rejected.sum())}


def _heatmaps(folder: Path, meta: dict, cache_root: Path):
    """The report's heatmaps of the model just written to ``folder`` (None when it has no maps): the model is
    loaded only if an overlay is not in the cache already (the same photos give the same model)."""
    from imgclf.report.heatmaps import Heatmaps
    from imgclf.runtime.model import Model

    if "cam" not in meta["onnx"]["outputs"]:
        return None
    return Heatmaps(lambda: Model.load(folder, threads=1), cache=cache_root / "heatmaps", key=meta["onnx"]["sha256"])


def _relative(path, root) -> str:
    """``path`` relative to the data folder, POSIX-style (as ``neighbors.json`` keeps it)."""
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).as_posix()


def _write_model(requested: Path, model_dir: Path, data_dir, write_onnx: Callable[[Path], None], reference: Reference,
                 labels: list[str], meta: dict, metrics: dict, neighbors: dict, cache_root: Path) -> None:
    artifact.check_output(requested, data_dir)  # again: files may have appeared there while embedding
    with writing_to(requested, "the model to"), atomic_directory(model_dir) as tmp:
        write_onnx(tmp / MODEL_FILE)
        index = (to_json(neighbors) + "\n").encode("utf-8")
        add_similarity(tmp / MODEL_FILE, reference, {artifact.PINNED_RULE: json.dumps(meta["rejection"]),
                                                     artifact.PINNED_NEIGHBORS: hashlib.sha256(index).hexdigest()})
        meta["onnx"]["sha256"] = artifact.sha256_file(tmp / MODEL_FILE)
        write_json_atomic(tmp / LABELS_FILE, labels)
        write_bytes_atomic(tmp / NEIGHBORS_FILE, index)
        write_json_atomic(tmp / META_FILE, meta)
        write_json_atomic(tmp / METRICS_FILE, metrics)
        (tmp / CARD_FILE).write_text(render_card(meta, metrics), encoding="utf-8")
        results = from_training(meta, metrics)
        write_report(tmp / REPORT_FILE, results, title=f"imgclf model {requested.name}: training report",
                     heatmaps=_heatmaps(tmp, meta, cache_root))
