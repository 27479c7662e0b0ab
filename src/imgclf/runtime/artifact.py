"""The model folder: its file names, its schema, and the rules for reading and replacing it.

Every consumer (the CLI, the Python API, the server, the engines) opens a model folder
through :func:`read`, which validates it completely or raises :class:`ImgclfError` with
one line; ``train`` asks :func:`check_output` before it writes, so it never deletes a
file that imgclf did not write.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

from imgclf.errors import ImgclfError

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
#: The fused ``model.onnx``'s input and outputs (:mod:`imgclf.fusion` writes them, :mod:`imgclf.runtime.model` reads them).
INPUT = "input"
PROBABILITIES = "probabilities"
EMBEDDING = "embedding"
#: The "unknown" rule's score (N).
SIMILARITY = "similarity"
#: Class activation maps (N, classes, h, w): a map's mean plus the label's bias is its logit.
CAM = "cam"
#: Cosine similarity to every training photo of the reference (N, photos), in ``neighbors.json``'s order.
PHOTO_SIMILARITIES = "photo_similarities"
#: SVG plots written beside a report (an evaluation report puts its own prefix before each name).
PLOT_FILES = {
    "confusion": "confusion_matrix.svg",
    "confusion_normalized": "confusion_matrix_normalized.svg",
    "reliability": "reliability.svg",
}
#: The PNG plots of model folders written before imgclf drew SVG; still imgclf's own files.
_OLD_PLOT_FILES = ("confusion_matrix.png", "confusion_matrix_normalized.png", "reliability.png")
#: Every file ``imgclf train`` writes into a model folder; nothing else may be in one it replaces.
ARTEFACTS = frozenset({MODEL_FILE, LABELS_FILE, META_FILE, METRICS_FILE, CARD_FILE, REPORT_FILE, NEIGHBORS_FILE, *PLOT_FILES.values(), *_OLD_PLOT_FILES})
#: The newest model-folder format this version reads and the one it writes.
FORMAT_VERSION = 1
#: Plausible bounds of the preprocessing fields; anything outside is a damaged or hostile file.
_MAX_INPUT_SIZE = 4096


@dataclass(frozen=True)
class Folder:
    """A validated model folder's metadata and labels."""

    path: Path
    meta: dict
    labels: list[str]


def is_model_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding an imgclf model (its ``imgclf.json``)."""
    return (Path(path) / META_FILE).is_file()


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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


def _read_json(model_dir: Path, name: str):
    path = model_dir / name
    try:
        return json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except FileNotFoundError:
        raise ImgclfError(f"{model_dir} is not an imgclf model folder ({name} missing)") from None
    except (OSError, ValueError) as e:
        raise ImgclfError(f"{path} is damaged: {str(e).splitlines()[0][:160]}") from None


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
        from imgclf import __version__

        writer = meta.get("imgclf_version")
        raise ImgclfError(
            f"{where.parent} was written by imgclf {writer if isinstance(writer, str) else '(unknown version)'} in model format "
            f"{version}; this imgclf ({__version__}) reads format {FORMAT_VERSION}: upgrade imgclf to use it"
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
    backbone = meta.get("backbone", {})
    if not isinstance(backbone, dict) or not isinstance(backbone.get("encoder", None) or "", str):
        raise ImgclfError(f"{where} is damaged: 'backbone' must be an object whose 'encoder' is a name")
    onnx = meta.get("onnx", {})
    if not isinstance(onnx, dict) or not isinstance(onnx.get("sha256", ""), str):
        raise ImgclfError(f"{where} is damaged: 'onnx' must be an object whose 'sha256' is a hex digest")


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
        if data in target.parents:
            raise ImgclfError(f"output {output} is inside the data folder {data_dir}: write the model somewhere else")
        if target in data.parents:
            raise ImgclfError(f"output {output} contains the data folder {data_dir}: replacing it would delete the photos")
    if target.is_dir():
        try:
            names = sorted(os.listdir(target))
        except OSError as e:
            raise ImgclfError(f"cannot read output folder {output}: {e.strerror or e}") from None
        if names and META_FILE not in names:
            raise ImgclfError(f"output folder {output} is not empty and holds no imgclf model ({_some(names)}); refusing to replace it")
        foreign = [n for n in names if n not in ARTEFACTS]
        if foreign:
            raise ImgclfError(
                f"output folder {output} holds files imgclf did not write ({_some(foreign)}); "
                "move them out or choose another folder"
            )
    return target


def check_not_artefact(path: str | os.PathLike, option: str) -> None:
    """Refuse a result file (``--json``, ``--report``, ``embed -o``) that would overwrite a model's own file."""
    path = Path(os.path.realpath(path))
    if path.is_dir():
        raise ImgclfError(f"{option} {path} is a folder: give a file name")
    if path.name in ARTEFACTS and is_model_folder(path.parent):
        raise ImgclfError(f"{option} {path} is a file of the model in {path.parent}: choose another file name")


def _some(names: list[str], n: int = 3) -> str:
    shown = ", ".join(names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")
