"""What a model's number of training photos costs when it answers: ``imgclf predict`` of one photo, and the memory
of ``imgclf serve`` waiting for requests.

Usage: python benchmarks/model_costs.py [MODEL ...] [--runs 5]
       (the bundled example's model is trained first and always measured; e.g. scale.py's /tmp/imgclf-scale/model-20000)

Per model: the whole ``imgclf predict MODEL PHOTO`` command in a new process (best and median of ``--runs``, the
models taken in turn each round), and the
resident memory of an ``imgclf serve MODEL`` process on 127.0.0.1 once it answers ``/health``, then again after it
has answered one photo; each against the bundled model's.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from serve_load import multipart_request, rss_mb
from synthetic import IMGCLF, ROOT

PHOTO = sorted((ROOT / "examples" / "flowers" / "unseen").rglob("*.jpg"))[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def predict_seconds(models: list[Path], env: dict, runs: int) -> dict[Path, list[float]]:
    """Each model's ``predict`` times, the models taken in turn each round (the machine's speed drifts)."""
    out: dict[Path, list[float]] = {m: [] for m in models}
    for _ in range(runs):
        for model in models:
            start = time.perf_counter()
            subprocess.run([*IMGCLF, "predict", str(model), str(PHOTO)], env=env, check=True, stdout=subprocess.DEVNULL)
            out[model].append(time.perf_counter() - start)
    return out


def served_memory(model: Path, env: dict) -> tuple[float, float]:
    """RSS in MB of the server once ready, and after answering one photo."""
    port = free_port()
    server = subprocess.Popen([*IMGCLF, "serve", str(model), "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        time.sleep(1.0)
        ready = rss_mb(server.pid)
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(multipart_request("127.0.0.1", port, "/predict", PHOTO.name, PHOTO.read_bytes()))
            conn.recv(65536)
        time.sleep(1.0)
        return ready, rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", type=Path)
    ap.add_argument("--runs", type=int, default=9)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "IMGCLF_STATE_DIR": str(Path(tmp) / "state"),
               "IMGCLF_CACHE_DIR": str(Path(tmp) / "cache")}
        bundled = Path(tmp) / "bundled"
        subprocess.run([*IMGCLF, "train", str(ROOT / "examples" / "flowers"), "-o", str(bundled), "-q"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        rows = []
        models = [bundled, *args.models]
        timed = predict_seconds(models, env, args.runs)
        for model in models:
            photos = len(json.loads((model / "neighbors.json").read_text())["photos"])
            times = timed[model]
            ready, answered = served_memory(model, env)
            rows.append((model, photos, min(times), statistics.median(times), ready, answered))
            print(f"{model.name}: {photos} photos, predict best {min(times):.2f} s median {statistics.median(times):.2f} s, "
                  f"server {ready:.0f} MB ready, {answered:.0f} MB after one photo", file=sys.stderr, flush=True)
    base = rows[0]
    print("| model | training photos | `predict` one photo, best / median | × bundled (median) | server ready | after one photo "
          "| × bundled |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for model, photos, best, median, ready, answered in rows:
        print(f"| {'bundled example' if model == base[0] else model.name} | {photos:,} | {best:.2f} / {median:.2f} s | "
              f"{median / base[3]:.2f} | {ready:.0f} MB | {answered:.0f} MB | {answered / base[5]:.2f} |")


if __name__ == "__main__":
    main()
