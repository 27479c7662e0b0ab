"""Who is this person: the whole photo vs the face, with and without a face network.

Usage:
  python benchmarks/faces.py PEOPLE_DIR [--strangers DIR]

PEOPLE_DIR holds one folder per person (e.g. examples/faces/people); STRANGERS holds faces
of people not in it. For three inputs to the same linear head:
  (a) efficientnet_lite0 on the whole photo (the classic retrain.py set-up),
  (b) efficientnet_lite0 on the face only (--crop face),
  (c) dlib's face descriptor of the aligned face (--backbone face),
it prints leave-one-out accuracy, the mean probability given to the right person (the
"46 %" of the classic workflow), the AUROC of strangers against the held-out photos
(prototype similarity, the "unknown" rule), and embedding time per photo. Photos in which
no face is found are left out of every row, so all rows score the same photos.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from imgclf.backbones import resolve
from imgclf.data import scan_labelled
from imgclf.runtime.inputs import walk_files
from imgclf.embeddings.compute import embed_files
from imgclf.heads.linear import fit_head
from imgclf.heads.rejection import Reference, auroc

CONFIGS = {
    "(a) lite0, whole photo": dict(name="efficientnet_lite0"),
    "(b) lite0, --crop face": dict(name="efficientnet_lite0", crop="face"),
    "(c) --backbone face": dict(name="face"),
}


def leave_one_out(x: np.ndarray, y: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per photo: predicted class, probability of its true class, similarity to the others (imgclf's "unknown" score)."""
    pred, p_true, sim = np.zeros(len(y), int), np.zeros(len(y)), np.zeros(len(y))
    for i in range(len(y)):
        rest = np.arange(len(y)) != i
        head = fit_head(x[rest], y[rest], k)
        p = head.probabilities(x[i : i + 1])[0]
        pred[i], p_true[i] = p.argmax(), p[y[i]]
        sim[i] = Reference.fit(x[rest], y[rest], list(range(k))).similarity(x[i : i + 1])[0]
    return pred, p_true, sim


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("people", type=Path)
    ap.add_argument("--strangers", type=Path)
    args = ap.parse_args()
    ds = scan_labelled(args.people, val_fraction=0.0, test_fraction=0.0)
    strangers = sorted(walk_files(args.strangers)) if args.strangers else []
    paths = [p.path for p in ds.photos]
    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for row, cfg in CONFIGS.items():
            bb = resolve(cfg["name"], cache_dir=tmp, crop=cfg.get("crop"))
            t = time.perf_counter()
            emb = embed_files(paths + strangers, bb, None)
            per_photo = (time.perf_counter() - t) / len(paths + strangers)
            runs[row] = (emb, per_photo)
    # score the same photos in every row: those in which a face was found
    usable = [p for p in paths if all(p in emb.paths for emb, _ in runs.values())]
    usable_strangers = [p for p in strangers if all(p in emb.paths for emb, _ in runs.values())]
    label = {p.path: ds.labels.index(p.label) for p in ds.photos}
    y = np.array([label[p] for p in usable])
    print(f"{len(usable)} photos of {len(ds.labels)} people with a face found ({len(paths) - len(usable)} without), "
          f"{len(usable_strangers)} strangers")
    print(f"{'':26} {'LOO accuracy':>12} {'p(right person)':>16} {'stranger AUROC':>15} {'ms/photo':>9}")
    for row, (emb, per_photo) in runs.items():
        index = {p: i for i, p in enumerate(emb.paths)}
        x = emb.vectors[[index[p] for p in usable]]
        pred, p_true, sim = leave_one_out(x, y, len(ds.labels))
        if usable_strangers:
            xs = emb.vectors[[index[p] for p in usable_strangers]]
            out = Reference.fit(x, y, list(range(len(ds.labels)))).similarity(xs)
            roc = f"{auroc(sim, out):.3f}"
        else:
            roc = "n/a"
        print(f"{row:26} {np.mean(pred == y):12.3f} {np.mean(p_true):16.3f} {roc:>15} {1000 * per_photo:9.0f}")


if __name__ == "__main__":
    main()
