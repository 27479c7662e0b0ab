"""Peak memory of decoding huge, highly compressed images: ``imgclf predict`` and ``imgclf serve``.

Usage: python benchmarks/memory.py [--megapixels 79] [--uploads 4]

Writes a 16-bit greyscale PNG of about ``--megapixels`` (a smooth gradient: a few hundred KB
on disk), trains a model on the bundled example photos (cached), then prints:
- the peak RSS of ``imgclf predict MODEL huge.png`` (a fresh process, ``ru_maxrss``);
- the server's idle RSS, its peak RSS (``VmHWM``) while ``--uploads`` such uploads arrive at
  once, and its RSS a few seconds after they were answered.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

Image.MAX_IMAGE_PIXELS = None  # the huge images are made here on purpose

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "examples" / "flowers" / "photos"
IMGCLF = [sys.executable, "-m", "imgclf.cli"]


def huge_png(path: Path, megapixels: float, mode: str = "I;16") -> Path:
    side = int((megapixels * 1e6) ** 0.5)
    row = (np.arange(side, dtype=np.uint32) * 65535 // max(1, side - 1)).astype(np.uint16)
    img = Image.fromarray(np.broadcast_to(row, (side, side)).copy()).convert(mode) if mode != "I;16" else \
        Image.frombuffer("I;16", (side, side), np.broadcast_to(row, (side, side)).tobytes(), "raw", "I;16", 0, 1)
    img.save(path, compress_level=9)
    return path


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def predict_peak(model: Path, image: Path) -> tuple[int, str]:
    """Peak RSS (KB) of one ``imgclf predict`` process, measured by a parent of its own, and the answer."""
    probe = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); print(r.returncode); print((r.stdout or r.stderr).strip().splitlines()[-1])")
    out = subprocess.run([sys.executable, "-c", probe, *IMGCLF, "predict", str(model), str(image), "-f", "csv"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    return int(out[0]), f"exit {out[1]}: {out[-1]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_peak(model: Path, image: Path, uploads: int) -> dict:
    import httpx

    port = free_port()
    proc = subprocess.Popen([*IMGCLF, "serve", str(model), "--port", str(port), "--no-access-log", "--log-level", "warning"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(url + "/health", timeout=1).raise_for_status()
                break
            except Exception:
                time.sleep(0.1)
        data = image.read_bytes()
        small = next(p for p in sorted(PHOTOS.rglob("*.jpg")))
        for _ in range(3):  # warm up: first requests allocate the session's buffers
            httpx.post(url + "/predict", content=small.read_bytes(), timeout=30)
        time.sleep(1)
        idle = rss_kb(proc.pid)
        statuses: list[int] = []

        def send():
            r = httpx.post(url + "/predict", content=data, headers={"content-type": "image/png"}, timeout=300)
            statuses.append(r.status_code)

        threads = [threading.Thread(target=send) for _ in range(uploads)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - t0
        peak = rss_kb(proc.pid, "VmHWM")
        time.sleep(3)
        after = rss_kb(proc.pid)
        return {"idle": idle, "peak": peak, "after": after, "statuses": statuses, "seconds": seconds}
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--megapixels", type=float, default=79.0)
    ap.add_argument("--uploads", type=int, default=4)
    ap.add_argument("--model", type=Path, help="a model folder (default: train one on the bundled example)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model
        if model is None:
            model = tmp / "model"
            subprocess.run([*IMGCLF, "train", str(PHOTOS), "-o", str(model), "-q"], check=True, stdout=subprocess.DEVNULL)
        image = huge_png(tmp / "huge.png", args.megapixels)
        with Image.open(image) as im:
            print(f"image: {im.size[0]}x{im.size[1]} {im.mode} PNG, {image.stat().st_size / 1024:.0f} KB on disk")
        peak, status = predict_peak(model, image)
        print(f"predict: peak RSS {peak / 1024:.0f} MB ({status}); target <= 600 MB")
        s = serve_peak(model, image, args.uploads)
        print(f"serve, {args.uploads} uploads at once: idle {s['idle'] / 1024:.0f} MB, peak {s['peak'] / 1024:.0f} MB "
              f"(target <= 1200 MB), {s['after'] / 1024:.0f} MB 3 s after ({(s['after'] - s['idle']) / 1024:+.0f} MB; "
              f"target within 100 MB); answers {sorted(s['statuses'])} in {s['seconds']:.1f} s")


if __name__ == "__main__":
    main()
