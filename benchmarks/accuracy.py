"""Held-out accuracy and wall time of `imgclf train` on a labelled folder.

Usage: python benchmarks/accuracy.py DATA_DIR [--folds 5] [--seed 0]

Prints: the cold train (empty cache: ONNX export + embedding of every photo), the warm
train (same photos, everything cached) and their ratio; the accuracy of the trained
model on its own validation and test splits; and repeated stratified k-fold accuracy
of the same head on the cached embeddings (mean ± std over folds), so the figure is
not one lucky split.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def run_train(data: Path, out: Path, cache: Path) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "imgclf.cli", "train", str(data), "-o", str(out), "--cache-dir", str(cache), "-q"],
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def kfold_accuracy(data: Path, cache: Path, folds: int, seed: int) -> list[float]:
    from sklearn.model_selection import StratifiedKFold

    from imgclf.backbones import resolve
    from imgclf.cache import EmbeddingCache
    from imgclf.datasets import scan_labelled
    from imgclf.embedding import embed_files
    from imgclf.head import fit_head

    ds = scan_labelled(data, 0, 0)
    bb = resolve(cache_dir=cache)
    emb = embed_files([p.path for p in ds.photos], bb, EmbeddingCache(cache, bb.id))
    label_of = {p.path: p.label for p in ds.photos}
    y = np.array([ds.labels.index(label_of[p]) for p in emb.paths])
    x = emb.vectors
    accs = []
    for rep in range(2):
        skf = StratifiedKFold(folds, shuffle=True, random_state=seed + rep)
        for tr, te in skf.split(x, y):
            # C is chosen on a validation part of the training folds only; the held-out fold is touched once.
            inner = StratifiedKFold(5, shuffle=True, random_state=seed).split(x[tr], y[tr])
            fit_idx, val_idx = next(inner)
            head = fit_head(x[tr][fit_idx], y[tr][fit_idx], len(ds.labels), x[tr][val_idx], y[tr][val_idx], seed=seed)
            accs.append(float(np.mean(head.probabilities(x[te]).argmax(1) == y[te])))
    return accs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cold = run_train(args.data_dir, tmp / "model", tmp / "cache")
        warm = run_train(args.data_dir, tmp / "model", tmp / "cache")
        metrics = json.loads((tmp / "model" / "metrics.json").read_text())
        accs = kfold_accuracy(args.data_dir, tmp / "cache", args.folds, args.seed)
    n = sum(sum(c.values()) for c in metrics["counts"].values())
    print(f"dataset: {args.data_dir} ({n} photos, {len(metrics['counts'])} labels)")
    print(f"cold train (export + embed all): {cold:6.1f} s")
    print(f"warm train (all cached):         {warm:6.1f} s   ratio warm/cold = {warm / cold:.3f}")
    for split in ("val", "test"):
        s = metrics.get(split)
        print(f"{split:4s} split accuracy:             {s['accuracy']:.3f} ({s['n']} photos)" if s else f"{split}: none")
    print(f"{args.folds}-fold x2 held-out accuracy:     {np.mean(accs):.3f} ± {np.std(accs):.3f} (min {min(accs):.3f}, max {max(accs):.3f})")


if __name__ == "__main__":
    main()
