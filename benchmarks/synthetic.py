"""Synthetic photo sets for the benchmarks that need thousands of distinct photos: variants of flowers-bench's.

``make_photos(src, dst, n)`` writes ``n`` distinct photos under ``dst/<label>/``, each a random crop of 55–100 %
of one of ``src``'s photos, mirrored or not, colour and brightness shifted, saved as a 320 px JPEG under the
photo's label (kept if already made). Used by ``export_memory.py`` and ``scale.py``.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT.parent / "shared" / "datasets" / "flowers-bench"
IMGCLF = [sys.executable, "-m", "imgclf.cli"]


def make_photos(src: Path, dst: Path, n: int, seed: int = 0) -> Path:
    """``n`` distinct variants of the photos under ``src/<label>/`` in ``dst/<label>/`` (kept if already made)."""
    done = dst / ".complete"
    if done.exists():
        return dst
    rng = random.Random(seed)
    sources = sorted((p.parent.name, p) for p in src.glob("*/*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    decoded: dict[Path, Image.Image] = {}
    for i in range(n):
        label, path = sources[i % len(sources)]
        if path not in decoded:
            with Image.open(path) as img:
                img = ImageOps.exif_transpose(img).convert("RGB")
                img.thumbnail((480, 480))
                decoded[path] = img
        img = decoded[path]
        w, h = img.size
        share = rng.uniform(0.55, 1.0)
        cw, ch = int(w * share), int(h * share)
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        out = img.crop((x, y, x + cw, y + ch))
        if rng.random() < 0.5:
            out = ImageOps.mirror(out)
        out = ImageEnhance.Color(out).enhance(rng.uniform(0.7, 1.3))
        out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.8, 1.2))
        out.thumbnail((320, 320))
        (dst / label).mkdir(parents=True, exist_ok=True)
        out.save(dst / label / f"v{i:06d}.jpg", quality=88)
    done.touch()
    return dst


def peak_mb(args: list[str], env: dict) -> tuple[float, float, int]:
    """(peak resident MB, seconds, exit code) of one command in a process of its own."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode()
    if proc.returncode:
        print(err, file=sys.stderr)
    return usage.ru_maxrss / 1024, time.perf_counter() - start, proc.returncode
