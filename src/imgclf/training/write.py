"""The write stage: the model folder, whole or not at all (``model.onnx``, its metadata, metrics, index, card, report)."""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import sys
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

from imgclf.runtime.artifact import IMGCLF_VERSION as __version__
from imgclf.backbones import Backbone
from imgclf.files import atomic_directory, file_sha256, to_json, write_bytes_atomic, write_json_atomic, writing_to
from imgclf.report import from_training, write_report
from imgclf.report.card import render_card
from imgclf.runtime import artifact
from imgclf.runtime.artifact import (CARD_FILE, FORMAT_VERSION, LABELS_FILE, META_FILE, METRICS_FILE, MODEL_FILE, NEIGHBORS_FILE,
                                     REPORT_FILE, TABLE_FILE)
from imgclf.training import kept
from imgclf.training.fusion import add_similarity, fuse
from imgclf.runtime.hierarchy import DEFAULT_TARGET
from imgclf.runtime.label_sets import LabelSets
from imgclf.heads.rejection import Reference, Rejection
from imgclf.training.settings import Settings
from imgclf.training.stages import FineTuned, Heads, reference_pool
from imgclf.training.table import PhotoTable, relative


def write(requested: Path, model_dir: Path, data_dir, table: PhotoTable, heads: Heads, tuned: FineTuned | None,
          reference: Reference, rule: Rejection, sets: LabelSets | None, bb: Backbone, settings: Settings, metrics: dict,
          history: list[dict], change: dict | None = None) -> dict:
    """Replace ``model_dir`` (checked again: files may have appeared there while embedding) with the trained model.
    ``history`` is what was done to the model before (:mod:`imgclf.training.grow`); this run's own entry, ``change``
    (what ``add`` or ``forget`` did) or a training, stamped with the model's time and photos, is added and returned."""
    meta = metadata(bb, table, heads, settings, maps=bb.feature_map is not None and tuned is None)
    entry = {"action": "train", **(change or {}), "at": meta["created"], "photos": len(table.y)}
    meta["history"] = [*history, entry]
    keeps = can_grow(settings)
    if tuned is not None:
        meta["head"]["fine_tuned"] = True
    meta["rejection"] = rule.to_dict()
    if sets is not None:
        meta["label_sets"] = sets.to_dict()
    if settings.hierarchy:
        meta["hierarchy"] = {"target": DEFAULT_TARGET}
    pool = reference_pool(table)
    neighbors = {"photos": [[relative(p, table.dataset.root), table.labels[c]] for p, c in zip(table.paths[pool], table.y[pool])]}
    write_onnx = (partial(shutil.move, tuned.onnx) if tuned is not None else
                  partial(_fuse_onnx, bb, heads.final, table.labels))
    artifact.check_output(requested, data_dir)
    with writing_to(requested, "the model to"), atomic_directory(model_dir) as tmp:
        write_onnx(tmp / MODEL_FILE)
        index = (to_json(neighbors) + "\n").encode("utf-8")
        pins = {artifact.PINNED_RULE: json.dumps(meta["rejection"])}
        if reference.keeps_photos:
            pins[artifact.PINNED_NEIGHBORS] = hashlib.sha256(index).hexdigest()
        if sets is not None:
            pins[artifact.PINNED_LABEL_SETS] = artifact.digest(meta["label_sets"])
        add_similarity(tmp / MODEL_FILE, reference, pins)
        meta["onnx"]["sha256"] = file_sha256(tmp / MODEL_FILE)
        write_json_atomic(tmp / LABELS_FILE, table.labels)
        if reference.keeps_photos:
            write_bytes_atomic(tmp / NEIGHBORS_FILE, index)
        if keeps:
            _keep_photos(tmp / TABLE_FILE, table, settings.cache_root)
        write_json_atomic(tmp / META_FILE, meta)
        write_json_atomic(tmp / METRICS_FILE, metrics)
        (tmp / CARD_FILE).write_text(render_card(meta, metrics), encoding="utf-8")
        write_report(tmp / REPORT_FILE, from_training(meta, metrics), title=f"imgclf model {requested.name}: training report",
                     heatmaps=_heatmaps(tmp, meta, settings.cache_root))
    return entry


def metadata(bb: Backbone, table: PhotoTable, heads: Heads, settings: Settings, maps: bool) -> dict:
    """``imgclf.json`` (less the checksum of ``model.onnx``, added once it is written)."""
    meta = metadata_common(bb, table.dataset.labels, table.dataset.root, table.dataset.given_splits, settings, maps)
    meta["head"] = {"type": "softmax-linear on L2-normalised embeddings", "C": heads.final.C, "seed": settings.seed}
    return meta


def metadata_common(bb: Backbone, labels: list[str], root, given_splits: bool, settings: Settings, maps: bool) -> dict:
    """What every model's ``imgclf.json`` says, whatever its head: when and how it was made, what it reads and answers."""
    return {
        "format_version": FORMAT_VERSION,
        "imgclf_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "labels": labels,
        "backbone": bb.to_dict(),
        "preprocessing": bb.preprocessing.to_dict(),
        "onnx": {"file": MODEL_FILE, "input": "input",
                 "outputs": ["probabilities", "embedding", "similarity"] + (["cam"] if maps else []),
                 # with an encoder (faces) the graph takes the encoder's output, not the image
                 "input_shape": ["N", bb.dim] if bb.encoder else ["N", 3, bb.preprocessing.input_size, bb.preprocessing.input_size]},
        "data": {"root": str(Path(root).absolute()), "given_splits": given_splits},
        "settings": {"backbone": settings.backbone, "weights": None if settings.weights is None else str(settings.weights),
                     "crop": settings.crop, "private": settings.private, "hierarchy": settings.hierarchy,
                     "multi_label": settings.multi, "min_precision": settings.min_precision,
                     "val_fraction": settings.val_fraction, "test_fraction": settings.test_fraction,
                     "target_acceptance": settings.target_acceptance, "augment": settings.augment,
                     "quantize": settings.quantize, "fine_tune": settings.fine_tune is not None, "can_grow": can_grow(settings)},
        "command": settings.command or "imgclf.train(...)",
        "versions": {"python": platform.python_version(), **_training_versions()},
    }


def can_grow(settings: Settings) -> bool:
    """Whether the model keeps its photos' embeddings (:mod:`imgclf.training.kept`) for ``imgclf add`` and ``forget``: not
    when they could not be computed again for new photos alike (a fine-tuned or quantised network, augmented views)."""
    return not (settings.fine_tune or settings.quantize or settings.augment or settings.private or settings.multi)


def _keep_photos(path: Path, table: PhotoTable, cache_root: Path) -> None:
    """``training-photos.npz``: every row of the table with its fingerprint (from the cache the checks filled)."""
    from imgclf.checks.fingerprints import fingerprints

    prints = fingerprints(list(table.paths), list(table.hashes), cache_root).rows()
    kept.save(path, [relative(p, table.dataset.root) for p in table.paths], table.y, table.split, table.hashes,
              table.vectors, prints)


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


def _fuse_onnx(bb: Backbone, head, labels: list[str], out_path: Path) -> None:
    fuse(bb.onnx_path, head, labels, out_path, {"imgclf_preprocessing": json.dumps(bb.preprocessing.to_dict())},
         feature_map=bb.feature_map)


def _heatmaps(folder: Path, meta: dict, cache_root: Path):
    """The report's heatmaps of the model just written to ``folder`` (None when it has no maps): the model is
    loaded only if an overlay is not in the cache already (the same photos give the same model)."""
    from imgclf.report.heatmaps import Heatmaps
    from imgclf.runtime.model import Model

    if "cam" not in meta["onnx"]["outputs"]:
        return None
    return Heatmaps(lambda: Model.load(folder, threads=1), cache=cache_root / "heatmaps", key=meta["onnx"]["sha256"])

