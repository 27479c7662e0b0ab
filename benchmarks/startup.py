"""How light the default path is: first train, warm re-train, one predict against its floor, install size.

Usage: python benchmarks/startup.py [DATA_DIR] [--runs 3] [--venv]
       (DATA_DIR default: ../shared/datasets/flowers-bench)

Each figure is the wall time of a whole new process (min and median of ``--runs``):
- first ``imgclf train`` of the bundled example with an empty cache;
- warm re-train of DATA_DIR, every photo already cached, report included;
- ``imgclf predict MODEL PHOTO`` against its floor, a plain script that imports NumPy, Pillow
  and ONNX Runtime, opens ``model.onnx`` and scores one preprocessed photo (run side by side);
- with ``--venv``: the size of a fresh venv with ``pip install .`` (the default install).

The processes run with bytecode caching on (``PYTHONDONTWRITEBYTECODE`` removed from their
environment), as for an installed package, whose modules pip compiles at install time;
one untimed run of each command writes the caches first.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMGCLF = [sys.executable, "-m", "imgclf.cli"]
FLOOR = """
import sys, json
import numpy as np, onnxruntime as ort
from PIL import Image
model, photo = sys.argv[1], sys.argv[2]
p = json.load(open(model + "/imgclf.json"))["preprocessing"]
s = ort.InferenceSession(model + "/model.onnx", providers=["CPUExecutionProvider"])
img = Image.open(photo).convert("RGB")
w, h = img.size
r = int(p["input_size"] / p["crop_pct"])
img = img.resize((r, round(h * r / w)) if w <= h else (round(w * r / h), r), Image.Resampling.BICUBIC)
c = p["input_size"]
left, top = (img.width - c) // 2, (img.height - c) // 2
x = (np.asarray(img.crop((left, top, left + c, top + c)), np.float32) / 255 - p["mean"]) / p["std"]
print(s.run(["probabilities"], {"input": x.transpose(2, 0, 1)[None].astype(np.float32)})[0].argmax())
"""


def timed(cmd: list[str], env: dict | None = None) -> float:
    env = {k: v for k, v in (env or os.environ).items() if k != "PYTHONDONTWRITEBYTECODE"}
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t0


def spread(values: list[float]) -> str:
    return f"min {min(values):.2f} s, median {statistics.median(values):.2f} s (n={len(values)})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dir", type=Path, nargs="?", default=ROOT.parent / "shared" / "datasets" / "flowers-bench")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--venv", action="store_true", help="also measure a fresh venv of the default install (about 20 s)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="imgclf-startup-") as tmp:
        tmp = Path(tmp)
        example = ROOT / "examples" / "flowers" / "photos"
        first = []
        timed([*IMGCLF, "train", str(example), "-o", str(tmp / "first-warmup"), "-q"],
              {**os.environ, "IMGCLF_CACHE_DIR": str(tmp / "empty-warmup")})  # writes the bytecode caches
        for i in range(args.runs):
            env = {**os.environ, "IMGCLF_CACHE_DIR": str(tmp / f"empty-{i}")}
            first.append(timed([*IMGCLF, "train", str(example), "-o", str(tmp / f"first-{i}"), "-q"], env))
        print(f"first train of the bundled example (70 photos, empty cache): {spread(first)}")
        env = {**os.environ, "IMGCLF_CACHE_DIR": str(tmp / "cache")}
        timed([*IMGCLF, "train", str(args.data_dir), "-o", str(tmp / "model"), "-q"], env)  # fills the cache
        warm = [timed([*IMGCLF, "train", str(args.data_dir), "-o", str(tmp / "model"), "-q"], env) for _ in range(args.runs)]
        print(f"warm re-train of {args.data_dir.name} (all photos cached, report included): {spread(warm)}")
        photo = sorted((ROOT / "examples" / "flowers" / "unseen").rglob("*.jpg"))[0]
        (tmp / "floor.py").write_text(FLOOR)
        whole, floor = [], []
        timed([*IMGCLF, "predict", str(tmp / "model"), str(photo)], env)  # writes the bytecode caches
        for _ in range(max(5, args.runs)):  # interleaved, so drift hits both alike
            whole.append(timed([*IMGCLF, "predict", str(tmp / "model"), str(photo)], env))
            floor.append(timed([sys.executable, str(tmp / "floor.py"), str(tmp / "model"), str(photo)], env))
        ratio = statistics.median(whole) / statistics.median(floor)
        print(f"imgclf predict, one photo: {spread(whole)}; floor script: {spread(floor)}; ratio of medians {ratio:.2f}")
        if args.venv:
            venv = tmp / "venv"
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(ROOT)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            size = sum(f.stat().st_size for f in venv.rglob("*") if f.is_file() and not f.is_symlink())
            print(f"fresh venv of the default install: {size / 2**20:.0f} MB")
            shutil.rmtree(venv)


if __name__ == "__main__":
    main()
