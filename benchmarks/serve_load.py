"""Load and latency of ``imgclf serve`` against the offline ``Model.predict`` on the same photos.

    python benchmarks/serve_load.py MODEL_DIR PHOTOS_DIR [--requests 2000] [--concurrency 32]

Starts the server in a subprocess on 127.0.0.1, measures single-client latency, then
fires ``--requests`` POST /predict requests (multipart, one real photo each) from
``--concurrency`` concurrent keep-alive clients, and reports throughput, p50/p95/p99
latency, errors and the server's RSS (start, end, peak). The offline throughput of
``Model.predict`` on the same photos, measured first in this process with the server not
yet running, gives the ratio. The load generator is a small asyncio HTTP/1.1 client
so that it takes little of the CPU it shares with the server; its CPU time is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".heic", ".avif"}


def find_photos(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- process memory -----------------------------------------------------------------


def _status(pid: int, key: str) -> int:
    """A /proc/PID/status field in kB (0 if the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn workers)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for child in Path(f"/proc/{p}/task/{p}/children").read_text().split():
                todo.append(int(child))
        except OSError:
            pass
    return out


def rss_mb(pid: int) -> float:
    return sum(_status(p, "VmRSS") for p in _tree(pid)) / 1024


class RssSampler(threading.Thread):
    """Samples the server tree's RSS every ``interval`` seconds; ``peak`` in MB."""

    def __init__(self, pid: int, interval: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak = 0.0
        self.samples: list[tuple[float, float]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        t0 = time.perf_counter()
        while not self._halt.is_set():
            r = rss_mb(self.pid)
            self.peak = max(self.peak, r)
            self.samples.append((time.perf_counter() - t0, r))
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


# --- a lean HTTP/1.1 client ---------------------------------------------------------


def multipart_request(host: str, port: int, path: str, name: str, data: bytes) -> bytes:
    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
        f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + f"\r\n--{boundary}--\r\n".encode()
    )
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


class Connection:
    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        try:
            self.writer.write(raw)
            status_line = await self.reader.readline()
            if not status_line:
                raise ConnectionError("connection closed")
            status = int(status_line.split()[1])
            length, close = 0, False
            while True:
                line = await self.reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                k, _, v = line.decode("latin-1").partition(":")
                k = k.strip().lower()
                if k == "content-length":
                    length = int(v)
                elif k == "connection" and v.strip().lower() == "close":
                    close = True
            body = await self.reader.readexactly(length)
            if close:
                await self.close()
            return status, body
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except Exception:
                pass
        self.reader = self.writer = None


async def fire(host: str, port: int, requests: list[bytes], concurrency: int) -> dict:
    """Send every request, ``concurrency`` at a time; latencies in seconds."""
    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(len(requests)))

    async def client() -> None:
        conn = Connection(host, port)
        for i in counter:
            t = time.perf_counter()
            try:
                status, body = await conn.request(requests[i])
                ok = status == 200 and json.loads(body).get("label") is not None
                if not ok:
                    errors.append(f"HTTP {status}: {body[:120]!r}")
            except Exception as e:
                errors.append(f"{type(e).__name__}: {e}")
            latencies.append(time.perf_counter() - t)
        await conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    return {"latencies": latencies, "errors": errors, "wall": wall}


def summary(run: dict) -> dict:
    lat = np.asarray(run["latencies"]) * 1000
    n = len(lat)
    return {
        "requests": n,
        "errors": len(run["errors"]),
        "seconds": round(run["wall"], 2),
        "throughput": round(n / run["wall"], 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p95_ms": round(float(np.percentile(lat, 95)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1),
        "max_ms": round(float(lat.max()), 1),
    }


# --- main -----------------------------------------------------------------------------


def offline_throughput(model_dir: Path, photos: list[Path]) -> dict:
    from imgclf.runtime.model import Model

    model = Model.load(model_dir)
    model.predict(photos[:32])  # warm up
    t = time.perf_counter()
    preds = model.predict(photos)
    dt = time.perf_counter() - t
    failed = sum(p.error is not None for p in preds)
    del model
    gc.collect()
    return {"photos": len(photos), "seconds": round(dt, 2), "throughput": round(len(photos) / dt, 1), "failed": failed}


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("photos_dir", type=Path)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--low-requests", type=int, default=200, help="sequential requests from one client")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    photos = find_photos(args.photos_dir)
    if not photos:
        print(f"no photos in {args.photos_dir}", file=sys.stderr)
        return 2
    sizes = [p.stat().st_size for p in photos]
    print(f"{len(photos)} photos from {args.photos_dir} (mean {np.mean(sizes) / 1024:.0f} kB), {os.cpu_count()} CPUs")

    print("offline Model.predict on the same photos…", flush=True)
    offline = offline_throughput(args.model_dir, photos)

    port = free_port()
    host = "127.0.0.1"
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"imgclf-serve-bench-{port}.log", "wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "imgclf.cli", "serve", str(args.model_dir), "--host", host, "--port", str(port),
         "--workers", str(args.workers), "--no-access-log", "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://{host}:{port}"
    try:
        t = time.perf_counter()
        while True:
            if server.poll() is not None:
                print(f"server exited with {server.returncode}; log in {log.name}", file=sys.stderr)
                return 1
            try:
                get_json(base + "/health")
                break
            except OSError:
                time.sleep(0.1)
        startup = time.perf_counter() - t
        bodies = [multipart_request(host, port, "/predict", p.name, p.read_bytes()) for p in photos]

        def take(n: int) -> list[bytes]:
            return [bodies[i % len(bodies)] for i in range(n)]

        asyncio.run(fire(host, port, take(32), 4))  # warm up
        rss_start = rss_mb(server.pid)
        low = summary(asyncio.run(fire(host, port, take(args.low_requests), 1)))
        h0 = get_json(base + "/health")
        sampler = RssSampler(server.pid)
        sampler.start()
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        load_run = asyncio.run(fire(host, port, take(args.requests), args.concurrency))
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        sampler.stop()
        h1 = get_json(base + "/health")
        load = summary(load_run)
        rss_end = rss_mb(server.pid)
        hwm = sum(_status(p, "VmHWM") for p in _tree(server.pid)) / 1024
        third = len(sampler.samples) // 3 or 1
        rss_first, rss_last = (max(r for _, r in sampler.samples[:third]), max(r for _, r in sampler.samples[-third:]))
        batches = h1["batches"] - h0["batches"] if args.workers == 1 else None
        mean_batch = (h1["images"] - h0["images"]) / batches if batches else None
        client_cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()

    result = {
        "photos": len(photos),
        "offline": offline,
        "server_startup_s": round(startup, 2),
        "low_concurrency": low,
        "load": {**load, "concurrency": args.concurrency, "workers": args.workers,
                 "mean_batch": None if mean_batch is None else round(mean_batch, 2),
                 "client_cpu_s": round(client_cpu, 2)},
        "rss_mb": {"after_warmup": round(rss_start, 1), "first_third_max": round(rss_first, 1),
                   "last_third_max": round(rss_last, 1), "after_load": round(rss_end, 1),
                   "peak_sampled": round(sampler.peak, 1), "peak_vmhwm": round(hwm, 1)},
        "ratio_to_offline": round(load["throughput"] / offline["throughput"], 3),
        "errors_sample": load_run["errors"][:5],
    }
    ok = lambda b: "yes" if b else "NO"  # noqa: E731
    rows = [
        ("offline Model.predict throughput", f"{offline['throughput']} photos/s ({offline['photos']} photos in {offline['seconds']} s)"),
        ("1 client: p50 / p95 latency", f"{low['p50_ms']} / {low['p95_ms']} ms ({low['requests']} requests)"),
        (f"{args.concurrency} clients: throughput", f"{load['throughput']} req/s ({load['requests']} requests in {load['seconds']} s)"),
        (f"{args.concurrency} clients: p50 / p95 / p99 latency", f"{load['p50_ms']} / {load['p95_ms']} / {load['p99_ms']} ms"),
        (f"{args.concurrency} clients: errors", str(load["errors"])),
        ("mean inference batch under load", "n/a" if mean_batch is None else f"{mean_batch:.1f}"),
        ("server RSS after warm-up / after load", f"{rss_start:.0f} / {rss_end:.0f} MB"),
        ("server RSS max in 1st / last third of the load", f"{rss_first:.0f} / {rss_last:.0f} MB"),
        ("server peak RSS (VmHWM)", f"{hwm:.0f} MB"),
        ("load generator CPU", f"{client_cpu:.1f} s over {load['seconds']} s"),
        ("throughput / offline", f"{result['ratio_to_offline']:.2f}"),
    ]
    width = max(len(k) for k, _ in rows)
    print()
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print()
    print(f"target zero errors: {ok(load['errors'] == 0)}; p50 at 1 client < 50 ms: {ok(low['p50_ms'] < 50)}; "
          f"throughput >= 0.8 x offline: {ok(result['ratio_to_offline'] >= 0.8)}")
    if load_run["errors"]:
        print("first errors:", *load_run["errors"][:5], sep="\n  ")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if load["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
