"""What keeping the training photos compactly costs: near-unknown AUROC and nearest neighbours, exact against compact.

Usage: python benchmarks/compact.py [DATA] [--dims 64 128 256] [--repeats 5]
       (default DATA: ../shared/datasets/flowers-bench)

The model keeps its training photos' embeddings as coordinates in an orthonormal basis of at most
``COMPACT_DIMS`` directions (``imgclf.heads.rejection.compact``): exact up to that many photos, their top
singular directions beyond. On DATA's cached embeddings, leave one label out (the rest, less a fifth of each label
kept as new photos of the known labels, is the reference): the AUROC with which the "unknown" score tells the left-out
label's photos (near-unknowns) from the new photos of known labels, with the exact reference and with each ``--dims``;
and, for the new photos, how often the nearest training photo is the same one and the largest change of a
similarity. Repeated over ``--repeats`` random fifths; mean ± standard deviation.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, nargs="?", default=ROOT.parent / "shared" / "datasets" / "flowers-bench")
    ap.add_argument("--dims", type=int, nargs="+", default=[64, 128, 256, 384])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    from imgclf.backbones import resolve
    from imgclf.data import scan_labelled
    from imgclf.embeddings import EmbeddingCache, embed_files
    from imgclf.files.locations import default_cache_dir
    from imgclf.heads.linear import l2_normalize
    from imgclf.heads.rejection import Reference, auroc

    ds = scan_labelled(args.data)
    bb = resolve(cache_dir=default_cache_dir())
    emb = embed_files([p.path for p in ds.photos], bb, EmbeddingCache(default_cache_dir(), bb.id))
    label = {p.path: ds.labels.index(p.label) for p in ds.photos}
    x, y = emb.vectors, np.array([label[p] for p in emb.paths])
    results = {d: {"auroc": [], "agree": [], "diff": []} for d in ["exact", *args.dims]}
    sizes = []
    for repeat in range(args.repeats):
        rng = np.random.default_rng(repeat)
        new = np.zeros(len(y), bool)
        for c in np.unique(y):
            idx = rng.permutation(np.flatnonzero(y == c))
            new[idx[: len(idx) // 5]] = True
        for left in np.unique(y):
            known = [c for c in np.unique(y) if c != left]
            ref_rows = ~new & (y != left)
            sizes.append(int(ref_rows.sum()))
            inside, near = new & (y != left), y == left
            exact = Reference.fit(x[ref_rows], y[ref_rows], known, dims=10**9)
            u = l2_normalize(x[inside])
            base_cos = exact.photo_cosines(u)
            for d in results:
                ref = exact if d == "exact" else Reference.fit(x[ref_rows], y[ref_rows], known, dims=d)
                results[d]["auroc"].append(auroc(ref.similarity(x[inside]), ref.similarity(x[near])))
                cos = ref.photo_cosines(u)
                results[d]["agree"].append(float(np.mean(cos.argmax(1) == base_cos.argmax(1))))
                results[d]["diff"].append(float(np.abs(cos.max(1) - base_cos.max(1)).max()))

    def spread(v):
        return f"{statistics.mean(v):.3f} ± {statistics.stdev(v) if len(v) > 1 else 0:.3f}"

    print(f"{args.data.name}: {len(y)} photos, reference of {min(sizes)}–{max(sizes)} photos "
          f"(leave one label out, a fifth of each other label kept as new photos), {args.repeats} repeats")
    print("| training photos kept as | bytes a photo (Lite0) | near-unknown AUROC | nearest photo the same | largest change of the nearest photo's similarity |")
    print("|---|---:|---|---|---|")
    for d, r in results.items():
        what = "exact (1,280 floats)" if d == "exact" else f"{d} coordinates"
        size = 4 * (1280 if d == "exact" else d)
        print(f"| {what} | {size:,} | {spread(r['auroc'])} | {spread(r['agree'])} | {max(r['diff']):.4f} |")


if __name__ == "__main__":
    main()
