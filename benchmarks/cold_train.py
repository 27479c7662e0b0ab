"""A whole cold ``imgclf train`` against the PyTorch-eager peer, side by side: photos per second of each command.

Usage: python benchmarks/cold_train.py [PHOTOS] [--runs 3] [--synthetic N]
       (PHOTOS: label folders, default ../shared/datasets/flowers-bench; --synthetic N: N photos made from them by
       synthetic.py instead)

Each run, the two interleaved, each a new process timed from outside (start-up and imports included):

(a) ``imgclf train PHOTOS -o MODEL -q`` with an empty cache: every photo read, hashed, decoded and embedded, then
    checked, the heads fitted and cross-validated, the "unknown" rule calibrated, the model and its report written;
(b) the peer: timm's EfficientNet-Lite0 (the same weights) in PyTorch eager over torchvision's ``ImageFolder`` and a
    ``DataLoader`` (workers = cores, batch 32, the same preprocessing), which only embeds the photos: no head, no
    checks, no report.

Printed per run: photos per second of each, the ratio of (a) to (b) command to command and to (b)'s loop alone
(the peer without its start-up, imports and model building: the stricter comparison), and (a)'s CPU use (CPU seconds
of the process over its wall seconds: 2.0 is both cores busy the whole time); then the best, the median and the
spread.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from synthetic import BENCH, IMGCLF, ROOT, make_photos
from throughput import find_photos


def timed(args: list[str], env: dict) -> tuple[float, float, str]:
    """Wall seconds and CPU seconds (user + system) of one command in a new process, and what it printed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run(args, env=env, check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), out


def peer(photos: Path) -> None:
    """(b), run in a process of its own; prints the seconds of its loop alone (no start-up, imports or model)."""
    import torch
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    from throughput import build_peer, peer_transform

    from imgclf.backbones import DEFAULT_BACKBONE, resolve

    bb = resolve(DEFAULT_BACKBONE, None, Path(tempfile.mkdtemp()))
    model = build_peer(bb)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    start = time.perf_counter()
    with torch.inference_mode():
        for x, _ in DataLoader(ImageFolder(str(photos), transform=peer_transform(bb.preprocessing)), batch_size=32,
                               num_workers=cores, shuffle=False):
            model(x)
    print(time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photos", nargs="?", type=Path, default=BENCH)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--synthetic", type=int, default=0, help="make this many photos from PHOTOS and train on them")
    ap.add_argument("--peer-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.peer_only:
        return peer(args.photos)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos = make_photos(args.photos, tmp / "photos", args.synthetic) if args.synthetic else args.photos
        n = len(find_photos(photos))
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "IMGCLF_STATE_DIR": str(tmp / "state")}
        ours, theirs, loops, ratios, strict, busy = [], [], [], [], [], []
        for run in range(args.runs):
            cold = {**env, "IMGCLF_CACHE_DIR": str(tmp / f"cache-{run}")}
            a, cpu, _ = timed([*IMGCLF, "train", str(photos), "-o", str(tmp / f"model-{run}"), "-q"], cold)
            b, _, printed = timed([sys.executable, __file__, str(photos), "--peer-only"], env)
            loop = float(printed.split()[-1])
            ours.append(n / a)
            theirs.append(n / b)
            loops.append(n / loop)
            ratios.append(b / a)
            strict.append(loop / a)
            busy.append(cpu / a)
            print(f"run {run + 1}: imgclf train {n / a:.1f} photos/s ({a:.1f} s, CPU {cpu / a:.2f} cores); peer "
                  f"{n / b:.1f} photos/s as a command ({b:.1f} s), {n / loop:.1f} in its loop alone ({loop:.1f} s); "
                  f"ratio {b / a:.2f} command to command, {loop / a:.2f} against the loop alone", flush=True)
    print(f"\n{n} photos, {args.runs} runs: imgclf train {max(ours):.1f} photos/s (runs {spread(ours)}); peer "
          f"{max(theirs):.1f} as a command (runs {spread(theirs)}), {max(loops):.1f} in its loop alone (runs {spread(loops)}); "
          f"ratio {statistics.median(ratios):.2f} command to command (median; runs {spread(ratios, '{:.2f}')}), "
          f"{statistics.median(strict):.2f} against the peer's loop alone (runs {spread(strict, '{:.2f}')}); "
          f"CPU {statistics.median(busy):.2f} cores")


def spread(values: list[float], fmt: str = "{:.1f}") -> str:
    return " / ".join(fmt.format(v) for v in values)


if __name__ == "__main__":
    main()
