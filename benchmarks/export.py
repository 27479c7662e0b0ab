"""What ``imgclf export`` costs and gives: conversion time, file size, parity, and inference time per photo.

Usage: python benchmarks/export.py [MODEL PHOTOS] [--runs 3]
       (default: a model trained here on ../shared/datasets/flowers-bench, checked on all its photos)

For ONNX Runtime (``model.onnx``), the ``.tflite`` (float32 and ``--int8``) and the SavedModel:
the time of ``imgclf.exports.export`` (conversion and the parity check on PHOTOS), the size written,
the parity figures against ``model.onnx``, and the median time of one photo (batch of 1, already
preprocessed) on 2 threads, over ``--runs`` passes of 50 photos.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def per_photo_ms(run, photos, runs: int) -> float:
    times = []
    for _ in range(runs):
        for x in photos:
            t0 = time.perf_counter()
            run(x[None])
            times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path, nargs="?")
    ap.add_argument("photos", type=Path, nargs="?")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    import imgclf
    from imgclf.exports import export
    from imgclf.exports.runners import saved_model_runner, tflite_runner
    from imgclf.runtime.images import load_image
    from imgclf.runtime.inputs import walk_files
    from imgclf.runtime.session import create_session

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bench = ROOT.parent / "shared" / "datasets" / "flowers-bench"
        model_dir = args.model or tmp / "model"
        photos_dir = args.photos or bench
        if args.model is None:
            imgclf.train(bench, model_dir)
        model = imgclf.load(model_dir)
        sample = [p for p in walk_files(photos_dir) if p.suffix.lower() in (".jpg", ".jpeg", ".png")][:50]
        pre = model.preprocessing
        pixels = [pre.batch([pre.pixels(load_image(p))])[0] for p in sample]
        print(f"model: {model_dir.name} ({len(model.labels)} labels), checked on {photos_dir}\n")
        print("| runtime | export + check | converting | size | photos checked | largest probability diff | best label agrees "
              "| largest similarity diff | ms per photo (2 threads) |\n|---|---|---|---|---|---|---|---|---|")
        session = create_session(model_dir / "model.onnx", 2)

        def ort_run(batch):
            return session.run(["probabilities", "similarity"], {"input": batch})

        size = (model_dir / "model.onnx").stat().st_size
        print(f"| ONNX Runtime (model.onnx) | – | – | {size / 2**20:.1f} MB | – | – | – | – | {per_photo_ms(ort_run, pixels, args.runs):.1f} |")
        for name, fmt, int8, target, make in (
            ("TFLite float32", "tflite", False, tmp / "m.tflite", lambda p: tflite_runner(p, threads=2)),
            ("TFLite int8", "tflite", True, tmp / "m-int8.tflite", lambda p: tflite_runner(p, threads=2)),
            ("TF SavedModel", "saved_model", False, tmp / "sm", saved_model_runner),
        ):
            t0 = time.perf_counter()
            result = export(model_dir, fmt, target, int8=int8, check_photos=photos_dir)
            total = time.perf_counter() - t0
            p = result.parity
            ms = per_photo_ms(make(target), pixels, args.runs)
            print(f"| {name} | {total:.1f} s | {result.convert_seconds:.1f} s | {result.size / 2**20:.1f} MB | {p.photos} | "
                  f"{p.max_probability_diff:.2g} | {p.top1_agreement:.1%} | {p.max_similarity_diff:.2g} | {ms:.1f} |")


if __name__ == "__main__":
    main()
