"""``train --labels FILE`` / ``train --multi-label``: photos with several labels each → a model that answers a set.

scan → embed (ten views a photo, :mod:`imgclf.backbones.views`) → one photo per content → fit (one logistic head per
label; ``C`` and the blend of a label's best view with the pooled views by out-of-fold mean AP) → calibrate (Platt per
label) and threshold (best F1 or ``--min-precision``) on out-of-fold scores → the "unknown" rule → estimate (nested cross-validation: every photo scored by heads, scalings and
thresholds chosen without it; or a given test split) → write. Only :func:`write` touches the model folder.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgclf.backbones import Backbone, resolve
from imgclf.backbones.views import pooled, with_views
from imgclf.checks.findings import CheckResult, unreadable
from imgclf.checks.multilabel import EXTRA_BELOW, MISSING_AT, label_findings
from imgclf.data.manifest import TaggedSet, merge_copies, read_manifest, scan_folders
from imgclf.embeddings import EmbeddingCache, Embeddings, embed_files
from imgclf.errors import ImgclfError
from imgclf.evaluation.multilabel import multilabel_metrics
from imgclf.heads import sigmoid
from imgclf.heads.linear import l2_normalize
from imgclf.heads.rejection import Reference, Rejection, calibrate, compact
from imgclf.runtime.inputs import Skipped
from imgclf.training.events import Reporter
from imgclf.training.settings import Settings

#: Each label needs at least this many photos with it, and one without it.
MIN_PHOTOS_PER_LABEL = 2


@dataclass
class Photos:
    """The usable photos: paths, labels (photos × labels, 0/1), ten-view embeddings, splits."""

    tagged: TaggedSet
    paths: np.ndarray
    Y: np.ndarray
    x: np.ndarray
    split: np.ndarray
    skipped: list[Skipped]
    warnings: list[str]

    @property
    def labels(self) -> list[str]:
        return self.tagged.labels

    @property
    def pool(self) -> np.ndarray:
        """The photos the model learns from: all but a given test split."""
        return ~(self.split == "test") if self.tagged.given_splits else np.ones(len(self.Y), bool)

    def counts(self) -> dict[str, dict[str, int]]:
        """``{label: {"photos": n}}``, or with a given test split ``{"train": n, "test": n}``: photos with each label."""
        if not self.tagged.given_splits:
            return {lab: {"photos": int(self.Y[:, k].sum())} for k, lab in enumerate(self.labels)}
        return {lab: {s: int(((self.split == s) & (self.Y[:, k] > 0)).sum()) for s in ("train", "test")}
                for k, lab in enumerate(self.labels)}


@dataclass
class Fitted:
    """The heads that ship (Platt scaling folded in), each label's threshold, and how they were chosen."""

    heads: sigmoid.SigmoidHeads
    thresholds: np.ndarray
    rule: str
    folds: int
    #: Each pooled photo's calibrated probabilities from heads fitted without it (what the checks read).
    out_of_fold: np.ndarray


def run(data_dir, model_dir, settings: Settings, report: Reporter):
    """The stages of a multi-label training run, in order (``settings`` already checked)."""
    from imgclf.runtime import artifact
    from imgclf.training.result import TrainResult

    started = time.perf_counter()
    requested, target = Path(model_dir), artifact.check_output(model_dir, data_dir)
    photos, bb, fitted, emb = prepared(data_dir, settings, report, with_embeddings=True)
    report.start("calibrate")
    reference, rule = unknown_rule(photos, bb, settings)
    report.start("check")
    checked = check(photos, fitted)
    report.start("estimate")
    metrics = measure(photos, fitted, rule, bb, settings, emb, started, checked)
    report.start("write")
    write(requested, target, data_dir, photos, fitted, reference, rule, bb, settings, metrics)
    return TrainResult(requested, photos.labels, photos.counts(), metrics, photos.skipped, photos.warnings,
                       time.perf_counter() - started, emb.n_computed, checked)


def prepared(data_dir, settings: Settings, report: Reporter, with_embeddings: bool = False):
    """scan → embed → one photo per content → fit: the photos, the views backbone and the calibrated heads (and the
    embeddings' record with ``with_embeddings``); what ``train`` and ``check`` share."""
    report.start("scan")
    tagged = read_manifest(data_dir, settings.labels_file) if settings.labels_file else scan_folders(data_dir)
    report.start("embed")
    bb = with_views(resolve(settings.backbone, settings.weights, settings.cache_root, log=report.log), settings.cache_root)
    emb = embed_files([p.path for p in tagged.photos], bb, EmbeddingCache(settings.cache_root, bb.id), report.progress)
    report.start("dedupe")
    photos = usable(tagged, emb)
    report.start("fit")
    fitted = fit(photos, bb, settings)
    return (photos, bb, fitted, emb) if with_embeddings else (photos, bb, fitted)


def check_folder(data_dir, labels_file=None, backbone: str | None = None, progress=None, log=None, **options) -> CheckResult:
    """What ``imgclf check --labels FILE`` / ``--multi-label`` finds: unreadable photos, and missing and extra labels.
    ``options`` are :func:`imgclf.checks.check`'s (``weights``, ``cache_dir``, ``seed``, …), refused by
    :class:`~imgclf.training.settings.Settings` where several labels per photo cannot have them (``crop``, ``quantize``)."""
    from imgclf.backbones import DEFAULT_BACKBONE

    start = time.perf_counter()
    settings = Settings.of(backbone=backbone or DEFAULT_BACKBONE, labels_file=labels_file, multi_label=labels_file is None,
                           **options)
    photos, bb, fitted = prepared(data_dir, settings, Reporter(None, None, progress, log))
    result = check(photos, fitted)
    result.findings = [unreadable(s.path, s.reason) for s in photos.skipped] + result.findings
    result.root, result.seconds = str(Path(data_dir)), time.perf_counter() - start
    return result


# --- photos -----------------------------------------------------------------------------------------------

def usable(tagged: TaggedSet, emb: Embeddings) -> Photos:
    """One row per readable photo (copies of one photo joined, their labels together), checked for what the heads need."""
    skipped = list(tagged.skipped) + [Skipped(str(p), reason) for p, reason in sorted(emb.errors.items())]
    merged, copies = merge_copies(tagged, dict(zip(emb.paths, emb.hashes)))
    warnings = []
    if copies:
        warnings.append(f"{copies} file{'s are copies' if copies > 1 else ' is a copy'} of another photo: each photo is "
                        "trained once, with the labels of all its copies")
    row = {p: i for i, p in enumerate(emb.paths)}
    index = [row[p.path] for p in merged.photos]
    out = Photos(merged, np.array([p.path for p in merged.photos], dtype=object), merged.matrix(), emb.vectors[index],
                 np.array([p.split for p in merged.photos]), skipped, warnings)
    _check_labels(out)
    return out


def _check_labels(photos: Photos) -> None:
    pool = photos.pool
    for k, lab in enumerate(photos.labels):
        have = int(photos.Y[pool, k].sum())
        if have < MIN_PHOTOS_PER_LABEL:
            raise ImgclfError(f"label {lab!r} has {have} usable photo{'s' if have != 1 else ''}; at least "
                              f"{MIN_PHOTOS_PER_LABEL} are needed to train and measure it")
        if have == int(pool.sum()):
            raise ImgclfError(f"label {lab!r} is on every photo: with no photo without it, there is nothing to tell it from")


# --- fit and calibrate ------------------------------------------------------------------------------------

def fit(photos: Photos, bb: Backbone, settings: Settings) -> Fitted:
    """Heads on the pooled photos: ``C`` by out-of-fold mean AP, Platt scaling and thresholds on those out-of-fold
    scores, the heads refitted on every photo with both folded in."""
    x, Y = photos.x[photos.pool], photos.Y[photos.pool]
    rule = ("the lowest threshold whose out-of-fold precision reaches "
            f"{settings.min_precision:g}" if settings.min_precision is not None else "the best out-of-fold F1")
    return fit_calibrated(x, Y, bb.views or 1, settings.seed, settings.min_precision, rule)


def fit_calibrated(x: np.ndarray, Y: np.ndarray, views: int, seed: int, min_precision: float | None, rule: str = "",
                   C: float | None = None, mix: float = 1.0) -> Fitted:
    """Calibrated heads and thresholds from ``x``, ``Y`` alone (``C`` and the views' blend chosen here unless ``C`` is
    given, with ``mix``)."""
    if C is None:
        C, mix, logits, fold = sigmoid.choose_C(x, Y, seed, views=views)
    else:
        fold = sigmoid.folds(len(Y), seed)
        logits = sigmoid.out_of_fold(x, Y, C, fold, views=views, mixes=(mix,))[mix]
    scale, shift = sigmoid.platt(logits, Y)
    probs = sigmoid.sigmoid(logits * scale + shift)
    thresholds = sigmoid.thresholds(probs, Y, min_precision)
    heads = sigmoid.fit(x, Y, C, views=views, mix=mix).scaled(scale, shift)
    return Fitted(heads, thresholds, rule, len(np.unique(fold)), probs)


# --- the "unknown" rule ------------------------------------------------------------------------------------

def reference(x: np.ndarray, Y: np.ndarray) -> Reference:
    """Prototypes (each label's photos' unit mean) and the labelled photos, from pooled view embeddings."""
    u = l2_normalize(x)
    keep = Y.any(1)
    protos = l2_normalize(np.stack([u[Y[:, k] > 0].mean(0) for k in range(Y.shape[1]) if (Y[:, k] > 0).any()]))
    basis, coords = compact(u[keep])
    return Reference(protos, basis, coords)


def unknown_rule(photos: Photos, bb: Backbone, settings: Settings) -> tuple[Reference, Rejection]:
    """The reference of the labelled photos and the threshold accepting ``target_acceptance`` of new ones, from
    out-of-fold scores (each photo against a reference without its fold)."""
    pool = photos.pool & photos.Y.any(1)
    x, Y = pooled(photos.x[pool], bb.views), photos.Y[pool]
    fold = sigmoid.folds(len(Y), settings.seed)
    scores = np.zeros(len(Y))
    for f in np.unique(fold):
        held = fold == f
        scores[held] = reference(x[~held], Y[~held]).similarity(x[held])
    how = f"{len(np.unique(fold))}-fold out-of-fold scores of the {int(pool.sum())} photos with a label"
    return reference(x, Y), calibrate(scores, settings.target_acceptance, how, bb.min_similarity)


# --- estimate ---------------------------------------------------------------------------------------------

def check(photos: Photos, fitted: Fitted) -> CheckResult:
    """The photos' likely missing and extra labels, from the fit's out-of-fold probabilities."""
    pooled_paths = [str(p) for p in photos.paths[photos.pool]]
    files = [{lab: str(path) for lab, path in p.files} for p, pooled in zip(photos.tagged.photos, photos.pool) if pooled]
    found = label_findings(pooled_paths, photos.labels, photos.Y[photos.pool], fitted.out_of_fold, files)
    return CheckResult(str(photos.tagged.root), len(pooled_paths), photos.labels, found,
                       {"missing_label_at": MISSING_AT, "extra_label_below": EXTRA_BELOW})


def measure(photos: Photos, fitted: Fitted, rule: Rejection, bb: Backbone, settings: Settings, emb: Embeddings,
            started: float, checked: CheckResult) -> dict:
    """``metrics.json`` of a multi-label model: the estimate (a given test split, else nested cross-validation)."""
    names = [str(p) for p in photos.paths]
    if photos.tagged.given_splits and (~photos.pool).any():
        te = ~photos.pool
        probs = fitted.heads.probabilities(photos.x[te])
        answered = probs >= fitted.thresholds
        truth, shown = photos.Y[te], [n for n, t in zip(names, te) if t]
        method = f"the given test split's {int(te.sum())} photos"
    else:
        truth, probs, answered = nested(photos.x, photos.Y, bb.views or 1, settings, fitted.heads.C, fitted.heads.mix)
        shown = names
        method = (f"nested {sigmoid.FOLDS}-fold cross-validation over {len(truth)} photos: each photo scored by heads, "
                  "Platt scaling and thresholds fitted without it (C and the views' blend chosen on all photos)")
    estimate = multilabel_metrics(truth, probs, answered, photos.labels, fitted.thresholds, shown)
    estimate["method"] = method
    return {
        "multi_label": estimate,
        "counts": photos.counts(),
        "photos": {"total": len(photos.Y), "with_no_label": int((~photos.Y.any(1)).sum()),
                   "labels_per_photo": round(float(photos.Y.sum(1).mean()), 3)},
        "skipped": [s.to_dict() for s in photos.skipped],
        "duplicates": [],
        "leakage": [],
        "warnings": photos.warnings,
        "check": checked.to_dict(),
        "head": {"type": "sigmoid-linear per label on L2-normalised embeddings: mix times its best view's score plus "
                         "1 - mix times the pooled views'",
                 "views": bb.views, "C": fitted.heads.C, "mix": fitted.heads.mix, "class_weight": "balanced",
                 "seed": settings.seed,
                 "calibration": f"Platt scaling per label on {fitted.folds}-fold out-of-fold logits",
                 "thresholds": dict(zip(photos.labels, map(float, fitted.thresholds))), "threshold_rule": fitted.rule},
        "rejection": rule.to_dict(),
        "embedding": {"computed": emb.n_computed, "cached": len(emb.paths) - emb.n_computed, "unreadable": len(emb.errors)},
        "train_seconds": round(time.perf_counter() - started, 3),
        "verifier": False,
    }


def nested(x: np.ndarray, Y: np.ndarray, views: int, settings: Settings, C: float,
           mix: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every photo's probabilities and answers from heads, scalings and thresholds fitted on the other folds."""
    outer = sigmoid.folds(len(Y), settings.seed + 1)
    probs = np.zeros(Y.shape)
    answered = np.zeros(Y.shape, bool)
    for f in np.unique(outer):
        held = outer == f
        if (Y[~held].sum(0) == 0).any() or (Y[~held].sum(0) == (~held).sum()).any():
            heads, th = sigmoid.fit(x[~held], Y[~held], C, views=views, mix=mix), np.full(Y.shape[1], 0.5)
        else:
            inner = fit_calibrated(x[~held], Y[~held], views, settings.seed, settings.min_precision, C=C, mix=mix)
            heads, th = inner.heads, inner.thresholds
        probs[held] = heads.probabilities(x[held])
        answered[held] = probs[held] >= th
    return Y, probs, answered


# --- write ------------------------------------------------------------------------------------------------

def write(requested: Path, model_dir: Path, data_dir, photos: Photos, fitted: Fitted, ref: Reference, rule: Rejection,
          bb: Backbone, settings: Settings, metrics: dict) -> None:
    """The model folder, whole or not at all."""
    from imgclf.files import atomic_directory, file_sha256, to_json, write_bytes_atomic, write_json_atomic, writing_to
    from imgclf.report.card import render_card
    from imgclf.report.multilabel import write_multilabel_report
    from imgclf.runtime import artifact
    from imgclf.training.fusion import add_similarity, fuse_views
    from imgclf.training.table import relative
    from imgclf.training.write import metadata_common

    meta = metadata_common(bb, photos.labels, photos.tagged.root, photos.tagged.given_splits, settings,
                           maps=bb.feature_map is not None)
    meta["head"] = {"type": metrics["head"]["type"], "C": fitted.heads.C, "mix": fitted.heads.mix, "seed": settings.seed}
    meta["multi_label"] = {"thresholds": [float(t) for t in fitted.thresholds], "rule": fitted.rule,
                           "min_precision": settings.min_precision, "source": photos.tagged.source}
    meta["rejection"] = rule.to_dict()
    meta["history"] = [{"action": "train", "at": meta["created"], "photos": len(photos.Y)}]
    labelled = photos.pool & photos.Y.any(1)
    index = {"photos": [[relative(p, photos.tagged.root), ";".join(lab for lab, y in zip(photos.labels, row) if y)]
                        for p, row in zip(photos.paths[labelled], photos.Y[labelled])]}
    artifact.check_output(requested, data_dir)
    with writing_to(requested, "the model to"), atomic_directory(model_dir) as tmp:
        pins = {artifact.PINNED_PREPROCESSING: json.dumps(bb.preprocessing.to_dict()),
                artifact.PINNED_MULTI_LABEL: artifact.digest(meta["multi_label"])}
        embedding = fuse_views(bb.onnx_path, fitted.heads, photos.labels, tmp / artifact.MODEL_FILE, pins, bb.feature_map,
                               bb.feature_map_size)
        data = (to_json(index) + "\n").encode("utf-8")
        add_similarity(tmp / artifact.MODEL_FILE, ref, {artifact.PINNED_RULE: json.dumps(meta["rejection"]),
                                                          artifact.PINNED_NEIGHBORS: hashlib.sha256(data).hexdigest()},
                       embedding=embedding)
        meta["onnx"]["sha256"] = file_sha256(tmp / artifact.MODEL_FILE)
        write_json_atomic(tmp / artifact.LABELS_FILE, photos.labels)
        write_bytes_atomic(tmp / artifact.NEIGHBORS_FILE, data)
        write_json_atomic(tmp / artifact.META_FILE, meta)
        write_json_atomic(tmp / artifact.METRICS_FILE, metrics)
        (tmp / artifact.CARD_FILE).write_text(render_card(meta, metrics), encoding="utf-8")
        write_multilabel_report(tmp / artifact.REPORT_FILE, meta, metrics, title=f"imgclf model {requested.name}: training report")
