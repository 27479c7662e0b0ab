"""A trained model folder, loaded for prediction with ONNX Runtime only (never torch)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

import numpy as np
from PIL import Image

from imgclf.errors import ImageError, ImgclfError
from imgclf.runtime import artifact
from imgclf.runtime.artifact import (  # noqa: F401 (the file names are re-exported)
    CAM, CARD_FILE, LABELS_FILE, META_FILE, METRICS_FILE, MODEL_FILE, NEIGHBORS_FILE, PHOTO_SIMILARITIES, PROBABILITIES, SIMILARITY,
)
from imgclf.runtime.batching import DEFAULT_BATCH, run_batched
from imgclf.runtime.encoders import encoder
from imgclf.runtime.hierarchy import DEFAULT_TARGET, Tree
from imgclf.runtime.label_sets import label_set, LabelSets
from imgclf.runtime.faces import NO_FACE, NoFaceError
from imgclf.runtime.loader import crop_image, pixel_loader
from imgclf.runtime.prediction import ERROR, NO_FACE_STATUS, NONE, NONE_STATUS, OK, UNKNOWN, UNKNOWN_STATUS, Prediction
from imgclf.runtime.preprocessing import Preprocessing

if TYPE_CHECKING:
    from imgclf.runtime.explanation import Explanation

#: Cells per side of the grid occlusion sensitivity greys out (models whose graph has no maps).
OCCLUSION_GRID = 7


def failed(path: str, error: ImageError, error_rate: float | None = None, multi_label: bool = False) -> Prediction:
    """The answer for a photo the model could not score: ``no_face`` for a face model, else ``error``; when label sets
    were asked for (``error_rate``), an empty one, and for a model of several labels per photo no labels, so that
    every row has the same keys (:meth:`Model.failed`)."""
    no_set = None if error_rate is None else []
    no_labels = [] if multi_label else None
    if isinstance(error, NoFaceError):
        return Prediction(path, NO_FACE_STATUS, NO_FACE, label_set=no_set, labels=no_labels)
    return Prediction(path, ERROR, None, error=error.reason, label_set=no_set, labels=no_labels)


class Model:
    """A trained classifier: ``Model.load(dir).predict(paths)``."""

    def __init__(self, model_dir: Path, meta: dict, labels: list[str], session):
        self.dir = model_dir
        self.meta = meta
        self.labels = labels
        self.preprocessing = Preprocessing.from_dict(meta["preprocessing"])
        self._encode = encoder(meta.get("backbone", {}).get("encoder"))
        self._session = session
        self._input = session.get_inputs()[0].name
        outputs = {o.name for o in session.get_outputs()}
        self._outputs = [PROBABILITIES] + ([SIMILARITY] if SIMILARITY in outputs else [])
        #: How :meth:`explain` answers: ``"cam"`` (exact class activation maps from the graph), ``"face"`` (a face
        #: model: the face it read), or ``"occlusion"`` (a graph without maps, e.g. fine-tuned or quantised: how much
        #: the label's probability drops when each cell of the photo is greyed out, one pass per cell).
        self.explanation_method = ("face" if self.preprocessing.crop == "face_chip" else "cam" if CAM in outputs else "occlusion")
        #: Whether :meth:`explain` answers in the cost of about one prediction (not occlusion's many passes).
        self.explainable = self.explanation_method in ("cam", "face")
        self._index = None
        self._metrics: dict | None = None
        rule = meta.get("rejection")
        #: Similarity below which a photo is "unknown" (None: the model never rejects).
        self.threshold: float | None = float(rule["threshold"]) if rule and len(self._outputs) == 2 else None
        #: The held-out scores label sets are drawn from (:mod:`~imgclf.runtime.label_sets`; None: the model has none).
        self.label_sets = LabelSets.from_dict(meta.get("label_sets"))
        multi = meta.get("multi_label")
        #: Each label's threshold (a model of several labels per photo, :mod:`imgclf.training.multilabel`; else None).
        self.label_thresholds = np.asarray(multi["thresholds"], np.float32) if multi else None
        #: How many views of each photo the graph embeds (:mod:`imgclf.backbones.views`; 1: the photo once).
        self.views = int(meta.get("backbone", {}).get("views") or 1)
        #: Photos per graph run by default (:meth:`photos_per_run`).
        self.batch_size = self.photos_per_run(DEFAULT_BATCH)
        tree = meta.get("hierarchy")
        #: The labels' tree (``train --hierarchy``; None: flat labels) and the probability an answer needs to go down a level.
        self.tree = Tree(tuple(labels)) if tree else None
        self.level_target = float(tree.get("target", DEFAULT_TARGET)) if tree else None

    def set_threshold(self, error_rate: float) -> float:
        """The probability a label needs to be in a photo's label set at ``error_rate``; one line
        (:class:`ImgclfError`) when the model has no label sets or the rate is not between 0 and 1."""
        if not (isinstance(error_rate, (int, float)) and 0 < error_rate < 1):
            raise ImgclfError(f"--error-rate must be between 0 and 1 (e.g. 0.05 for sets right 95 % of the time), not {error_rate}")
        if self.label_sets is None:
            why = ("a one-label model answers its label or unknown" if len(self.labels) == 1 else
                   "it answers several labels per photo, each over its own threshold (set at training with "
                   "--min-precision)" if self.multi_label else
                   "it was trained before imgclf made label sets, or fine-tuned; train it again")
            raise ImgclfError(f"{self.dir} has no label sets: {why}")
        return self.label_sets.threshold(float(error_rate))

    def check_error_rate(self, error_rate: float | None) -> None:
        """Refuse label sets this model cannot answer (:meth:`set_threshold`), before any work is done for them; nothing
        when none were asked for."""
        if error_rate is not None:
            self.set_threshold(error_rate)

    def photos_per_run(self, images: int) -> int:
        """How many photos one graph run of about ``images`` images holds: a model that sees each photo as several views
        runs that many times fewer (bounded memory: ten views of 16 photos took 1.9 GB, of one photo 290 MB)."""
        return max(1, images // self.views)

    @property
    def multi_label(self) -> bool:
        """Whether the model answers several labels per photo (``labels`` in every row)."""
        return self.label_thresholds is not None

    def failed(self, path: str, error: ImageError, error_rate: float | None = None) -> Prediction:
        """This model's answer for a photo it could not score (:func:`failed`)."""
        return failed(path, error, error_rate, self.multi_label)

    @classmethod
    def load(cls, model_dir: str | os.PathLike, threads: int | None = None) -> "Model":
        """Open a model folder written by ``imgclf train``; a damaged or inconsistent one raises :class:`ImgclfError`."""
        from imgclf.runtime.session import create_session

        folder = artifact.read(model_dir)

        def build(data: bytes):
            try:
                return create_session(data, threads)
            except Exception as e:
                raise ImgclfError(f"cannot load {folder.path / MODEL_FILE}: {str(e).splitlines()[0][:200]}") from None

        session = artifact.load_verified(folder, build)
        artifact.check_session(session, folder)
        return cls(folder.path, folder.meta, folder.labels, session)

    @property
    def folder(self) -> artifact.Folder:
        """The model folder this model was loaded from, as :mod:`~imgclf.runtime.artifact` reads its other files."""
        return artifact.Folder(self.dir, self.meta, self.labels)

    def close(self) -> None:
        """Release the ONNX Runtime session (and the weights it holds); the model answers nothing after this, but its
        labels, metadata and files stay readable."""
        self._session = None

    def check_files(self) -> "Model":
        """Read and check now the files :meth:`load` leaves until they are needed (``metrics.json``, ``neighbors.json``);
        a damaged one raises :class:`ImgclfError`. The server and ``export`` call it before they start."""
        self.metrics, self.neighbor_index  # noqa: B018 (read for their checks)
        return self

    @property
    def metrics(self) -> dict:
        """``metrics.json``, validated (:func:`~imgclf.runtime.artifact.read_metrics`); ``{}`` if the folder has none."""
        if self._metrics is None:
            self._metrics = artifact.read_metrics(self.folder)
        return self._metrics

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities for a preprocessed batch (N, 3, S, S)."""
        return self._session.run([PROBABILITIES], {self._input: self._encode(batch)})[0]

    def scores(self, batch: np.ndarray, tta: bool = False) -> np.ndarray:
        """(N, classes + 1): the class probabilities, then the similarity (NaN if the model has none).

        ``tta`` averages the probabilities of each image and its mirror image (test-time
        augmentation: twice the work, +0.5 point on flowers-bench, README: Benchmarks); the
        similarity stays that of the image itself, as the "unknown" threshold was calibrated on it.
        """
        if tta:
            both = self.scores(np.concatenate([batch, batch[..., ::-1]]))
            probs = (both[: len(batch), :-1] + both[len(batch) :, :-1]) / 2
            return np.concatenate([probs, both[: len(batch), -1:]], axis=1)
        out = self._session.run(self._outputs, {self._input: self._encode(batch)})
        sim = out[1] if len(out) == 2 else np.full(len(batch), np.nan, np.float32)
        return np.concatenate([out[0], sim[:, None]], axis=1)

    def predict_image(self, image: Image.Image, top_k: int = 3, name: str = "<image>", neighbors: int = 0, **rule) -> Prediction:
        """Predict one decoded RGB image, preprocessed as :meth:`predict` preprocesses files; ``rule`` is ``threshold=`` /
        ``reject=`` as in :meth:`predict`."""
        pre = self.preprocessing
        try:
            batch = pre.batch([pre.pixels(crop_image(image, pre))])
        except ImageError as e:
            return self.failed(name, e, rule.get("error_rate"))
        if not neighbors:
            return self.prediction(name, self.scores(batch)[0], top_k, **rule)
        self._check_neighbors()
        return self._answer(name, self.run(batch, self._outputs + [PHOTO_SIMILARITIES]), 0, top_k, neighbors, **rule)

    def run(self, batch: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        """The graph's outputs ``names`` for a preprocessed batch, by name."""
        return dict(zip(names, self._session.run(names, {self._input: self._encode(batch)})))

    def _answer(self, name: str, out: dict[str, np.ndarray], row: int | None, top_k: int, neighbors: int, **rule) -> Prediction:
        """The :class:`Prediction` of row ``row`` of :meth:`run`'s outputs (``None``: they are one row already),
        with its ``neighbors`` nearest training photos when asked for."""
        def pick(a: np.ndarray) -> np.ndarray:
            return a if row is None else a[row]

        sim = pick(out[SIMILARITY]) if SIMILARITY in out else np.nan
        pred = self.prediction(name, np.append(pick(out[PROBABILITIES]), sim), top_k, **rule)
        if neighbors and pred.status != ERROR:
            pred.neighbors = self.nearest(pick(out[PHOTO_SIMILARITIES]), neighbors)
        return pred

    def _label_index(self, label: str | None, probabilities: np.ndarray | None = None) -> int | None:
        """The index of ``label`` (refused unless the model knows it), else of the best guess in ``probabilities``."""
        if label is not None and label not in self.labels:
            raise ImgclfError(f"--explain-label {label!r} is not one of the model's labels: {', '.join(self.labels)}")
        if label is not None:
            return self.labels.index(label)
        return None if probabilities is None else int(np.argmax(probabilities))

    def explain(self, image: Image.Image, label: str | None = None, top_k: int = 3, name: str = "<image>",
                neighbors: int = 0, **rule) -> tuple[Prediction, Explanation]:
        """One decoded RGB photo's prediction and, from the same forward pass, the map of ``label``
        (default: the best guess) placed on the photo (see :mod:`imgclf.runtime.explanation`)."""
        pred, maps = self.explain_labels(image, label, top_k, name, neighbors, **rule)
        return pred, maps[0]

    def explain_labels(self, image: Image.Image, label: str | None = None, top_k: int = 3, name: str = "<image>",
                       neighbors: int = 0, **rule) -> tuple[Prediction, list[Explanation]]:
        """:meth:`explain` with the maps of every label :meth:`_explained` names (a model of several labels per photo:
        each label it answered), all from the same forward pass."""
        from imgclf.runtime.explanation import crop_box, explain_map

        self._label_index(label)
        pre = self.preprocessing
        if neighbors:
            self._check_neighbors()
        if pre.crop == "face_chip":
            pred, face = self._explain_face(image, label, top_k, name, neighbors, **rule)
            return pred, [face]
        seen = image
        if pre.crop == "face":  # the model sees the square around the face: its map is drawn there
            from imgclf.runtime.faces import face_square

            seen, (cx, cy, half) = face_square(image)
        batch = pre.batch([pre.pixels(seen)])
        maps = [CAM] if self.explanation_method == "cam" else []
        out = self.run(batch, self._outputs + maps + ([PHOTO_SIMILARITIES] if neighbors else []))
        pred = self._answer(name, out, 0, top_k, neighbors, **rule)
        if pre.crop == "face":
            kept = half * pre.input_size / pre.resize_to  # the centre crop of the square
            box = (cx - kept, cy - kept, cx + kept, cy + kept)
        else:
            box = crop_box(image.width, image.height, pre.resize_to, pre.input_size)
        ks = self._explained(label, out[PROBABILITIES][0], pred)
        if maps:
            return pred, [explain_map(self.labels[k], out[CAM][0, k], box, image.size) for k in ks]
        return pred, [explain_map(self.labels[k], self._occlusion(batch, k, float(out[PROBABILITIES][0, k])), box, image.size,
                                  kind="occlusion") for k in ks]

    def _occlusion(self, batch: np.ndarray, k: int, prob: float, grid: int = OCCLUSION_GRID) -> np.ndarray:
        """(grid, grid): how much label ``k``'s probability drops when each cell of the input is set to the
        mean colour (0 after normalisation), one forward pass per cell, in batches."""
        size = batch.shape[-1]
        edges = np.linspace(0, size, grid + 1).round().astype(int)
        masked = np.repeat(batch, grid * grid, axis=0)
        for i in range(grid):
            for j in range(grid):
                masked[i * grid + j, :, edges[i]:edges[i + 1], edges[j]:edges[j + 1]] = 0.0
        step = self.batch_size
        probs = np.concatenate([self.probabilities(masked[s:s + step]) for s in range(0, len(masked), step)])
        return (prob - probs[:, k]).reshape(grid, grid).astype(np.float32)

    def _explain_face(self, image: Image.Image, label: str | None, top_k: int, name: str, neighbors: int,
                      **rule) -> tuple[Prediction, Explanation]:
        """A face model's prediction and the face it read (box and landmarks); raises :class:`NoFaceError`."""
        from imgclf.runtime.faces import outlined_chip
        from imgclf.runtime.explanation import face_explanation

        chip, box, points = outlined_chip(image)
        batch = self.preprocessing.batch([self.preprocessing.pixels(chip)])
        out = self.run(batch, self._outputs + ([PHOTO_SIMILARITIES] if neighbors else []))
        pred = self._answer(name, out, 0, top_k, neighbors, **rule)
        return pred, face_explanation(self.labels[self._label_index(label, out[PROBABILITIES][0])], box, points, image.size)

    def iter_explain(
        self, paths: Iterable[str | os.PathLike], out_dir: str | os.PathLike, label: str | None = None, top_k: int = 3,
        threshold: float | None = None, reject: bool = True, neighbors: int = 0, batch_size: int | None = None,
        error_rate: float | None = None,
    ) -> Iterator[Prediction]:
        """:meth:`predict` with an overlay PNG per photo written into ``out_dir`` (created if need be) and
        each prediction's ``explanation`` set: the same batched, threaded pass as :meth:`predict`, whose
        graph run also answers the maps; the overlays are drawn and written while the next batch runs."""
        from concurrent.futures import ThreadPoolExecutor

        from imgclf.files import writing_to
        from imgclf.runtime.explanation import crop_box, explain_map
        from imgclf.runtime.images import decode, read_bytes, upright_size
        from imgclf.runtime.inputs import iter_inputs
        from imgclf.runtime.loader import draft_side

        self._label_index(label)
        if neighbors:
            self._check_neighbors()
        self.check_error_rate(error_rate)  # before the folder is made or any photo read
        out = Path(out_dir)
        with writing_to(out, "--explain"):
            out.mkdir(parents=True, exist_ok=True)
        pre = self.preprocessing
        if pre.crop or self.explanation_method != "cam":  # finding the face, or occlusion's passes: one photo at a time
            yield from self._iter_explain_each(paths, out, label, top_k, neighbors, threshold=threshold, reject=reject,
                                               error_rate=error_rate)
            return
        names = self._outputs + [CAM] + ([PHOTO_SIMILARITIES] if neighbors else [])
        photos: dict[str, tuple[Image.Image, tuple[int, int]]] = {}

        def load(path: Path) -> np.ndarray:
            data = read_bytes(path)
            photo = decode(data, max_side=draft_side(pre))  # as predict decodes it; big enough for the overlay
            photos[str(path)] = (photo, upright_size(data) or photo.size)
            return pre.pixels(photo)

        def forward(batch: np.ndarray) -> list[np.ndarray]:
            return self._session.run(names, {self._input: self._encode(batch)})

        taken: set[str] = set()
        with ThreadPoolExecutor(1, thread_name_prefix="imgclf-overlay") as drawing:
            pending = []
            for path, result in run_batched(iter_inputs(paths), load, forward, batch_size or self.batch_size, collate=pre.batch):
                if isinstance(result, ImageError):
                    pending.append(self.failed(str(path), result, error_rate))
                    continue
                got = dict(zip(names, result))
                pred = self._answer(str(path), got, None, top_k, neighbors, threshold=threshold, reject=reject,
                                    error_rate=error_rate)
                photo, size = photos.pop(str(path))
                drawn, writes = [], []
                for k in self._explained(label, got[PROBABILITIES], pred):
                    explanation = explain_map(self.labels[k], got[CAM][k], crop_box(*size, pre.resize_to, pre.input_size), size)
                    target = self._heatmap_target(out, path, explanation.label, taken)
                    drawn.append({"heatmap": str(target), **explanation.to_dict()})
                    writes.append(drawing.submit(_write_overlay, explanation, photo, target))
                pred.explanation = self._explanation_row(drawn)
                pending.append((pred, writes))
                while pending and (not isinstance(pending[0], tuple) or all(w.done() for w in pending[0][1])):
                    yield _finished(pending.pop(0))
            for item in pending:
                yield _finished(item)

    def _explained(self, label: str | None, probabilities: np.ndarray, pred: Prediction) -> list[int]:
        """The labels whose maps ``--explain`` draws for one photo: the one asked for, else the best guess, or for a
        model of several labels per photo every label it answered (the best guess when it answered none)."""
        if label is None and self.multi_label and pred.labels:
            return [self.labels.index(a["label"]) for a in pred.labels]
        return [self._label_index(label, probabilities)]

    def _heatmap_target(self, out: Path, path, label: str, taken: set[str]) -> Path:
        """Where ``--explain`` writes one photo's map of ``label`` (:func:`_free_target`; a model of several labels per
        photo names the label: ``photo.roses.heatmap.png``)."""
        return _free_target(out, Path(path).stem + (f".{label}" if self.multi_label else ""), taken)

    def _explanation_row(self, drawn: list[dict]) -> dict:
        """A prediction's ``explanation``: its first map, and for a model of several labels per photo all of them."""
        return dict(drawn[0], **({"maps": drawn} if self.multi_label else {}))

    def _iter_explain_each(self, paths, out: Path, label, top_k, neighbors, **rule) -> Iterator[Prediction]:
        """:meth:`iter_explain` one photo at a time, through :meth:`explain_labels`: for models that look at faces
        (finding the face is most of the work) and for occlusion (many passes per photo)."""
        from imgclf.runtime.images import decode, read_bytes, upright_size
        from imgclf.runtime.inputs import iter_inputs
        from imgclf.runtime.loader import draft_side

        taken: set[str] = set()
        for path in iter_inputs(paths):
            try:
                data = read_bytes(path)
                photo = decode(data, max_side=draft_side(self.preprocessing))
                pred, explanations = self.explain_labels(photo, label, top_k, str(path), neighbors, **rule)
            except ImageError as e:
                yield self.failed(str(path), e, rule.get("error_rate"))
                continue
            drawn = []
            for explanation in explanations:
                explanation = explanation.in_size(upright_size(data) or photo.size)
                target = self._heatmap_target(out, path, explanation.label, taken)
                _write_overlay(explanation, photo, target)
                drawn.append({"heatmap": str(target), **explanation.to_dict()})
            pred.explanation = self._explanation_row(drawn)
            yield pred

    def predict(
        self, paths: Iterable[str | os.PathLike], top_k: int = 3, batch_size: int | None = None,
        threshold: float | None = None, reject: bool = True, tta: bool = False, neighbors: int = 0,
        error_rate: float | None = None,
    ) -> list[Prediction]:
        """Predict files and folders (recursively); unreadable files come back with ``error`` set.

        ``threshold`` overrides the stored "unknown" threshold; ``reject=False`` never answers "unknown";
        ``tta`` also scores each photo's mirror image and averages (see :meth:`scores`); ``neighbors``
        adds the ``neighbors`` most similar training photos to each prediction (:meth:`nearest`); ``error_rate``
        adds each photo's label set, which holds its true label with probability at least 1 − ``error_rate``
        (:mod:`~imgclf.runtime.label_sets`).
        """
        return list(self.iter_predict(paths, top_k, batch_size, threshold, reject, tta, neighbors, error_rate))

    def iter_predict(
        self, paths: Iterable[str | os.PathLike], top_k: int = 3, batch_size: int | None = None,
        threshold: float | None = None, reject: bool = True, tta: bool = False, neighbors: int = 0,
        error_rate: float | None = None,
    ) -> Iterator[Prediction]:
        from imgclf.runtime.inputs import iter_inputs

        if neighbors:
            self._check_neighbors()
        self.check_error_rate(error_rate)  # before any photo is read

        def forward(batch: np.ndarray) -> list[np.ndarray]:
            if not neighbors:
                return [self.scores(batch, tta)]
            if tta:
                return [self.scores(batch, tta), self.run(batch, [PHOTO_SIMILARITIES])[PHOTO_SIMILARITIES]]
            out = self.run(batch, self._outputs + [PHOTO_SIMILARITIES])
            sim = out[SIMILARITY] if SIMILARITY in out else np.full(len(batch), np.nan, np.float32)
            return [np.concatenate([out[PROBABILITIES], sim[:, None]], axis=1), out[PHOTO_SIMILARITIES]]

        files = iter_inputs(paths)
        pre = self.preprocessing
        for path, out in run_batched(files, pixel_loader(pre), forward, batch_size or self.batch_size, collate=pre.batch):
            if isinstance(out, ImageError):
                yield self.failed(str(path), out, error_rate)
                continue
            pred = self.prediction(str(path), out[0], top_k, threshold, reject, error_rate)
            if neighbors and pred.status != ERROR:
                pred.neighbors = self.nearest(out[1], neighbors)
            yield pred

    @property
    def neighbor_index(self) -> list[tuple[str, str]] | None:
        """``[(path, label), …]`` of the training photos behind ``photo_similarities`` (None: the model has none),
        validated and checked against its checksum (:func:`~imgclf.runtime.artifact.read_neighbors`)."""
        if self._index is None:
            self._index = artifact.read_neighbors(self.folder, self._session) or False
        return self._index or None

    def _check_neighbors(self) -> None:
        if self.neighbor_index is None:
            if (self.meta.get("settings") or {}).get("private"):
                raise ImgclfError(f"{self.dir} was trained with --private: it keeps no training photos to name as neighbours")
            raise ImgclfError(f"{self.dir} keeps no index of its training photos ({NEIGHBORS_FILE}): "
                              "retrain it with this imgclf to use --neighbors")

    def nearest(self, photo_similarities: np.ndarray, k: int) -> list[dict]:
        """The ``k`` training photos most like one photo, from its row of ``photo_similarities``."""
        index = self.neighbor_index
        order = np.argsort(-photo_similarities, kind="stable")[:k]
        return [{"path": index[i][0], "label": index[i][1], "similarity": round(float(photo_similarities[i]), 6)} for i in order]

    def prediction(self, name: str, scores: np.ndarray, top_k: int = 3, threshold: float | None = None, reject: bool = True,
                   error_rate: float | None = None) -> Prediction:
        """A :class:`Prediction` from one row of :meth:`scores`, applying the "unknown" rule; with ``error_rate``, its
        label set too (:meth:`set_threshold`)."""
        probs, sim = scores[:-1], float(scores[-1])
        if not np.isfinite(probs).all() or np.isinf(sim):
            return Prediction(name, ERROR, None, error="the model answered no number (NaN): its model.onnx is damaged")
        order = np.argsort(-probs, kind="stable")[: max(1, top_k)]
        top = [{"label": self.labels[i], "confidence": round(float(probs[i]), 6)} for i in order]
        limit = threshold if threshold is not None else self.threshold
        similarity = None if np.isnan(sim) else round(sim, 6)
        unknown = reject and limit is not None and similarity is not None and sim < limit
        chosen = None if error_rate is None else [self.labels[i] for i in label_set(probs, self.set_threshold(error_rate))]
        if self.multi_label:
            return self._labels_answer(name, probs, top, similarity, unknown)
        answer, confidence, levels = top[0]["label"], top[0]["confidence"], None
        if self.tree is not None:  # the deepest level sure enough
            levels, depth = self.tree.walk(probs, self.level_target)
            answer, confidence = levels[depth - 1]["label"], levels[depth - 1]["confidence"]
        return Prediction(name, UNKNOWN_STATUS if unknown else OK, UNKNOWN if unknown else answer, confidence, top,
                          similarity=similarity, label_set=chosen, levels=levels)


    def _labels_answer(self, name: str, probs: np.ndarray, top: list[dict], similarity: float | None,
                       unknown: bool) -> Prediction:
        """A multi-label model's answer: every label over its threshold, most probable first; ``none`` when there is
        none, ``unknown`` when the photo is unlike the training photos (its labels still listed)."""
        over = np.flatnonzero(probs >= self.label_thresholds)
        answered = [{"label": self.labels[i], "confidence": round(float(probs[i]), 6)}
                    for i in over[np.argsort(-probs[over], kind="stable")]]
        if unknown:
            return Prediction(name, UNKNOWN_STATUS, UNKNOWN, top[0]["confidence"], top, similarity, labels=answered)
        if not answered:
            return Prediction(name, NONE_STATUS, NONE, None, top, similarity, labels=[])
        return Prediction(name, OK, answered[0]["label"], answered[0]["confidence"], top, similarity, labels=answered)


def _write_overlay(explanation: "Explanation", photo: Image.Image, target: Path) -> None:
    from imgclf.files import write_bytes_atomic, writing_to

    data = explanation.png(photo)
    with writing_to(target, "--explain"):
        write_bytes_atomic(target, data, durable=False)


def _finished(item) -> Prediction:
    """A prediction whose overlays have been written (a write's error, if any, raised here)."""
    if isinstance(item, tuple):
        pred, written = item
        for w in written:
            w.result()
        return pred
    return item


def _free_target(out: Path, stem: str, taken: set[str]) -> Path:
    """``out/stem.heatmap.png``, or ``stem-2``, ``stem-3``, … when this run took the name already or a
    file there is not an imgclf heatmap (never overwritten)."""
    from imgclf.files import path_kind
    from imgclf.runtime.explanation import is_heatmap

    name, n = stem, 1
    while name in taken or (os.path.lexists(out / f"{name}.heatmap.png") and not is_heatmap(out / f"{name}.heatmap.png")):
        target = out / f"{name}.heatmap.png"
        if name not in taken and path_kind(target) == "special":  # a pipe would block: never opened
            raise ImgclfError(f"--explain {out} holds {target.name}, which is a pipe, device or socket"
                              ": choose another folder for the heatmaps")
        n += 1
        name = f"{stem}-{n}"
    taken.add(name)
    return out / f"{name}.heatmap.png"


def load(model_dir: str | os.PathLike) -> Model:
    """Load a model folder; same as :meth:`Model.load`."""
    return Model.load(model_dir)
