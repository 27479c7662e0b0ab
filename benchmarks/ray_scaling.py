"""Batch prediction throughput: the local engine against Ray with 1 and 2 actors.

Usage: python benchmarks/ray_scaling.py DATA_DIR MODEL_DIR [--repeat 1] [--cpus 2]

Needs the extra (pip install -e '.[ray]'). Runs ``imgclf.engines.predict`` on every file
under DATA_DIR (a few non-images, such as a LICENSE.txt, become error rows): once with the
local engine (decode threads + ONNX Runtime on every core), then on a local Ray runtime
with ``--cpus`` CPUs and 1, 2, … actors (1 CPU and 1 ONNX thread each). Each Ray figure
includes starting the actors and loading the model in them, not starting the runtime
(printed separately). Prints photos/s (best of ``--repeat``) and checks that every engine
gave the local engine's labels.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DISABLE_IMPORT_WARNING", "1")


def run(model: Path, data: Path, out: Path, engine: str, **kwargs) -> tuple[float, int, list]:
    import pyarrow.parquet as pq

    from imgclf import engines

    job = engines.predict(model, [data], out, engine, **kwargs)
    labels = pq.read_table(out, columns=["label"])["label"].to_pylist()
    return job.seconds, job.rows, labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("model", type=Path)
    ap.add_argument("--repeat", type=int, default=1, help="runs per configuration; the best is reported")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray runtime")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray actor counts to measure")
    args = ap.parse_args()

    import ray

    from imgclf.runtime.session import cpu_count

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "preds.parquet"
        best = min((run(args.model, args.data, out, "local") for _ in range(args.repeat)), key=lambda r: r[0])
        reference = best[2]
        results.append((f"local engine ({cpu_count()} cores, 1 process)", *best[:2], True))

        t = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False,
                 object_store_memory=200 * 2**20, logging_level="ERROR")
        startup = time.perf_counter() - t
        try:
            for n in args.workers:
                best = min((run(args.model, args.data, out, "ray", actors=n) for _ in range(args.repeat)), key=lambda r: r[0])
                results.append((f"ray, {n} actor{'s' if n > 1 else ''} x 1 CPU", *best[:2], best[2] == reference))
        finally:
            ray.shutdown()

    print(f"\nbatch predict on {args.data} ({results[0][2]} files), model {args.model}; "
          f"best of {args.repeat}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"local Ray runtime ({args.cpus} CPUs) started in {startup:.1f} s (not included below)\n")
    print(f"| {'engine':<34} | {'seconds':>7} | {'photos/s':>8} | same labels as local |")
    print(f"|{'-' * 36}|{'-' * 8}:|{'-' * 9}:|{'-' * 22}|")
    for name, seconds, rows, same in results:
        print(f"| {name:<34} | {seconds:7.1f} | {rows / seconds:8.1f} | {'yes' if same else 'NO':<20} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
