"""The model folder: its file names, its schema, and the rules for reading and replacing it.

Every consumer (the CLI, the Python API, the server, the engines, the exports) opens a model
folder through this module: :func:`read` (``imgclf.json``, ``labels.json``), :func:`load_verified`
(``model.onnx`` against its checksum), :func:`check_session` (the graph against the labels, and the
labels, preprocessing, "unknown" threshold and ``neighbors.json`` checksum that ``model.onnx`` carries,
so every file that changes an answer is covered by its checksum), :func:`read_neighbors` and
:func:`read_metrics`. Each file is parsed within a size limit and validated completely, or
:class:`ImgclfError` says in one line what is damaged. ``train`` asks :func:`check_output` before it
writes, so it never deletes a file that imgclf did not write.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

from imgclf.errors import ImgclfError
from imgclf.files import few

T = TypeVar("T")

MODEL_FILE = "model.onnx"
LABELS_FILE = "labels.json"
META_FILE = "imgclf.json"
METRICS_FILE = "metrics.json"
CARD_FILE = "README.md"
REPORT_FILE = "report.html"
#: The training photos behind the ``photo_similarities`` output, in its order: ``{"photos": [[path, label], …]}``,
#: paths relative to the data folder (``predict --neighbors``).
NEIGHBORS_FILE = "neighbors.json"
#: Every training photo's embedding, label, split and fingerprint, so ``imgclf add`` and ``forget`` work without the
#: photos (:mod:`imgclf.training.kept`); left out by ``train --private``.
TABLE_FILE = "training-photos.npz"
#: The fused ``model.onnx``'s input and outputs (:mod:`imgclf.training.fusion` writes them, :mod:`imgclf.runtime.model` reads them).
INPUT = "input"
PROBABILITIES = "probabilities"
EMBEDDING = "embedding"
#: The element-wise largest of the views' embeddings (N, dim) in a model that sees ten views of each photo
#: (:mod:`imgclf.backbones.views`): what its "unknown" rule compares, and the ``embedding`` its exports answer.
POOLED_EMBEDDING = "imgclf_pooled_embedding"
#: The "unknown" rule's score (N).
SIMILARITY = "similarity"
#: Class activation maps (N, classes, h, w): a map's mean plus the label's bias is its logit.
CAM = "cam"
#: Cosine similarity to every training photo of the reference (N, photos), in ``neighbors.json``'s order.
PHOTO_SIMILARITIES = "photo_similarities"
#: The fused graph's weight that grows with the training photos: their coordinates in the reference basis.
REFERENCE_COORDS = "imgclf_reference_coords"
#: SVG plots written beside a report (an evaluation report puts its own prefix before each name).
PLOT_FILES = {
    "confusion": "confusion_matrix.svg",
    "confusion_normalized": "confusion_matrix_normalized.svg",
    "reliability": "reliability.svg",
}
#: The PNG plots of model folders written before imgclf drew SVG; still imgclf's own files.
_OLD_PLOT_FILES = ("confusion_matrix.png", "confusion_matrix_normalized.png", "reliability.png")
#: Every file ``imgclf train`` writes into a model folder; nothing else may be in one it replaces.
ARTEFACTS = frozenset({MODEL_FILE, LABELS_FILE, META_FILE, METRICS_FILE, CARD_FILE, REPORT_FILE, NEIGHBORS_FILE, TABLE_FILE, *PLOT_FILES.values(), *_OLD_PLOT_FILES})
#: The newest model-folder format this version reads and the one it writes.
FORMAT_VERSION = 1
#: The version of imgclf, as every file it writes records it (the package's ``__version__``).
IMGCLF_VERSION = "0.1.0"
#: Plausible bounds of the preprocessing fields; anything outside is a damaged or hostile file.
_MAX_INPUT_SIZE = 4096
#: The largest each JSON file of a model folder may be (bytes); larger ones are damaged or hostile.
MAX_BYTES = {META_FILE: 16 * 2**20, LABELS_FILE: 16 * 2**20, METRICS_FILE: 512 * 2**20, NEIGHBORS_FILE: 1024 * 2**20}
#: ``model.onnx``'s metadata keys that pin the other files' answer-changing contents (written by training).
PINNED_LABELS, PINNED_PREPROCESSING, PINNED_RULE, PINNED_NEIGHBORS, PINNED_LABEL_SETS, PINNED_MULTI_LABEL = (
    "labels", "imgclf_preprocessing", "imgclf_rejection", "imgclf_neighbors_sha256", "imgclf_label_sets_sha256",
    "imgclf_multi_label_sha256")


def digest(value) -> str:
    """SHA-256 of ``value`` as canonical JSON (what ``model.onnx`` pins of a large part of ``imgclf.json``)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Folder:
    """A validated model folder's metadata and labels."""

    path: Path
    meta: dict
    labels: list[str]


def is_model_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding an imgclf model (its ``imgclf.json``)."""
    return (Path(path) / META_FILE).is_file()


def read(model_dir: str | os.PathLike) -> Folder:
    """Read and validate ``imgclf.json`` and ``labels.json``.

    ``model.onnx`` is checked against its checksum by :func:`load_verified`, and its outputs
    against the labels by :func:`check_session` once a session is open.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ImgclfError(f"model folder not found: {model_dir}")
    meta = _read_json(model_dir, META_FILE)
    labels = _read_json(model_dir, LABELS_FILE)
    where = model_dir / META_FILE
    if not isinstance(meta, dict):
        raise ImgclfError(f"{where} is damaged: not a JSON object")
    _check_meta(meta, where)
    _check_labels(labels, model_dir / LABELS_FILE)
    if isinstance(meta.get("labels"), list) and meta["labels"] != labels:
        raise ImgclfError(f"{model_dir} is inconsistent: {LABELS_FILE} and {META_FILE} list different labels")
    if not (model_dir / MODEL_FILE).is_file():
        raise ImgclfError(f"{model_dir} is not a complete imgclf model folder ({MODEL_FILE} missing)")
    return Folder(model_dir, meta, labels)


def load_verified(folder: Folder, build: Callable[[bytes], T]) -> T:
    """``build(data)`` on the bytes of ``model.onnx``, which must match the SHA-256 recorded at training.

    The bytes are hashed while ``build`` runs (hashing releases the GIL), and what ``build``
    made from them is only returned once they matched: a session is never built from one
    file and checked against another.
    """
    onnx_path = folder.path / MODEL_FILE
    try:
        data = onnx_path.read_bytes()
    except OSError as e:
        raise ImgclfError(f"cannot read {onnx_path}: {e.strerror or e}") from None
    expected = folder.meta.get("onnx", {}).get("sha256")
    digest = hashlib.sha256()
    hashing = threading.Thread(target=digest.update, args=(data,), daemon=True)
    if expected is not None:
        hashing.start()
    try:
        built = build(data)
    finally:
        if expected is not None:
            hashing.join()
    if expected is not None and digest.hexdigest() != expected:
        raise ImgclfError(f"{onnx_path} does not match its checksum in {META_FILE}: the file was changed or damaged")
    return built


def check_session(session, folder: Folder) -> None:
    """The ONNX graph must answer one probability per label (and may add ``similarity``)."""
    outputs = {o.name: o for o in session.get_outputs()}
    probs = outputs.get("probabilities")
    if probs is None:
        raise ImgclfError(f"{folder.path / MODEL_FILE} has no 'probabilities' output: not an imgclf model")
    shape = list(probs.shape or [])
    classes = shape[-1] if len(shape) == 2 else None
    if not isinstance(classes, int) or classes != len(folder.labels):
        raise ImgclfError(
            f"{folder.path} is inconsistent: {LABELS_FILE} has {len(folder.labels)} labels, "
            f"{MODEL_FILE} answers {classes if isinstance(classes, int) else 'an unknown number of'} probabilities"
        )
    _check_pinned(pinned(session), folder)


def pinned(session) -> dict[str, str]:
    """The metadata ``model.onnx`` carries (covered by its checksum)."""
    try:
        return dict(session.get_modelmeta().custom_metadata_map)
    except Exception:
        return {}


def _check_pinned(pins: dict[str, str], folder: Folder) -> None:
    """``labels.json`` and ``imgclf.json``'s preprocessing and threshold must say what ``model.onnx`` says."""
    def differs(key: str, ours) -> bool:
        if key not in pins:
            return False  # written before this check existed
        try:
            return json.loads(pins[key]) != ours
        except ValueError:
            return True

    rule = folder.meta.get("rejection")
    for key, ours, what in ((PINNED_LABELS, folder.labels, LABELS_FILE),
                            (PINNED_PREPROCESSING, folder.meta.get("preprocessing"), f"{META_FILE}'s preprocessing"),
                            (PINNED_RULE, rule, f"{META_FILE}'s 'unknown' rule")):
        if differs(key, ours):
            raise ImgclfError(f"{folder.path} is inconsistent: {what} is not what {MODEL_FILE} was trained with (the file was "
                              "changed or damaged)")
    sets = folder.meta.get("label_sets")
    pinned_era = PINNED_LABEL_SETS in pins or PINNED_RULE in pins  # a folder written since model.onnx pins what it answers by
    if pinned_era and pins.get(PINNED_LABEL_SETS) != (None if sets is None else digest(sets)):
        raise ImgclfError(f"{folder.path} is inconsistent: {META_FILE}'s label sets are not what {MODEL_FILE} was trained with "
                          "(the file was changed or damaged)")
    multi = folder.meta.get("multi_label")
    if pinned_era and pins.get(PINNED_MULTI_LABEL) != (None if multi is None else digest(multi)):
        raise ImgclfError(f"{folder.path} is inconsistent: {META_FILE}'s label thresholds are not what {MODEL_FILE} was trained "
                          "with (the file was changed or damaged)")


def read_neighbors(folder: Folder, session) -> list[tuple[str, str]] | None:
    """``neighbors.json``'s ``[(path, label), …]`` in the order of ``photo_similarities`` (None: the model has no such output),
    checked against the checksum ``model.onnx`` carries, the output's width and the labels (a model of several labels
    per photo names each photo's labels joined by ``;``)."""
    labels = set(folder.labels)

    def known(label) -> bool:
        if not isinstance(label, str):
            return False
        return label in labels or ("multi_label" in folder.meta and set(label.split(";")) <= labels)

    outputs = {o.name: o for o in session.get_outputs()}
    if PHOTO_SIMILARITIES not in outputs:
        return None
    where = folder.path / NEIGHBORS_FILE
    data = _read_file(folder.path, NEIGHBORS_FILE, "a complete imgclf model folder")
    expected = pinned(session).get(PINNED_NEIGHBORS)
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise ImgclfError(f"{where} does not match its checksum in {MODEL_FILE}: the file was changed or damaged")
    parsed = _parse(data, where)
    photos = parsed.get("photos") if isinstance(parsed, dict) else None
    if not isinstance(photos, list) or not all(
            isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) and known(p[1]) for p in photos):
        raise ImgclfError(f"{where} is damaged: expected {{\"photos\": [[path, label], …]}} with the model's labels")
    shape = list(outputs[PHOTO_SIMILARITIES].shape or [])
    if len(shape) != 2 or not isinstance(shape[1], int) or shape[1] != len(photos):
        raise ImgclfError(f"{folder.path} is inconsistent: {NEIGHBORS_FILE} lists {len(photos)} photos, {MODEL_FILE} compares with "
                          f"{shape[1] if len(shape) == 2 else 'an unknown number of'}")
    return [(p[0], p[1]) for p in photos]


def read_metrics(folder: Folder) -> dict:
    """``metrics.json``, checked where it is read (the splits' figures and photos); ``{}`` when the folder has none."""
    where = folder.path / METRICS_FILE
    if not where.exists():
        return {}
    metrics = _read_json(folder.path, METRICS_FILE)
    if not isinstance(metrics, dict):
        raise ImgclfError(f"{where} is damaged: not a JSON object")
    for split in ("train", "val", "test"):
        part = metrics.get(split)
        if part is None:
            continue
        if not isinstance(part, dict):
            raise ImgclfError(f"{where} is damaged: '{split}' must be an object")
        photos = part.get("photos")
        if photos is not None and not (isinstance(photos, list) and all(
                isinstance(p, dict) and isinstance(p.get("path"), str) for p in photos)):
            raise ImgclfError(f"{where} is damaged: '{split}.photos' must be a list of objects with a 'path'")
        for key in ("accuracy", "macro_f1", "n"):
            if key in part and part[key] is not None and not _is_number(part[key]):
                raise ImgclfError(f"{where} is damaged: '{split}.{key}' must be a number")
    if "counts" in metrics and not isinstance(metrics["counts"], dict):
        raise ImgclfError(f"{where} is damaged: 'counts' must be an object")
    return metrics


def _read_json(model_dir: Path, name: str):
    """A model folder's JSON file, parsed within :data:`MAX_BYTES` (size) and the parser's nesting limit (depth)."""
    return _parse(_read_file(model_dir, name, "an imgclf model folder"), model_dir / name)


def _read_file(model_dir: Path, name: str, what: str) -> bytes:
    """The bytes of a model folder's file ``name`` within :data:`MAX_BYTES`, or one line: missing, or damaged and why."""
    try:
        return _read_bounded(model_dir / name, MAX_BYTES[name])
    except FileNotFoundError:
        raise ImgclfError(f"{model_dir} is not {what} ({name} missing)") from None
    except (OSError, ValueError) as e:
        raise ImgclfError(f"{model_dir / name} is damaged: {(e.strerror if isinstance(e, OSError) else None) or e}") from None


def _parse(data: bytes, where: Path):
    """JSON from ``data``, refused when nested deeper than :data:`MAX_DEPTH` before the parser sees it (its own guard
    depends on the interpreter's recursion limit, which libraries raise, and past the C stack it crashes)."""
    if _depth(data) > MAX_DEPTH:
        raise ImgclfError(f"{where} is damaged: nested too deeply (more than {MAX_DEPTH} levels)")
    try:
        return json.loads(data, parse_constant=_no_constant)
    except RecursionError:
        raise ImgclfError(f"{where} is damaged: nested too deeply") from None
    except ValueError as e:
        raise ImgclfError(f"{where} is damaged: {str(e).splitlines()[0][:160]}") from None


#: How deeply a model folder's JSON may nest (imgclf writes at most 5 levels).
MAX_DEPTH = 32
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def _depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in JSON text ``data`` (brackets inside strings not counted)."""
    import numpy as np

    if not data.count(b"[") + data.count(b"{") > MAX_DEPTH:
        return 0
    code = np.frombuffer(_STRINGS.sub(b'""', data), np.uint8)
    step = (np.isin(code, (ord("["), ord("{")))).astype(np.int32) - np.isin(code, (ord("]"), ord("}")))
    return int(np.cumsum(step).max(initial=0))


def _read_bounded(path: Path, limit: int) -> bytes:
    """A regular file's bytes, refused beyond ``limit``; a special file is never read."""
    import stat

    from imgclf.runtime.images import read_at_most

    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a regular file")
        if st.st_size > limit:
            raise ValueError(f"{st.st_size:,} bytes, more than the {limit:,} such a file may hold")
        data = read_at_most(f, st.st_size, limit)
    if data is None:
        raise ValueError(f"more than the {limit:,} bytes such a file may hold")
    return data


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number")


def _check_labels(labels, where: Path) -> None:
    if not isinstance(labels, list) or not labels:
        raise ImgclfError(f"{where} is damaged: expected a non-empty list of label names")
    for lab in labels:
        if not isinstance(lab, str) or not lab.strip():
            raise ImgclfError(f"{where} is damaged: every label must be a non-empty string, found {json.dumps(lab)[:60]}")
    if len(set(labels)) != len(labels):
        raise ImgclfError(f"{where} is damaged: a label is listed twice")


def _check_meta(meta: dict, where: Path) -> None:
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ImgclfError(f"{where} is damaged: format_version must be a positive integer")
    if version > FORMAT_VERSION:
        writer = meta.get("imgclf_version")
        raise ImgclfError(
            f"{where.parent} was written by imgclf {writer if isinstance(writer, str) else '(unknown version)'} in model format "
            f"{version}; this imgclf ({IMGCLF_VERSION}) reads format {FORMAT_VERSION}: upgrade imgclf to use it"
        )
    pre = meta.get("preprocessing")
    if not isinstance(pre, dict):
        raise ImgclfError(f"{where} is damaged: 'preprocessing' is missing")
    problem = _preprocessing_problem(pre)
    if problem:
        raise ImgclfError(f"{where} is damaged: preprocessing {problem}")
    rule = meta.get("rejection")
    if rule is not None:
        threshold = rule.get("threshold") if isinstance(rule, dict) else None
        if not _is_number(threshold):
            raise ImgclfError(f"{where} is damaged: rejection.threshold must be a finite number")
    sets = meta.get("label_sets")
    if sets is not None:
        scores = sets.get("scores") if isinstance(sets, dict) else None
        if not (isinstance(scores, list) and all(_is_number(v) and 0 <= v <= 1 for v in scores)
                and all(a <= b for a, b in zip(scores, scores[1:]))):
            raise ImgclfError(f"{where} is damaged: label_sets.scores must be sorted numbers in [0, 1]")
    multi = meta.get("multi_label")
    if multi is not None:
        thresholds = multi.get("thresholds") if isinstance(multi, dict) else None
        if not (isinstance(thresholds, list) and all(_is_number(v) and 0 <= v <= 1 for v in thresholds)
                and len(thresholds) == len(meta.get("labels") or [])):
            raise ImgclfError(f"{where} is damaged: multi_label.thresholds must be a number in [0, 1] per label")
    backbone = meta.get("backbone", {})
    if not isinstance(backbone, dict) or not isinstance(backbone.get("encoder", None) or "", str):
        raise ImgclfError(f"{where} is damaged: 'backbone' must be an object whose 'encoder' is a name")
    onnx = meta.get("onnx", {})
    if not isinstance(onnx, dict) or not isinstance(onnx.get("sha256", ""), str):
        raise ImgclfError(f"{where} is damaged: 'onnx' must be an object whose 'sha256' is a hex digest")
    data = meta.get("data")
    if data is not None and (not isinstance(data, dict) or not isinstance(data.get("root") or "", str)):
        raise ImgclfError(f"{where} is damaged: 'data' must be an object whose 'root' is a folder name")


def _preprocessing_problem(pre: dict) -> str | None:
    size = pre.get("input_size")
    if not isinstance(size, int) or isinstance(size, bool) or not 8 <= size <= _MAX_INPUT_SIZE:
        return f"input_size must be an integer in [8, {_MAX_INPUT_SIZE}]"
    crop_pct = pre.get("crop_pct")
    if not _is_number(crop_pct) or not 0 < crop_pct <= 1:
        return "crop_pct must be in (0, 1]"
    from imgclf.runtime.preprocessing import INTERPOLATIONS

    if pre.get("interpolation") not in INTERPOLATIONS:
        return f"interpolation must be one of {', '.join(INTERPOLATIONS)}"
    for key in ("mean", "std"):
        v = pre.get(key)
        if not isinstance(v, list) or len(v) != 3 or not all(_is_number(x) for x in v):
            return f"{key} must be three finite numbers"
    if not all(x > 0 for x in pre["std"]):
        return "std must be positive"
    crop = pre.get("crop")
    if crop is not None and not isinstance(crop, str):
        return "crop must be a name or null"
    return None


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# --- writing ---------------------------------------------------------------------------


def check_output(output: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> Path:
    """Where ``train`` may write a model for ``output``, or :class:`ImgclfError` saying why not.

    A symlink is followed (the model replaces the folder it points to). The target must be
    new, empty, or an earlier imgclf model folder that holds nothing but imgclf's own files;
    it may not be, lie inside, or contain ``data_dir``.
    """
    output = Path(output)
    target = Path(os.path.realpath(output))
    if target.exists() and not target.is_dir():
        raise ImgclfError(f"output {output} exists and is not a folder")
    if data_dir is not None:
        data = Path(os.path.realpath(data_dir))
        if target == data:
            raise ImgclfError(f"output {output} is the data folder: write the model somewhere else")
        if data in target.parents and not _hidden_between(data, target):
            raise ImgclfError(f"output {output} is inside the data folder {data_dir}: write the model somewhere else")
        if target in data.parents:
            raise ImgclfError(f"output {output} contains the data folder {data_dir}: replacing it would delete the photos")
    if target.is_dir():
        try:
            names = sorted(os.listdir(target))
        except OSError as e:
            raise ImgclfError(f"cannot read output folder {output}: {e.strerror or e}") from None
        if names and META_FILE not in names:
            raise ImgclfError(f"output folder {output} is not empty and holds no imgclf model ({few(names)}); refusing to replace it")
        foreign = [n for n in names if n not in ARTEFACTS]
        if foreign:
            raise ImgclfError(
                f"output folder {output} holds files imgclf did not write ({few(foreign)}); "
                "move them out or choose another folder"
            )
    return target


def generator(command: str) -> str:
    """The ``generator`` a JSON result of ``imgclf COMMAND`` starts with."""
    return f"imgclf {command} {IMGCLF_VERSION}"


def _hidden_between(data: Path, target: Path) -> bool:
    """Whether ``target`` lies in a hidden folder of ``data`` (a project's ``.imgclf/``): no scan reads photos there."""
    return any(part.startswith(".") for part in target.relative_to(data).parts[:-1])


def check_not_artefact(path: str | os.PathLike, option: str) -> None:
    """Refuse a result file (``--json``, ``--report``, ``embed -o``) that would overwrite a model's own file."""
    path = Path(os.path.realpath(path))
    if path.is_dir():
        raise ImgclfError(f"{option} {path} is a folder: give a file name")
    if path.name in ARTEFACTS and is_model_folder(path.parent):
        raise ImgclfError(f"{option} {path} is a file of the model in {path.parent}: choose another file name")
