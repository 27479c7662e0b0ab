"""What ``--backbone face`` costs per photo, and how many faces it finds: the way before and the way today.

Usage: python benchmarks/face_speed.py [--per-portrait 20] [--seed 1] [--runs 3]

Per photo, each on one thread (the best of ``--runs``): finding and aligning the face (the chip), and the network that
turns the chip into the 128-D descriptor. Before: dlib's HOG detector first, then BlazeFace's short-range network on
tiles, then HOG on turned copies, and dlib's own network. Today: BlazeFace's back-camera network on the whole photo
first (then the same cascade as before for what it misses), and dlib's network in ONNX Runtime
(:mod:`imgclf.runtime.faces.network`). Sets:

- the bundled portraits and photos of people (``examples/faces``, 7 photos, 512-1000 px);
- the same shrunk to 250 px on their longer side (whole photos of people as the web serves them);
- ``face_composites.py``'s hard composites (faces of 20-40 px, turned, covered, beside text) of ``--seed``;
- flowers-bench and the scenes at 280 px: photos without a face, in which a face found is a false one.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

import face_composites

ROOT = Path(__file__).resolve().parents[1]


def chips(photos, before: bool) -> tuple[list, float]:
    """The aligned chips of ``photos`` (None where no face was found) and the seconds per photo."""
    from imgclf.runtime import faces
    from imgclf.runtime.faces import NoFaceError, detector

    whole = detector.detect_whole
    if before:
        detector.detect_whole = lambda arr, min_score=detector.WHOLE_MIN_SCORE: []
    try:
        out, start = [], time.perf_counter()
        for photo in photos:
            try:
                out.append(faces.face_chip(photo))
            except NoFaceError:
                out.append(None)
        return out, (time.perf_counter() - start) / len(photos)
    finally:
        detector.detect_whole = whole


def encode_seconds(found: list, before: bool) -> float:
    """Seconds per chip of the descriptor network, one chip at a time."""
    from imgclf.runtime import faces

    found = [np.asarray(c) for c in found if c is not None]
    start = time.perf_counter()
    for chip in found:
        if before:
            faces._dlib_descriptor(chip)
        else:
            faces.encode((chip.astype(np.float32) / 255.0).transpose(2, 0, 1)[None])
    return (time.perf_counter() - start) / max(1, len(found))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-portrait", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from threadpoolctl import threadpool_limits

    from imgclf.runtime import faces

    people = [ImageOps.exif_transpose(Image.open(p)).convert("RGB") for p in sorted((ROOT / "examples" / "faces").rglob("*.jpg"))]
    small = [p.copy() for p in people]
    for p in small:
        p.thumbnail((250, 250))
    composites = [photo for photo, _, _ in face_composites.build(args.per_portrait, args.seed)]
    bench = ROOT.parent / "shared" / "datasets" / "flowers-bench"
    empty = [Image.open(p).convert("RGB") for p in face_composites.SCENES] + [Image.open(p).convert("RGB") for p in sorted(bench.rglob("*.jpg"))[::10]]
    for p in empty:
        p.thumbnail((280, 280))
    faces.encode(np.zeros((1, 3, faces.CHIP_SIZE, faces.CHIP_SIZE), np.float32))  # the graph built and loaded before timing
    print(f"{len(people)} photos of people, the same at 250 px, {len(composites)} composites (seed {args.seed}), "
          f"{len(empty)} photos without a face; ms per photo on one thread, best of {args.runs}\n")
    print("| photos | way | faces found | find and align | descriptor | per photo | faster |")
    print("|---|---|---:|---:|---:|---:|---:|")
    with threadpool_limits(1):
        for name, photos in (("people, full size", people), ("people at 250 px", small), ("hard composites", composites),
                             ("no face (false faces)", empty)):
            totals = {}
            for before in (True, False):
                runs = [chips(photos, before) for _ in range(args.runs)]
                found, find = runs[0][0], min(r[1] for r in runs)
                enc = min(encode_seconds(found, before) for _ in range(args.runs))
                n = sum(c is not None for c in found)
                per_photo = find + enc * n / len(photos)
                totals[before] = per_photo
                faster = "" if before else f"{totals[True] / per_photo:.1f}x"
                print(f"| {name} | {'before' if before else 'today'} | {n}/{len(photos)} | {1000 * find:.0f} | "
                      f"{1000 * enc:.0f} | {1000 * per_photo:.0f} | {faster} |", flush=True)


if __name__ == "__main__":
    main()
