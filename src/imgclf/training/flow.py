"""``train``: photos on disk → embeddings → head and rule → a self-contained model folder, stage by stage
(:mod:`~imgclf.training.stages`), each reporting :class:`~imgclf.training.events.Event`\\ s."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from imgclf.backbones import DEFAULT_BACKBONE, Backbone
from imgclf.data import Dataset
from imgclf.embeddings import Embeddings, Progress
from imgclf.runtime import artifact
from imgclf.training import stages
from imgclf.training.events import Event, Reporter
from imgclf.training.finetune import FineTuneConfig
from imgclf.training.measure import measure
from imgclf.training.settings import Settings
from imgclf.training.result import TrainResult  # noqa: F401 (what train returns, re-exported)
from imgclf.training.write import write


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
    on_event: Callable[[Event], None] | None = None,
    cancel: threading.Event | None = None,
    private: bool = False,
    hierarchy: bool = False,
    labels_file: str | os.PathLike | None = None,
    multi_label: bool = False,
    min_precision: float | None = None,
) -> TrainResult:
    """Train a classifier on ``data_dir`` and write it to ``model_dir`` (atomically).

    ``data_dir`` holds ``<label>/<images>`` or ``train|val|test/<label>/<images>``.
    ``augment`` adds that many cached augmented views of each training photo (see :mod:`imgclf.data.views`).
    ``fine_tune`` (True or a :class:`FineTuneConfig`) trains the backbone's last blocks too.
    The "unknown" rule is calibrated to accept ``target_acceptance`` of in-distribution photos;
    an ``unknown/`` or ``_background/`` label folder is trained as the class ``unknown``.
    ``on_event`` receives every stage's :class:`~imgclf.training.events.Event`; setting ``cancel`` stops the run
    between batches (:class:`~imgclf.training.events.Cancelled`, nothing written). ``progress(done, total)`` and
    ``log(message)`` are the older callbacks, still called.
    ``quantize`` uses the int8 backbone (calibrated on the training photos; see :mod:`imgclf.backbones.quantize`).
    ``backbone="face"`` embeds the largest face in each photo (:mod:`imgclf.runtime.faces`; photos
    without one are skipped); ``crop="face"`` shows any other backbone only the face.
    ``private`` keeps no trace of single training photos in the model folder: no embeddings (the "unknown" score is
    the cosine to the nearest label's mean), no paths, so no neighbours and no ``imgclf add``. ``hierarchy`` reads nested
    label folders (``animals/birds/robin/``) as a tree: answers stop at the deepest level sure enough
    (:mod:`imgclf.runtime.hierarchy`). ``labels_file`` (CSV ``path,labels`` or JSON Lines, paths relative to
    ``data_dir``) or ``multi_label`` (label folders where one photo may be in several) train a model that answers
    several labels per photo (:mod:`imgclf.training.multilabel`); ``min_precision`` sets each label's threshold to
    the lowest whose out-of-fold precision reaches it (default: the best F1).
    Raises :class:`ImgclfError` for data the classifier cannot be trained on.
    """
    settings = Settings.of(backbone=backbone, weights=weights, seed=seed, cache_dir=cache_dir, val_fraction=val_fraction,
                           test_fraction=test_fraction, fine_tune=fine_tune, augment=augment, target_acceptance=target_acceptance,
                           command=command, embeddings=embeddings, quantize=quantize, crop=crop, private=private,
                           hierarchy=hierarchy, labels_file=labels_file, multi_label=multi_label, min_precision=min_precision)
    return run(data_dir, model_dir, settings, Reporter(on_event, cancel, progress, log))


def run(data_dir, model_dir, settings: Settings, report: Reporter) -> TrainResult:
    """The stages of a training run, in order (``settings`` already checked)."""
    if settings.multi:
        from imgclf.training import multilabel

        return multilabel.run(data_dir, model_dir, settings, report)
    started = time.perf_counter()
    requested, target = Path(model_dir), artifact.check_output(model_dir, data_dir)
    report.start("scan")
    dataset = stages.scan(data_dir, settings)
    report.start("embed")
    bb = stages.backbone_for(dataset, settings, report)
    emb = stages.embed(dataset, bb, settings, report)
    return learn(requested, target, data_dir, dataset, emb, bb, settings, report, started)


def learn(requested: Path, target: Path, data_dir, dataset: Dataset, emb: Embeddings, bb: Backbone, settings: Settings,
          report: Reporter, started: float, history: list[dict] | None = None, change: dict | None = None) -> TrainResult:
    """Every stage after the embeddings: photos and their vectors → the model folder at ``requested``
    (``history``: what was done to the model before this run, kept in its metadata; ``change``: what ``add`` or
    ``forget`` does in this one)."""
    report.start("dedupe")
    table, cleaning = stages.dedupe(dataset, emb)
    report.start("check")
    checks = stages.check(dataset, emb, bb, settings)
    report.start("fit")
    heads = stages.fit(table, bb, settings, report)
    attempt = stages.fine_tune(table, heads, bb, settings, report) if settings.fine_tune else None
    tuned = attempt if attempt is not None and attempt.kept else None
    if attempt is not None and tuned is None:
        settings = replace(settings, fine_tune=None)  # the frozen model, trained as without --fine-tune
    report.start("calibrate")
    groups = stages.copy_groups(table, checks)
    heads, calibration = stages.calibrate_heads(table, heads, settings, groups)
    sets = stages.label_sets(table, calibration)
    reference, rule = stages.rule(table, bb, settings, groups)
    report.start("estimate")
    metrics = measure(table, heads, calibration, tuned, reference, rule, sets, settings, cleaning, checks, emb, started)
    if attempt is not None:
        metrics["fine_tune"] = attempt.record
    report.start("write")
    entry = write(requested, target, data_dir, table, heads, tuned, reference, rule, sets, bb, settings, metrics, history or [],
                  change)
    return TrainResult(requested, dataset.labels, table.counts(), metrics, cleaning.skipped, cleaning.warnings,
                       time.perf_counter() - started, emb.n_computed, checks, entry if change else None)
