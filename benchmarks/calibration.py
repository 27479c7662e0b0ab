"""Are imgclf's confidences calibrated? Expected calibration error on photos the model never saw, repeated splits.

Usage: python benchmarks/calibration.py [DATA] [--repeats 4] [--folds 5]
       (default DATA: ../shared/datasets/flowers-bench)

Cross-fitting, repeated: for each repeat, each label's photos are shuffled into ``--folds`` folds; for
each fold ``imgclf.train`` fits a model on the other folds (hard links in a temporary folder, so the
embedding cache is shared) and ``imgclf.evaluate`` runs the shipped ``model.onnx`` on the fold. Every
photo is thus answered once per repeat by a model that never saw it, and the ECE (10 equal-width
bins, as the report draws them) is measured on all of them together: 500 photos for flowers-bench,
where one split's 100 photos would leave the figure mostly sampling noise. Printed per repeat and as
mean ± standard deviation: ECE, mean confidence and accuracy of imgclf's calibrated model and of the
same model without its temperature (``softmax(T · log p)``: the head's own logits), the temperatures,
and the noise floor: the mean ECE of a perfectly calibrated model with the same confidences (outcomes
drawn with those probabilities, 200 draws).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def fold_folders(data: Path, out: Path, seed: int, folds: int) -> list[tuple[Path, Path]]:
    """(train folder, held-out folder) per fold, of hard links to ``data``'s photos."""
    rng = random.Random(seed)
    pairs = [(out / f"fold{f}" / "train", out / f"fold{f}" / "test") for f in range(folds)]
    for label_dir in sorted(p for p in data.iterdir() if p.is_dir()):
        photos = sorted(p for p in label_dir.iterdir() if p.is_file() and not p.name.startswith("."))
        rng.shuffle(photos)
        for i, p in enumerate(photos):
            for f, (train, test) in enumerate(pairs):
                target = (test if i % folds == f else train) / label_dir.name
                target.mkdir(parents=True, exist_ok=True)
                os.link(p, target / p.name)
    return pairs


def probabilities(photos: list[dict], labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    probs = np.array([[{t["label"]: t["confidence"] for t in p["top_k"]}.get(lab, 0.0) for lab in labels] for p in photos])
    return probs, np.array([labels.index(p["label"]) for p in photos])


def untempered(probs: np.ndarray, temperature: float) -> np.ndarray:
    raw = np.exp(temperature * np.log(np.clip(probs, 1e-12, 1)))
    return raw / raw.sum(1, keepdims=True)


def figures(probs: np.ndarray, truth: np.ndarray, rng: np.random.Generator) -> dict:
    from imgclf.report.calibration import reliability

    conf = probs.max(1)
    r = reliability(conf, probs.argmax(1) == truth)
    floor = float(np.mean([reliability(conf, rng.random(len(conf)) < conf)["ece"] for _ in range(200)]))
    return {"ece": r["ece"], "confidence": r["mean_confidence"], "accuracy": r["accuracy"], "floor": floor}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, nargs="?", default=ROOT.parent / "shared" / "datasets" / "flowers-bench")
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args()
    import imgclf
    from imgclf.runtime.model import Model

    rng = np.random.default_rng(0)
    rows = []
    for repeat in range(args.repeats):
        calibrated, raw, truth, temps = [], [], [], []
        with tempfile.TemporaryDirectory() as tmp:
            for f, (train, test) in enumerate(fold_folders(args.data, Path(tmp), repeat, args.folds)):
                out = Path(tmp) / f"model{f}"
                imgclf.train(train, out, seed=repeat)
                model = Model.load(out)
                temperature = json.loads((out / "metrics.json").read_text())["head"]["temperature"]
                p, t = probabilities(imgclf.evaluate(model, test)["photos"], model.labels)
                calibrated.append(p)
                raw.append(untempered(p, temperature))
                truth.append(t)
                temps.append(temperature)
        truth_all = np.concatenate(truth)
        m = {"calibrated": figures(np.concatenate(calibrated), truth_all, rng), "raw": figures(np.concatenate(raw), truth_all, rng),
             "temperatures": temps}
        rows.append(m)
        print(f"repeat {repeat}: {len(truth_all)} photos; ECE {m['calibrated']['ece']:.3f} calibrated (confidence "
              f"{m['calibrated']['confidence']:.3f}, accuracy {m['calibrated']['accuracy']:.3f}, noise floor "
              f"{m['calibrated']['floor']:.3f}), {m['raw']['ece']:.3f} without the temperature (confidence "
              f"{m['raw']['confidence']:.3f}); T = {', '.join(f'{t:.2f}' for t in temps)}", flush=True)

    def spread(values):
        return f"{statistics.mean(values):.3f} ± {statistics.stdev(values) if len(values) > 1 else 0:.3f}"

    print(f"\n{len(rows)} repeats of {args.folds}-fold cross-fitting on {args.data.name} (every photo answered by a model "
          "that never saw it):")
    print("| | ECE | mean confidence | accuracy | ECE of a perfectly calibrated model (noise floor) |")
    print("|---|---|---|---|---|")
    for name, what in (("raw", "softmax head, no temperature"), ("calibrated", "imgclf (temperature on out-of-fold logits)")):
        print(f"| {what} | {spread([r[name]['ece'] for r in rows])} (max {max(r[name]['ece'] for r in rows):.3f}) | "
              f"{spread([r[name]['confidence'] for r in rows])} | {spread([r[name]['accuracy'] for r in rows])} | "
              f"{spread([r[name]['floor'] for r in rows])} |")
    print(f"temperature: {spread([t for r in rows for t in r['temperatures']])}")


if __name__ == "__main__":
    main()
