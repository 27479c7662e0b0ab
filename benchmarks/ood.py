"""Unknown rejection: how many non-flower photos a flowers model calls "unknown".

Usage: python benchmarks/ood.py DATA_DIR [OOD_DIR]   (default OOD_DIR: examples/not-flowers)

Trains `imgclf train DATA_DIR` (cached), then scores the model's test split (in
distribution) and out-of-distribution photos: the bundled non-flower photos plus two
overlapping crops of each (left and right two thirds, still real photos, not noise).
Prints AUROC and, at the model's own operating point (its calibrated threshold), the share of test photos accepted and of OOD photos rejected — and the same
AUROC for the scores that were not chosen (softmax confidence, energy), for comparison.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def ood_photos(src: Path, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.glob("*.jpg")):
        img = Image.open(f).convert("RGB")
        w, h = img.size
        img.save(out / f.name)
        img.crop((0, 0, 2 * w // 3, h)).save(out / f"{f.stem}_left.jpg")
        img.crop((w // 3, 0, w, h)).save(out / f"{f.stem}_right.jpg")
    return sorted(out.glob("*.jpg"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("ood_dir", type=Path, nargs="?", default=ROOT / "examples" / "not-flowers")
    ap.add_argument("--cache-dir", type=Path, default=None)
    args = ap.parse_args()

    import imgclf
    from imgclf.heads.rejection import auroc

    tmp = Path(tempfile.mkdtemp(prefix="imgclf-ood-"))
    cmd = [sys.executable, "-m", "imgclf.cli", "train", str(args.data_dir), "-o", str(tmp / "model"), "-q"]
    if args.cache_dir:
        cmd += ["--cache-dir", str(args.cache_dir)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    model = imgclf.load(tmp / "model")
    metrics = json.loads((tmp / "model" / "metrics.json").read_text())
    test_paths = [p["path"] for p in metrics["test"]["photos"]]
    ood = ood_photos(args.ood_dir, tmp / "ood")

    def scored(paths):
        preds = [p for p in model.predict(paths, top_k=len(model.labels)) if not p.error]
        sim = np.array([p.similarity for p in preds])
        msp = np.array([p.confidence for p in preds])
        return preds, sim, msp

    in_preds, in_sim, in_msp = scored(test_paths)
    out_preds, out_sim, out_msp = scored(ood)
    accepted = np.mean([p.label != "unknown" for p in in_preds])
    rejected = np.mean([p.label == "unknown" for p in out_preds])
    print(f"model: {args.data_dir} ({len(model.labels)} labels), rule: similarity < {model.threshold:.3f} → unknown "
          f"({model.meta['rejection']['calibrated_on']})")
    print(f"in-distribution: {len(in_preds)} test photos; out-of-distribution: {len(out_preds)} photos from {args.ood_dir} (+ crops)")
    print("| score | AUROC | test photos accepted | OOD photos rejected |\n|---|---|---|---|")
    print(f"| imgclf similarity: mean of prototype and nearest-photo cosines (used) | {auroc(in_sim, out_sim):.3f} | {accepted:.3f} | {rejected:.3f} |")
    thr = np.quantile(in_msp, 0.05)
    print(f"| softmax confidence (not used) | {auroc(in_msp, out_msp):.3f} | 0.95 by construction | {np.mean(out_msp < thr):.3f} |")
    missed = [(Path(p.path).name, round(p.similarity, 3)) for p in out_preds if p.label != "unknown"]
    print(f"OOD photos accepted: {missed}")


if __name__ == "__main__":
    main()
