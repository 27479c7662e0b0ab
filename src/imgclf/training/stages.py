"""The stages of :func:`imgclf.train`, each a function of what the ones before it made:

scan → embed → dedupe → check → fit → calibrate → (fine-tune) → rule → estimate → write

Each reads its inputs, returns its outputs and writes nothing but caches; only :mod:`~imgclf.training.write`
touches the model folder. Results a warm re-train would compute again are cached by their inputs (the
embeddings, the checks, the heads, the out-of-fold logits).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from imgclf.backbones import Backbone, resolve
from imgclf.checks import CheckResult, copies, run_checks
from imgclf.checks.labels import imbalance
from imgclf.data import Dataset, ensure_training_photos, normalisation_warnings, scan_labelled
from imgclf.data.duplicates import find_duplicates
from imgclf.data.views import views_for
from imgclf.embeddings import EmbeddingCache, Embeddings, embed_files, embed_views
from imgclf.errors import ImgclfError
from imgclf.runtime.inputs import Skipped
from imgclf.heads.estimate import cross_validates, out_of_fold_logits, out_of_fold_similarity
from imgclf.training.events import Reporter
from imgclf.runtime.label_sets import LabelSets
from imgclf.heads.linear import C_GRID, HeadCache, LinearHead, fit_head, fit_temperature, refit, softmax
from imgclf.heads.rejection import COMPACT_DIMS, NEGATIVE_FOLDERS, UNKNOWN, Reference, Rejection, calibrate
from imgclf.training.settings import Settings
from imgclf.training.table import Cleaning, PhotoTable

#: A label needs at least this many readable photos to be trained and validated.
MIN_PHOTOS_PER_LABEL = 2


# --- scan -------------------------------------------------------------------------------------------------

def scan(data_dir, settings: Settings) -> Dataset:
    """The photos of ``data_dir`` with their labels and splits; ``unknown/`` and ``_background/`` become the class
    ``unknown``, listed last."""
    dataset = scan_labelled(data_dir, settings.val_fraction, settings.test_fraction, cache_root=settings.cache_root)
    if settings.hierarchy:
        from imgclf.data.hierarchy import nest

        dataset = nest(dataset, settings.val_fraction, settings.test_fraction, settings.cache_root)
    negative = [lab for lab in dataset.labels if lab in NEGATIVE_FOLDERS]
    if negative:
        labels = [lab for lab in dataset.labels if lab not in NEGATIVE_FOLDERS]
        if not labels:
            raise ImgclfError("the data has only negative photos (unknown/, _background/): add at least one label folder")
        photos = [replace(p, label=UNKNOWN) if p.label in NEGATIVE_FOLDERS else p for p in dataset.photos]
        dataset = replace(dataset, labels=labels + [UNKNOWN], photos=photos)
    if settings.fine_tune and len(dataset.labels) == 1:
        raise ImgclfError("--fine-tune needs at least two labels (or an unknown/ folder of other photos): a one-label model "
                          "has nothing to tell apart")
    return dataset


# --- embed ------------------------------------------------------------------------------------------------

def backbone_for(dataset: Dataset, settings: Settings, report: Reporter) -> Backbone:
    """The backbone the settings name (``--quantize``: calibrated on the training photos)."""
    calibration = [p.path for p in dataset.photos if p.split == "train"] if settings.quantize else None
    return resolve(settings.backbone, settings.weights, settings.cache_root, log=report.log, quantize=settings.quantize,
                   calibration=calibration, crop=settings.crop)


def embed(dataset: Dataset, bb: Backbone, settings: Settings, report: Reporter) -> Embeddings:
    """Every photo's embedding, through the cache, or read from ``settings.embeddings`` (``imgclf embed``'s file)."""
    if settings.embeddings is not None:  # computed elsewhere (e.g. on Ray): checked against bb, matched by path
        from imgclf.engines.embeddings_file import load_embeddings

        return load_embeddings(settings.embeddings, dataset, bb)
    return embed_files([p.path for p in dataset.photos], bb, EmbeddingCache(settings.cache_root, bb.id), report.progress)


# --- dedupe -----------------------------------------------------------------------------------------------

def dedupe(dataset: Dataset, emb: Embeddings) -> tuple[PhotoTable, Cleaning]:
    """The table of usable photos (one copy of each, every label with training photos) and what was left out and why."""
    by_path = {p.path: p for p in dataset.photos}
    photos = [by_path[p] for p in emb.paths]
    dups = find_duplicates(photos, emb.hashes)
    skipped = dataset.skipped + [Skipped(str(p), reason) for p, reason in sorted(emb.errors.items())] + dups.conflicts
    kept, moved = ensure_training_photos([photos[i] for i in dups.keep], dataset.labels)
    table = PhotoTable.of(dataset, kept, list(np.array(emb.hashes)[dups.keep]), emb.vectors[dups.keep])
    counts = table.counts()
    label_of = {str(p.path): p.label for p in dataset.photos}
    _check_counts(counts, {lab: [s.reason for s in skipped + dups.duplicates if label_of.get(s.path) == lab] for lab in counts})
    warnings = dups.warnings() + moved + _imbalance_warnings(counts) + normalisation_warnings(dataset.labels)
    return table, Cleaning(skipped, dups.duplicates, dups.leaks, warnings)


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


# --- check ------------------------------------------------------------------------------------------------

def check(dataset: Dataset, emb: Embeddings, bb: Backbone, settings: Settings) -> CheckResult:
    """What ``imgclf check`` finds in the same photos (cached by what it depends on)."""
    return run_checks(dataset, emb, bb.preprocessing.input_size, settings.cache_root, settings.seed, bb.id)


# --- fit --------------------------------------------------------------------------------------------------

@dataclass
class Heads:
    """``selected``: fitted on the training split, ``C`` chosen on validation (its validation metrics are honest);
    ``final``: the same ``C`` refitted on train + validation (the head that ships), or the selected head itself when the
    validation split calibrates the confidence (many photos: :func:`~imgclf.heads.estimate.cross_validates`)."""

    selected: LinearHead
    final: LinearHead
    views_computed: int = 0


def fit(table: PhotoTable, bb: Backbone, settings: Settings, report: Reporter) -> Heads:
    """The heads, on the training photos and their ``--augment`` views (cached views; validation and test stay plain)."""
    tr, va = table.train, table.val
    x_fit, y_fit = table.vectors[tr], table.y[tr]
    views_computed = 0
    if settings.augment:
        names = views_for(settings.augment)
        extra, views_computed = embed_views(list(table.paths[tr]), list(table.hashes[tr]), bb,
                                            EmbeddingCache(settings.cache_root, bb.id), names, report.progress)
        ok = ~np.isnan(extra).any(axis=(1, 2))
        x_fit = np.concatenate([x_fit, extra[ok].reshape(-1, bb.dim)])
        y_fit = np.concatenate([y_fit, np.repeat(table.y[tr][ok], len(names))])
    n = len(table.labels)
    heads = HeadCache(settings.cache_root)
    with_val = bool(va.any()) and cross_validates_table(table)  # else the validation split calibrates the confidence
    key = heads.key(x_fit, y_fit, table.vectors[va], table.y[va], n, settings.seed, C_GRID, with_val)
    selected, final = heads.get(key) or (None, None)
    if selected is None:
        selected = fit_head(x_fit, y_fit, n, table.vectors[va], table.y[va], seed=settings.seed)
        final = (refit(selected, np.concatenate([x_fit, table.vectors[va]]), np.concatenate([y_fit, table.y[va]]), n)
                 if with_val else selected)
        heads.put(key, selected, final)
    return Heads(selected, final, views_computed)


# --- calibrate --------------------------------------------------------------------------------------------

@dataclass
class Calibration:
    """The temperature the heads are divided by, fitted on ``logits``: held-out logits of the photos in ``scored``,
    got as ``method`` says. ``held_out``: the photos the estimate is measured on apart (a test split), or none when it
    comes from ``logits`` (cross-validation over every labelled photo)."""

    temperature: float
    held_out: np.ndarray
    scored: np.ndarray | None = None
    logits: np.ndarray | None = None
    folds: int = 0
    method: str = ""


def cross_validates_table(table: PhotoTable) -> bool:
    """:func:`~imgclf.heads.estimate.cross_validates` for the labelled photos of ``table``."""
    return cross_validates(len(table.y), int(table.val.sum()), int(table.test.sum()))


def copy_groups(table: PhotoTable, checks: CheckResult) -> np.ndarray | None:
    """An id per photo of ``table`` that near copies of one picture share (the checks' ``near_duplicate`` pairs,
    :func:`~imgclf.checks.copies.copy_groups`), so cross-validation holds them out together; None when there are none."""
    groups = copies.copy_groups([str(p) for p in table.paths], ((f.path, f.other) for f in checks.of_kind("near_duplicate")))
    return None if len(np.unique(groups)) == len(groups) else groups


def calibrate_heads(table: PhotoTable, heads: Heads, settings: Settings,
                    groups: np.ndarray | None = None) -> tuple[Heads, Calibration]:
    """The heads with calibrated confidences (temperature scaling on held-out logits: out-of-fold logits cached by their
    inputs, near copies held out together (``groups``, :func:`copy_groups`), or with many photos the validation
    split's); a one-label model and a fine-tuned one keep theirs."""
    given = table.test if table.dataset.given_splits and table.test.any() else np.zeros_like(table.test)
    if len(table.labels) == 1 or settings.fine_tune:
        return heads, Calibration(1.0, given)
    if not cross_validates_table(table):
        logits = heads.selected.logits(table.vectors[table.val])
        t = fit_temperature(logits, table.y[table.val])
        cal = Calibration(t, table.test, table.val, logits, 0,
                          f"the validation split's {int(table.val.sum())} photos, scored by the head fitted on the training split")
    else:
        pool = ~given
        cache = HeadCache(settings.cache_root)
        pooled = None if groups is None else groups[pool]
        key = cache.key("out-of-fold", table.vectors[pool], table.y[pool], len(table.labels), heads.final.C, settings.seed,
                        *_present(pooled))
        logits, folds = cache.out_of_fold(key, lambda: out_of_fold_logits(table.vectors[pool], table.y[pool], len(table.labels),
                                                                         heads.final.C, settings.seed, groups=pooled))
        t = fit_temperature(logits, table.y[pool])
        cal = Calibration(t, given, pool, logits, folds, f"{folds}-fold out-of-fold logits of {int(pool.sum())} photos")
    return Heads(heads.selected.tempered(t), heads.final.tempered(t), heads.views_computed), cal


def _present(groups: np.ndarray | None) -> tuple:
    """``groups`` as a part of a cache key: none when there are none (so keys made without copies stay as they were)."""
    return () if groups is None else (groups,)


def label_sets(table: PhotoTable, cal: Calibration) -> LabelSets | None:
    """The label sets' conformity scores, from the same held-out answers the temperature was fitted on (None for a
    one-label or fine-tuned model, which have none)."""
    if cal.logits is None or len(table.labels) < 2:
        return None
    return LabelSets.fit(softmax(cal.logits / cal.temperature), table.y[cal.scored], cal.method)


# --- fine-tune (optional) ---------------------------------------------------------------------------------

@dataclass
class FineTuned:
    """A fine-tuning run: its record and whether it is kept; a kept one has its ``model.onnx`` (moved into the model
    folder as it is) and what it answers for the validation and test photos."""

    record: dict
    onnx: Path | None = None
    val_probs: np.ndarray | None = None
    test_probs: np.ndarray | None = None

    @property
    def kept(self) -> bool:
        return self.onnx is not None


def fine_tune(table: PhotoTable, heads: Heads, bb: Backbone, settings: Settings, report: Reporter) -> FineTuned:
    """Train the backbone's last blocks from the head fitted on the training split (the refitted one has seen the
    validation photos, which would make its "epoch 0" unbeatable on validation). The run is kept only when its best
    epoch answers the validation photos better than that frozen head beyond chance (:func:`finetune.beats_frozen`;
    ``fall_back=False`` keeps it whatever); then the table's embeddings become the
    fine-tuned network's, as the model that ships computes them. Otherwise the frozen model is trained as without
    ``--fine-tune`` and the record says why."""
    from dataclasses import asdict

    from imgclf.training import finetune

    tr, va, te = table.train, table.val, table.test
    n_val = int(va.sum())
    probe_right = heads.selected.probabilities(table.vectors[va]).argmax(1) == table.y[va]
    probe_val_accuracy = float(probe_right.mean()) if n_val else None
    config = settings.fine_tune
    tuned = finetune.fine_tune(bb, heads.selected, list(zip(table.paths[tr], table.y[tr])), list(zip(table.paths[va], table.y[va])),
                               config, progress=report.progress, log=report.log)
    best = float(tuned.val_right.mean()) if n_val else None
    keep, p = finetune.beats_frozen(tuned.val_right, probe_right, config.significance)
    record = {**asdict(config), "probe_val_accuracy": probe_val_accuracy, "best_epoch": tuned.best_epoch,
              "best_val_accuracy": best, "validation_photos": n_val, "chance_of_no_gain": round(p, 4),
              "history": tuned.history, "seconds": round(tuned.seconds, 1), "estimated_seconds": round(tuned.estimate_seconds, 1)}
    if not config.fall_back or keep:
        onnx = settings.cache_root / "tmp" / f"fine-tuned-{os.getpid()}.onnx"
        onnx.parent.mkdir(parents=True, exist_ok=True)
        finetune.export_onnx(tuned.model, bb.preprocessing.input_size, onnx)
        probs, table.vectors = finetune.onnx_outputs(onnx, list(table.paths), bb.preprocessing)  # every photo, by the shipped model
        return FineTuned({**record, "kept": "fine-tuned"}, onnx, probs[va], probs[te])
    gain = int(tuned.val_right.sum()) - int(probe_right.sum())
    why = ("there are no validation photos to show that it helps" if not n_val else
           f"it answered {_more(gain)} of the {n_val} validation photos right than the frozen model did "
           f"({best:.3f} at best against {probe_val_accuracy:.3f})"
           + (f"; chance alone would show a gain that size {100 * p:.0f} % of the time, and at most "
              f"{100 * config.significance:g} % is accepted" if gain > 0 else ""))
    report.log(f"fine-tuning not kept: {why}; the frozen model is trained instead")
    return FineTuned({**record, "kept": "frozen", "why": why})


def _more(gain: int) -> str:
    return f"{gain} more" if gain > 0 else "no more" if gain == 0 else f"{-gain} fewer"


# --- the "unknown" rule ------------------------------------------------------------------------------------

def reference_pool(table: PhotoTable) -> np.ndarray:
    """The photos the reference holds, in its order: train + val photos of known labels."""
    known = [i for i, lab in enumerate(table.labels) if lab != UNKNOWN]
    return (table.train | table.val) & np.isin(table.y, known)


def rule(table: PhotoTable, bb: Backbone, settings: Settings, groups: np.ndarray | None = None) -> tuple[Reference, Rejection]:
    """The reference of the train + val photos of known labels, and the conformal threshold that accepts
    ``settings.target_acceptance`` of new ones, calibrated on scores of photos the reference they are scored against
    never saw, so the rule keeps its promise on new photos: out-of-fold scores of every photo of the reference (each
    against a reference built without its fold), or with many photos (:func:`cross_validates_table`) the validation
    and test splits' scores against a reference of the training split alone."""
    pool = reference_pool(table)
    known = [i for i, lab in enumerate(table.labels) if lab != UNKNOWN]
    photos = not settings.private
    reference = Reference.fit(table.vectors[pool], table.y[pool], known, photos=photos)
    if not cross_validates_table(table):
        inside, scored = pool & table.train, (table.val | table.test) & np.isin(table.y, known)
        scores = Reference.fit(table.vectors[inside], table.y[inside], known, photos=photos).similarity(table.vectors[scored])
        how = f"the validation and test splits' {int(scored.sum())} photos, scored against the training split's"
    else:
        cache = HeadCache(settings.cache_root)
        pooled = None if groups is None else groups[pool]
        key = cache.key("out-of-fold-similarity", COMPACT_DIMS, table.vectors[pool], table.y[pool], known, settings.seed,
                        *_present(pooled), *(() if photos else ("prototypes only",)))
        scores, folds = cache.out_of_fold(key, lambda: out_of_fold_similarity(table.vectors[pool], table.y[pool], known,
                                                                              settings.seed, pooled, photos=photos))
        how = (f"{folds}-fold out-of-fold scores of train + val ({int(pool.sum())} photos"
               f"{', near copies held out together' if pooled is not None else ''})")
    return reference, calibrate(scores, settings.target_acceptance, how, bb.min_similarity)
