"""Peak memory of ``imgclf export`` against the size of the model: it must not grow with the number of photos.

Usage: python benchmarks/export_memory.py [--sizes 1000 20000] [--formats onnx tflite] [--work DIR]
       (photos made from ../shared/datasets/flowers-bench)

For each size N, makes N distinct photos from flowers-bench (random crops of 55–100 % of a photo, mirrored
or not, colour and brightness shifted, saved as 320 px JPEGs under the photo's label), trains a model on them
(cached embeddings are reused between runs in ``--work``), then runs ``imgclf export`` of that model in a
process of its own for each format and prints the process's peak resident memory. The export checks itself
on the model's validation and test photos (10 % + 10 % of N), so a larger model also means more photos checked.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from synthetic import BENCH, IMGCLF, ROOT, make_photos, peak_mb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 20000])
    ap.add_argument("--formats", nargs="+", default=["onnx", "tflite"])
    ap.add_argument("--work", type=Path, default=Path("/tmp/imgclf-export-memory"))
    ap.add_argument("--photos-from", type=Path, default=BENCH, help="label folders the photos are made from")
    args = ap.parse_args()
    env = {**os.environ, "IMGCLF_CACHE_DIR": str(args.work / "cache"), "IMGCLF_STATE_DIR": str(args.work / "state"),
           "PYTHONPATH": str(ROOT / "src")}
    rows = []
    for n in args.sizes:
        photos = make_photos(args.photos_from, args.work / f"photos-{n}", n)
        model = args.work / f"model-{n}"
        if not (model / "imgclf.json").exists():
            t0 = time.perf_counter()
            subprocess.run([*IMGCLF, "train", str(photos), "-o", str(model), "-q"], env=env, check=True, stdout=subprocess.DEVNULL)
            print(f"trained on {n} photos in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        size = (model / "model.onnx").stat().st_size / 2**20
        for fmt in args.formats:
            out = args.work / f"export-{n}" / ("saved" if fmt == "saved_model" else f"model.{fmt}")
            for old in (out, out.with_name(out.name + ".json")):
                if old.is_file():
                    old.unlink()
            mb, seconds, code = peak_mb([*IMGCLF, "export", str(model), "--format", fmt, "-o", str(out), "-q"], env)
            rows.append((n, size, fmt, mb, seconds, code))
            print(f"{n} photos, {fmt}: peak {mb:.0f} MB in {seconds:.0f} s (exit {code})", file=sys.stderr)
    small = args.work / f"model-{min(args.sizes)}"
    checked = []  # one model, checked on more and more photos: what the streaming check is about
    for n in args.sizes:
        out = args.work / "export-checked" / "model.onnx"
        for old in (out, out.with_name(out.name + ".json")):
            if old.is_file():
                old.unlink()
        mb, seconds, code = peak_mb([*IMGCLF, "export", str(small), "--format", "onnx", "-o", str(out), "-q",
                                     "--check-photos", str(args.work / f"photos-{n}")], env)
        checked.append((n, mb, seconds, code))
        print(f"model of {min(args.sizes)} photos checked on {n} photos: peak {mb:.0f} MB in {seconds:.0f} s (exit {code})",
              file=sys.stderr)
    print("| photos in the model | model.onnx | format | peak memory of imgclf export | time | exit |")
    print("|---:|---:|---|---:|---:|---:|")
    for n, size, fmt, mb, seconds, code in rows:
        print(f"| {n:,} | {size:.1f} MB | {fmt} | {mb:,.0f} MB | {seconds:.0f} s | {code} |")
    print(f"\n| the model of {min(args.sizes):,} photos, --format onnx, checked on | peak memory | time | exit |")
    print("|---:|---:|---:|---:|")
    for n, mb, seconds, code in checked:
        print(f"| {n:,} photos | {mb:,.0f} MB | {seconds:.0f} s | {code} |")


if __name__ == "__main__":
    main()
