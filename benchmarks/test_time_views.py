"""One label per photo, seen as several views at test and training time: held-out accuracy and near-unknown AUROC.

Usage: python benchmarks/test_time_views.py [DATA_DIR] [--repeats 2]
       (default: ../shared/datasets/flowers-bench)

Every photo is embedded by the default backbone (the whole photo, 224 px centre crop) and by the views backbone of
several labels per photo (``imgclf.backbones.views``: the photo at 448 px seen whole and as a 3 × 3 grid of half-size
crops). Each variant's features train imgclf's softmax head (``fit_head``: C chosen on a validation part of the
training folds) on stratified 5-fold splits, repeated; near-unknown AUROC leaves each label out in turn (a reference of
the other labels' training-fold photos, scored on held-out photos of the known labels against the left-out label's).
Time per photo: the graph each variant needs, on 32 photos, one thread per run as training runs them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def folds(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty(len(y), int)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        out[idx] = np.arange(len(idx)) % k
    return out


def seconds_per_photo(bb, paths: list[Path]) -> float:
    from imgclf.embeddings import embed_files

    started = time.perf_counter()
    embed_files(paths, bb, None)
    return (time.perf_counter() - started) / len(paths)


def main() -> None:
    from imgclf.backbones import resolve
    from imgclf.backbones.views import with_views
    from imgclf.data import scan_labelled
    from imgclf.embeddings import EmbeddingCache, embed_files
    from imgclf.files.locations import default_cache_dir
    from imgclf.heads.linear import fit_head, l2_normalize
    from imgclf.heads.rejection import Reference, auroc

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, nargs="?", default=ROOT.parent / "shared" / "datasets" / "flowers-bench")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    cache = default_cache_dir()
    ds = scan_labelled(args.data)
    paths, labels = [p.path for p in ds.photos], sorted(ds.labels)
    y = np.array([labels.index(p.label) for p in ds.photos])
    bb = resolve(cache_dir=cache)
    vb = with_views(bb, cache)
    whole = embed_files(paths, bb, EmbeddingCache(cache, bb.id)).vectors
    views = embed_files(paths, vb, EmbeddingCache(cache, vb.id)).vectors.reshape(len(paths), vb.views, -1)
    variants = {
        "the whole photo (imgclf's default)": (whole, "whole"),
        "the views' element-wise largest": (views.max(1), "views"),
        "the views' mean": (views.mean(1), "views"),
        "the whole photo + the views' mean (each unit length, summed)": (l2_normalize(whole) + l2_normalize(views.mean(1)), "both"),
        "the whole photo + the crops' mean (each unit length, summed)": (l2_normalize(whole) + l2_normalize(views[:, 1:].mean(1)), "both"),
    }
    sample = paths[:: max(1, len(paths) // 32)][:32]
    cost = {"whole": seconds_per_photo(bb, sample), "views": seconds_per_photo(vb, sample)}
    cost["both"] = cost["whole"] + cost["views"]
    accuracy = {k: [] for k in variants}
    near = {k: [] for k in variants}
    for rep in range(args.repeats):
        fold = folds(y, 5, rep)
        rng = np.random.default_rng(100 + rep)
        for f in range(5):
            test, train = fold == f, fold != f
            val = train & (rng.random(len(y)) < 0.15)
            for name, (x, _) in variants.items():
                head = fit_head(x[train & ~val], y[train & ~val], len(labels), x[val], y[val], seed=0)
                accuracy[name].append(float(np.mean(head.logits(x[test]).argmax(1) == y[test])))
                scores = []
                for out in range(len(labels)):
                    known = [c for c in range(len(labels)) if c != out]
                    inside = train & (y != out)
                    ref = Reference.fit(x[inside], y[inside], known)
                    scores.append(auroc(ref.similarity(x[test & (y != out)]), ref.similarity(x[test & (y == out)])))
                near[name].append(float(np.mean(scores)))
    base = np.array(accuracy["the whole photo (imgclf's default)"])
    base_near = np.array(near["the whole photo (imgclf's default)"])
    print(f"## One label per photo, test-time views ({args.data.name}, 5-fold × {args.repeats})\n")
    print("| features | held-out accuracy | vs the whole photo | near-unknown AUROC | vs the whole photo | time a photo |")
    print("|---|---|---|---|---|---|")
    for name, (_, graph) in variants.items():
        a, n = np.array(accuracy[name]), np.array(near[name])
        print(f"| {name} | {a.mean():.3f} ± {a.std():.3f} | {np.mean(a - base):+.3f} ± {np.std(a - base):.3f} | "
              f"{n.mean():.3f} | {np.mean(n - base_near):+.3f} ± {np.std(n - base_near):.3f} | {1000 * cost[graph]:.0f} ms |")


if __name__ == "__main__":
    main()
