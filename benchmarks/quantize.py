"""Is ``imgclf train --quantize`` worth offering? Accuracy and speed of the int8 backbone against float.

Usage: python benchmarks/quantize.py DATA_DIR [--folds 5] [--repeats 2] [--speed-runs 3]

The int8 backbone is built exactly as ``imgclf train DATA_DIR --quantize`` builds it
(calibrated on photos of DATA_DIR's train split). Accuracy: the same repeated stratified
k-fold as ``benchmarks/accuracy.py`` row (a) (C chosen on a validation part of the training
folds, refitted on train + val), on float and on int8 embeddings of every photo. Speed:
ONNX Runtime alone on pre-decoded tensors and ``embed_files`` end to end from the files
(empty cache), interleaved, ``--speed-runs`` times each; best and all runs printed.
The flag is offered only if the accuracy drop is under 1 point and int8 is faster.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import fmt, folds  # noqa: E402
from throughput import Timer, loadavg, run_tensors  # noqa: E402


def kfold(x: np.ndarray, y: np.ndarray, k: int, n_folds: int, repeats: int) -> list[float]:
    from imgclf.heads.linear import fit_head, refit

    accs = []
    for f, v, te in folds(y, n_folds, repeats):
        head = fit_head(x[f], y[f], k, x[v], y[v])
        head = refit(head, np.concatenate([x[f], x[v]]), np.concatenate([y[f], y[v]]), k)
        accs.append(float(np.mean(head.probabilities(x[te]).argmax(1) == y[te])))
    return accs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--speed-runs", type=int, default=3)
    ap.add_argument("--cache-dir", type=Path, help="backbone cache (default: imgclf's)")
    args = ap.parse_args()

    from imgclf.backbones import resolve
    from imgclf.embeddings.cache import EmbeddingCache
    from imgclf.files.locations import default_cache_dir
    from imgclf.data import scan_labelled
    from imgclf.embeddings.compute import embed_files
    from imgclf.runtime.batching import STREAM_BATCH
    from imgclf.runtime.loader import pixel_loader
    from imgclf.runtime.session import inference_plan

    cache_root = args.cache_dir or default_cache_dir()
    ds = scan_labelled(args.data_dir, 0.1, 0.1)  # imgclf train's default split: calibration comes from its train part
    fp = resolve(cache_dir=cache_root)
    t = time.perf_counter()
    q = resolve(cache_dir=cache_root, quantize=True, calibration=[p.path for p in ds.photos if p.split == "train"])
    print(f"{len(ds.photos)} photos, {len(ds.labels)} labels; int8 backbone {q.id} "
          f"(built or found in {time.perf_counter() - t:.1f} s); load average {loadavg()}")
    paths = [p.path for p in ds.photos]
    label_of = {p.path: p.label for p in ds.photos}
    load = pixel_loader(fp.preprocessing)
    tensors = fp.preprocessing.batch([load(p) for p in paths])

    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.speed_runs):
            for name, bb in (("float32", fp), ("int8", q)):
                row = rows.setdefault(name, {"limit": [], "pipe": []})
                row["limit"].append(run_tensors(bb.onnx_path, tensors, *inference_plan(), STREAM_BATCH))
                with Timer() as tm:
                    emb = embed_files(paths, bb, EmbeddingCache(Path(tmp) / f"{name}{r}", bb.id))
                row["pipe"].append((len(paths) / tm.wall, 1000 * tm.cpu / len(paths)))
                row["emb"] = emb
    y_of = {p: ds.labels.index(label_of[p]) for p in paths}
    ref = rows["float32"]["emb"]
    for name, row in rows.items():
        emb = row["emb"]
        x, y = emb.vectors, np.array([y_of[p] for p in emb.paths])
        row["acc"] = kfold(x, y, len(ds.labels), args.folds, args.repeats)
        a, b = ref.vectors, emb.vectors
        row["cos"] = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)

    print(f"\n{'backbone':8s}  {'k-fold accuracy':42s}  {'ORT on tensors img/s (CPU ms/img)':36s}  embed_files img/s (CPU ms/img)")
    for name, row in rows.items():
        lim = " / ".join(f"{v:.0f}" for v, _ in row["limit"]) + f" ({min(c for _, c in row['limit']):.1f})"
        pipe = " / ".join(f"{v:.0f}" for v, _ in row["pipe"]) + f" ({min(c for _, c in row['pipe']):.1f})"
        print(f"{name:8s}  {fmt(row['acc']):42s}  {lim:36s}  {pipe}")
    f, i = rows["float32"], rows["int8"]
    drop = 100 * (np.mean(f["acc"]) - np.mean(i["acc"]))
    speed_limit = max(v for v, _ in i["limit"]) / max(v for v, _ in f["limit"])
    speed_pipe = max(v for v, _ in i["pipe"]) / max(v for v, _ in f["pipe"])
    cpu_pipe = min(c for _, c in f["pipe"]) / min(c for _, c in i["pipe"])
    print(f"\nembedding cosine int8 vs float: mean {i['cos'].mean():.4f}, min {i['cos'].min():.4f}")
    print(f"accuracy drop: {drop:+.1f} points; speed-up (best img/s): {speed_limit:.2f}x on tensors, "
          f"{speed_pipe:.2f}x end to end ({cpu_pipe:.2f}x by CPU time per image)")
    verdict = "offer --quantize" if drop < 1.0 and speed_pipe > 1.0 else "refuse --quantize"
    print(f"verdict: {verdict} (needs drop < 1 point and faster); load average {loadavg()}")


if __name__ == "__main__":
    main()
