"""Embedding throughput of imgclf against its limit and against the PyTorch loop a user would write.

Usage:
    python benchmarks/throughput.py DATA_DIR [--repeat 3] [--predict-runs 5] [--loading-runs 16] [--model DIR]
    python benchmarks/throughput.py DATA_DIR --stream 10000      # bounded-memory check only

In one run, on the same photos (``DATA_DIR/<label>/<files>``), each measure ``--repeat``
times, interleaved, best and spread printed:

(a) the limit: ONNX Runtime alone on pre-decoded tensors (the backbone), the best of
    three set-ups: imgclf's (``inference_plan``: concurrent single-threaded streams) and
    one session using every core with idle threads sleeping or spinning;
(b) imgclf: ``imgclf.embeddings.compute.embed_files`` from the files, into an empty cache
    (read, hash, decode, preprocess, infer, store), as ``imgclf train`` runs it;
(c) the peer: timm in PyTorch eager, torchvision ``ImageFolder`` + ``DataLoader``
    (``num_workers`` = cores, batch 32, timm's eval transform), ``torch.set_num_threads(cores)``;
(d) ``imgclf predict MODEL PHOTO``: the wall time of the whole command in a new process.

and the ratios b/a (best against best, and round by round: the machine's speed drifts
between minutes) and b/c. CPU time per image (this process and its children) is shown
too: on a machine shared with other jobs it moves far less than img/s. (e) shows what
the reduced-size JPEG decoding saves on a 12-megapixel photo. (f) splits the work (b) adds
to the backbone into its steps, each timed alone on one thread (CPU ms per photo), and
prints the ceiling they put on b/a: with every core busy in (a), each CPU millisecond of
reading, decoding and preprocessing is taken from the backbone, so even with perfect
overlap b/a <= backbone / (backbone + steps). (g) runs the pipeline alone (no cache) both
ways it can load photos: each inference stream decoding its own batch (``loaders=0``, what
``embed_files`` does) and separate decode threads feeding the streams, interleaved.

``--stream N`` embeds N photos made from DATA_DIR's (each a copy with random bytes after
the end of the JPEG, so every content hash differs and nothing comes from the cache) and
prints the process's RSS as it goes and its peak: the pipeline streams, so RSS stays flat.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def find_photos(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("*/**/*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def loadavg() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "n/a"


class Timer:
    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), cpu_seconds()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = cpu_seconds() - self.cpu


# --- (a) the limit ---------------------------------------------------------------------------------

def run_tensors(onnx_path, tensors: np.ndarray, streams: int, threads: int, batch: int, spinning: bool = False) -> tuple[float, float]:
    """img/s and CPU ms/img of ONNX Runtime alone: ``streams`` concurrent runs of ``batch``, ``threads`` each."""
    from concurrent.futures import ThreadPoolExecutor

    from imgclf.runtime.session import create_session

    sess = create_session(onnx_path, threads, spinning=spinning)
    name = sess.get_inputs()[0].name
    run = lambda i: sess.run(None, {name: tensors[i:i + batch]})  # noqa: E731
    with ThreadPoolExecutor(streams) as pool:
        list(pool.map(run, range(0, streams * batch, batch)))  # warm-up: arenas sized
        with Timer() as t:
            list(pool.map(run, range(0, len(tensors), batch)))
    return len(tensors) / t.wall, 1000 * t.cpu / len(tensors)


def limit_configs() -> dict[str, tuple[int, int, int, bool]]:
    """The ONNX Runtime set-ups tried for the limit: name → (streams, threads, batch, spinning)."""
    from imgclf.runtime.batching import DEFAULT_BATCH, STREAM_BATCH
    from imgclf.runtime.session import cpu_count, inference_plan

    streams, threads = inference_plan()
    cores = cpu_count()
    return {
        f"{streams} stream(s) x {threads} thread(s), batch {STREAM_BATCH} (imgclf's)": (streams, threads, STREAM_BATCH, False),
        f"1 stream x {cores} threads, batch {DEFAULT_BATCH}, idle threads sleep": (1, cores, DEFAULT_BATCH, False),
        f"1 stream x {cores} threads, batch {DEFAULT_BATCH}, idle threads spin": (1, cores, DEFAULT_BATCH, True),
    }


def measure_limit(bb, tensors: np.ndarray) -> dict[str, tuple[float, float]]:
    return {name: run_tensors(bb.onnx_path, tensors, *cfg) for name, cfg in limit_configs().items()}


# --- (b) imgclf ------------------------------------------------------------------------------------

def measure_imgclf(bb, photos: list[Path], cache_root: Path) -> tuple[float, float]:
    from imgclf.embeddings.cache import EmbeddingCache
    from imgclf.embeddings.compute import embed_files

    with Timer() as t:
        emb = embed_files(photos, bb, EmbeddingCache(cache_root, bb.id))
    assert emb.n_computed == len(photos), "the cache was not empty"
    return len(photos) / t.wall, 1000 * t.cpu / len(photos)


# --- (c) the peer ----------------------------------------------------------------------------------

def build_peer(bb):
    import torch

    from imgclf.backbones import BUILTINS, builtin_weights_file
    from imgclf.backbones.torch_export import build_model

    weights = bb.weights_path or (builtin_weights_file(bb.name) if bb.name in BUILTINS else None)
    model = build_model(bb.timm_name, weights)
    torch.set_num_threads(os.cpu_count() if not hasattr(os, "sched_getaffinity") else len(os.sched_getaffinity(0)))
    return model


def peer_transform(pre):
    from torchvision import transforms as T

    interp = {"bicubic": T.InterpolationMode.BICUBIC, "bilinear": T.InterpolationMode.BILINEAR}[pre.interpolation]
    return T.Compose([T.Resize(pre.resize_to, interpolation=interp), T.CenterCrop(pre.input_size), T.ToTensor(),
                      T.Normalize(pre.mean, pre.std)])


def measure_peer(model, pre, data_dir: Path, cores: int) -> tuple[float, float, int]:
    import torch
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    ds = ImageFolder(str(data_dir), transform=peer_transform(pre))
    n = 0
    with Timer() as t, torch.inference_mode():
        for x, _ in DataLoader(ds, batch_size=32, num_workers=cores, shuffle=False):
            model(x)
            n += len(x)
    return n / t.wall, 1000 * t.cpu / n, n


# --- (d) predict -----------------------------------------------------------------------------------

def imgclf_command() -> list[str]:
    exe = Path(sys.executable).with_name("imgclf")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "imgclf.cli"]


def train_model(data_dir: Path, out: Path) -> None:
    subprocess.run([*imgclf_command(), "train", str(data_dir), "-o", str(out), "-q"], check=True,
                   stdout=subprocess.DEVNULL)


def measure_predict(model_dir: Path, photo: Path) -> float:
    t = time.perf_counter()
    subprocess.run([*imgclf_command(), "predict", str(model_dir), str(photo)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


# --- (e) big photos --------------------------------------------------------------------------------

def measure_big(pre, photo: Path) -> tuple[float, float, tuple, tuple]:
    from PIL import Image

    from imgclf.runtime.images import decode
    from imgclf.runtime.loader import draft_side, preprocess_data

    b = io.BytesIO()
    Image.open(photo).convert("RGB").resize((4032, 3024), Image.Resampling.LANCZOS).save(b, "JPEG", quality=92)
    data = b.getvalue()
    times = {}
    for fast in (False, True):
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            preprocess_data(data, pre, fast=fast)
            best = min(best, time.perf_counter() - t)
        times[fast] = best
    return times[False], times[True], decode(data).size, decode(data, max_side=draft_side(pre)).size


# --- (f) where the time goes ----------------------------------------------------------------------

def best_cpu_ms(fn, n: int, runs: int = 3) -> float:
    """Least CPU time of ``runs`` calls of ``fn``, in ms per item (``n`` items per call)."""
    best = float("inf")
    for _ in range(runs):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return 1000 * best / n


def measure_steps(bb, photos: list[Path], tmp: Path) -> dict[str, float]:
    """CPU ms per photo of each step (b) runs besides the backbone, one thread, on ``photos``."""
    from imgclf.embeddings.cache import EmbeddingCache
    from imgclf.files.digests import content_hash
    from imgclf.runtime.images import decode, read_bytes
    from imgclf.runtime.batching import STREAM_BATCH
    from imgclf.runtime.loader import draft_side

    pre = bb.preprocessing
    data = [read_bytes(p) for p in photos]
    images = [decode(d, max_side=draft_side(pre)) for d in data]
    pixels = [pre.pixels(i) for i in images]
    keys = [content_hash(d) for d in data]
    vector = np.zeros(bb.dim, np.float32)
    fresh = iter(range(1000))

    def store() -> None:  # into an empty cache each time, as (b) does
        cache = EmbeddingCache(tmp / f"steps{next(fresh)}", bb.id)
        for key in keys:
            cache.put(key, vector)

    steps = {  # in the order (b) runs them
        "read the file (twice: cache lookup, then decoding)": lambda: [read_bytes(p) for p in photos + photos],
        "content hash (cache key)": lambda: [content_hash(d) for d in data],
        "decode (JPEGs at reduced size when big)": lambda: [decode(d, max_side=draft_side(pre)) for d in data],
        "resize + centre crop (bicubic; Preprocessing.pixels)": lambda: [pre.pixels(i) for i in images],
        f"normalise into float32 batches of {STREAM_BATCH} (Preprocessing.batch)": lambda: [
            pre.batch(pixels[i:i + STREAM_BATCH]) for i in range(0, len(pixels), STREAM_BATCH)],
        "store the embedding in the cache": store,
    }
    return {name: best_cpu_ms(fn, len(photos)) for name, fn in steps.items()}


# --- (g) who decodes ------------------------------------------------------------------------------

def measure_loading(bb, photos: list[Path], loaders: int | None) -> tuple[float, float]:
    """img/s and CPU ms/img of ``run_batched`` alone over ``photos``, as ``embed_files`` runs it but with ``loaders``."""
    from imgclf.runtime.batching import STREAM_BATCH, run_batched
    from imgclf.runtime.loader import pixel_loader
    from imgclf.runtime.session import create_session, inference_plan

    streams, threads = inference_plan()
    sess = create_session(bb.onnx_path, threads)
    name = sess.get_inputs()[0].name
    pre = bb.preprocessing
    forward = lambda batch: sess.run(None, {name: batch})  # noqa: E731
    with Timer() as t:
        n = sum(1 for _ in run_batched(photos, pixel_loader(pre), forward, STREAM_BATCH, loaders, streams, pre.batch))
    return n / t.wall, 1000 * t.cpu / n


# --- bounded memory --------------------------------------------------------------------------------

def rss_mb() -> float:
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def stream(bb, photos: list[Path], n: int, tmp: Path) -> None:
    from imgclf.embeddings.cache import EmbeddingCache
    from imgclf.embeddings.compute import embed_files

    rng = np.random.default_rng(0)
    src = [p.read_bytes() for p in photos]
    files = []
    for i in range(n):
        f = tmp / "stream" / f"{i % 100:02d}" / f"{i:06d}.jpg"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(src[i % len(src)] + rng.bytes(16))  # after the JPEG's end: same pixels, new hash
        files.append(f)
    print(f"stream: {n} photos written to a temporary folder ({sum(f.stat().st_size for f in files) / 2**20:.0f} MB)")
    samples: list[tuple[int, float]] = []
    start_rss = rss_mb()

    def progress(done: int, total: int) -> None:
        if done % max(1, total // 10) == 0 or done == total:
            samples.append((done, rss_mb()))

    with Timer() as t:
        emb = embed_files(files, bb, EmbeddingCache(tmp / "cache", bb.id), progress=progress)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"embedded {len(emb.paths)} photos ({emb.n_computed} computed) in {t.wall:.0f} s ({len(files) / t.wall:.1f} img/s)")
    print(f"RSS before: {start_rss:.0f} MB; during (photos done: MB): "
          + ", ".join(f"{d}: {r:.0f}" for d, r in samples))
    print(f"peak RSS of the process: {peak:.0f} MB (includes the {len(src)} source photos held in memory to make the stream)")


# --- main ------------------------------------------------------------------------------------------

def spread(values: list[float], fmt: str = "{:.1f}") -> str:
    return " / ".join(fmt.format(v) for v in values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--repeat", type=int, default=3, help="runs of (a), (b), (c), interleaved")
    ap.add_argument("--predict-runs", type=int, default=5)
    ap.add_argument("--loading-runs", type=int, default=16, help="runs of each way in (g)")
    ap.add_argument("--model", type=Path, help="model folder for (d); default: train one on DATA_DIR")
    ap.add_argument("--cache-dir", type=Path, help="where the backbone export is (default: imgclf's cache)")
    ap.add_argument("--stream", type=int, help="only the bounded-memory check, with this many photos")
    ap.add_argument("--skip-peer", action="store_true", help="leave out (c) (no torch import)")
    args = ap.parse_args()

    from imgclf.backbones import resolve
    from imgclf.files.locations import default_cache_dir
    from imgclf.runtime.loader import pixel_loader
    from imgclf.runtime.session import cpu_count, inference_plan

    cores = cpu_count()
    bb = resolve(cache_dir=args.cache_dir or default_cache_dir())
    photos = find_photos(args.data_dir)
    if not photos:
        sys.exit(f"no photos under {args.data_dir}")
    print(f"{len(photos)} photos from {args.data_dir}, backbone {bb.name}, {cores} cores, "
          f"inference {inference_plan()[0]} stream(s) x {inference_plan()[1]} thread(s), load average {loadavg()}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.stream:
            stream(bb, photos, args.stream, tmp)
            return
        load = pixel_loader(bb.preprocessing)
        tensors = bb.preprocessing.batch([load(p) for p in photos])
        peer = None if args.skip_peer else build_peer(bb)
        a: dict[str, list] = {}
        b: list = []
        c: list = []
        for r in range(args.repeat):
            for name, v in measure_limit(bb, tensors).items():
                a.setdefault(name, []).append(v)
            b.append(measure_imgclf(bb, photos, tmp / f"cache{r}"))
            if peer is not None:
                rate, cpu, n = measure_peer(peer, bb.preprocessing, args.data_dir, cores)
                assert n == len(photos), f"ImageFolder found {n} photos, imgclf {len(photos)}"
                c.append((rate, cpu))
            print(f"  run {r + 1}: load average {loadavg()}", flush=True)

        model_dir = args.model
        if model_dir is None:
            model_dir = tmp / "model"
            train_model(args.data_dir, model_dir)
        measure_predict(model_dir, photos[0])  # the page cache warm, as for a user's second command
        d = [measure_predict(model_dir, photos[0]) for _ in range(args.predict_runs)]
        big = measure_big(bb.preprocessing, photos[0])
        steps = measure_steps(bb, photos, tmp)
        ways = {"streams decode their own batches (loaders=0)": 0, f"{cores} decode threads feed the streams": None}
        loading: dict[str, list] = {label: [] for label in ways}
        for r in range(args.loading_runs):
            for label in (list(ways) if r % 2 == 0 else list(ways)[::-1]):  # alternate who goes first
                loading[label].append(measure_loading(bb, photos, ways[label]))

    best_a = max(a, key=lambda k: max(v[0] for v in a[k]))
    a_best = max(v[0] for v in a[best_a])
    b_best = max(v[0] for v in b)
    print()
    print(f"{'measure':72s} {'best':>8s}   runs (img/s; CPU ms/img)")
    for name, v in a.items():
        print(f"{'(a) ORT on tensors: ' + name:72s} "
              f"{max(x[0] for x in v):8.1f}   {spread([x[0] for x in v])}; {spread([x[1] for x in v])}")
    print(f"{'(b) imgclf embed_files, from files':72s} {b_best:8.1f}   {spread([x[0] for x in b])}; {spread([x[1] for x in b])}")
    if c:
        c_best = max(v[0] for v in c)
        print(f"{'(c) peer: timm eager + ImageFolder DataLoader(workers=%d)' % cores:72s} {c_best:8.1f}   "
              f"{spread([x[0] for x in c])}; {spread([x[1] for x in c])}")
    print(f"{'(d) imgclf predict, one photo, whole command (s)':72s} {min(d):8.2f}   "
          f"{spread(d, '{:.2f}')} (median {statistics.median(d):.2f})")
    print(f"{'(e) one 12 MP JPEG, decode + preprocess (ms), reduced-size decoding':72s} "
          f"{1000 * big[1]:8.1f}   full decode: {1000 * big[0]:.1f} ms at {big[2][0]}x{big[2][1]}; "
          f"reduced: {big[3][0]}x{big[3][1]}")
    print()
    print(f"b/a = {b_best / a_best:.2f} (best of each; a = {a_best:.1f}: {best_a})")
    a_cpu = min(x[1] for v in a.values() for x in v)
    b_cpu = min(x[1] for x in b)
    print(f"b/a by CPU time per image = {a_cpu / b_cpu:.2f} ({a_cpu:.1f} vs {b_cpu:.1f} ms)")
    # the machine's speed drifts between minutes: a and b of the same round were measured together
    paired = [rb[0] / max(ra[0] for ra in rounds) for rb, *rounds in zip(b, *a.values())]
    print(f"b/a per round (b against the best (a) of the same round): {spread(paired, '{:.2f}')} "
          f"(median {statistics.median(paired):.2f})")
    if c:
        print(f"b/c = {b_best / c_best:.2f}")
    print()
    print("(f) CPU ms per photo of the steps (b) adds to the backbone, each alone on one thread:")
    for name, ms in steps.items():
        print(f"    {name:60s} {ms:6.2f}")
    added = sum(steps.values())
    print(f"    {'all steps':60s} {added:6.2f}")
    print(f"    {'backbone (best of (a), CPU ms per photo)':60s} {a_cpu:6.2f}")
    cap = a_cpu / (a_cpu + added)
    print(f"ceiling on b/a with perfect overlap = {a_cpu:.1f} / ({a_cpu:.1f} + {added:.1f}) = {cap:.2f}; "
          f"(b) reaches {a_cpu / b_cpu / cap:.0%} of it by CPU time, {b_best / a_best / cap:.0%} by img/s")
    print()
    print(f"(g) the pipeline alone, no cache, {args.loading_runs} interleaved runs each:")
    for label, v in loading.items():
        print(f"    {label:50s} median {statistics.median(x[0] for x in v):6.1f} img/s "
              f"{statistics.median(x[1] for x in v):5.2f} CPU ms/img   runs {spread([x[0] for x in v], '{:.0f}')}")
    own, fed = loading.values()
    print(f"    streams decoding their own batches used less CPU in {sum(a[1] < b[1] for a, b in zip(own, fed))} "
          f"of {len(own)} pairs")
    print(f"load average at the end: {loadavg()}")


if __name__ == "__main__":
    main()
