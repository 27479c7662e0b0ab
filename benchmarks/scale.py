"""What training, checking and predicting cost as the photos grow: 600 to 20,000 photos.

Usage: python benchmarks/scale.py [--sizes 600 5000 10000 20000] [--work DIR] [--runs 2]
       (photos made from ../shared/datasets/flowers-bench by synthetic.py)

For each size N, makes N distinct photos, trains once to fill the embedding cache, then measures, each
command a process of its own (the whole command, as a user waits for it):

- ``train, embeddings cached``: ``imgclf train`` with the photos' embeddings, fingerprints, splits and hashes in the
  cache but nothing fitted: heads, out-of-fold estimates, checks and report heatmaps are all computed again;
- ``train, nothing changed``: the same command again, everything cached;
- ``check, embeddings cached``: ``imgclf check`` with the embeddings and fingerprints cached, nothing fitted,
  and its peak resident memory;
- ``model.onnx``'s size, and what each photo beyond the smallest set adds to it;
- ``predict one photo``: the best of ``--runs`` runs of ``imgclf predict MODEL PHOTO``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from synthetic import BENCH, IMGCLF, ROOT, make_photos, peak_mb

#: What a cache keeps that depends on the photos alone (computed once from the files); everything else is fitted.
PER_PHOTO = ("embeddings", "fingerprints", "splits", "digests")


def fitted_nothing(work: Path, tag: str) -> Path:
    """A cache holding the shared per-photo parts and nothing fitted."""
    root = work / "runs" / tag
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    for part in PER_PHOTO:
        (work / "cache" / part).mkdir(parents=True, exist_ok=True)
        (root / part).symlink_to(work / "cache" / part)
    return root


def timed(args: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[600, 5000, 10000, 20000])
    ap.add_argument("--work", type=Path, default=Path("/tmp/imgclf-scale"))
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--photos-from", type=Path, default=BENCH, help="label folders the photos are made from")
    args = ap.parse_args()
    base = {**os.environ, "IMGCLF_STATE_DIR": str(args.work / "state"), "PYTHONPATH": str(ROOT / "src")}
    rows = []
    for n in args.sizes:
        photos = make_photos(args.photos_from, args.work / f"photos-{n}", n)
        model = args.work / f"model-{n}"
        shared = {**base, "IMGCLF_CACHE_DIR": str(args.work / "cache")}
        subprocess.run([*IMGCLF, "train", str(photos), "-o", str(model), "-q"], env=shared, check=True, stdout=subprocess.DEVNULL)
        warm, unchanged = [], []
        for run in range(args.runs):
            env = {**base, "IMGCLF_CACHE_DIR": str(fitted_nothing(args.work, f"train-{n}-{run}"))}
            warm.append(timed([*IMGCLF, "train", str(photos), "-o", str(model), "-q"], env))
            unchanged.append(timed([*IMGCLF, "train", str(photos), "-o", str(model), "-q"], env))
        checks = []
        for run in range(args.runs):
            env = {**base, "IMGCLF_CACHE_DIR": str(fitted_nothing(args.work, f"check-{n}-{run}"))}
            checks.append(peak_mb([*IMGCLF, "check", str(photos), "-q"], env))
        photo = next(p for p in sorted(photos.rglob("*.jpg")))
        predict = min(timed([*IMGCLF, "predict", str(model), str(photo)], shared) for _ in range(args.runs))
        size = (model / "model.onnx").stat().st_size
        row = (n, min(warm), min(unchanged), min(c[1] for c in checks), max(c[0] for c in checks), size, predict)
        rows.append(row)
        print(f"{n} photos: train {' / '.join(f'{t:.1f}' for t in warm)} s, unchanged {' / '.join(f'{t:.1f}' for t in unchanged)} s, "
              f"check {' / '.join(f'{c[1]:.1f}' for c in checks)} s (peak {row[4]:.0f} MB), model.onnx {size / 2**20:.1f} MB, "
              f"predict {predict:.2f} s", file=sys.stderr, flush=True)
    print("| photos | train, embeddings cached | train, nothing changed | check, embeddings cached | check's peak memory "
          "| model.onnx | more per photo | `predict` one photo |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    first_n, first_size = rows[0][0], rows[0][5]
    for n, warm, unchanged, check, peak, size, predict in rows:
        more = f"{(size - first_size) / (n - first_n) / 1024:.2f} KB" if n > first_n else "–"
        print(f"| {n:,} | {warm:.1f} s | {unchanged:.1f} s | {check:.1f} s | {peak:,.0f} MB | {size / 2**20:.1f} MB "
              f"| {more} | {predict:.2f} s |")


if __name__ == "__main__":
    main()
