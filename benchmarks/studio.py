"""The studio's two targets, measured against a real ``imgclf studio`` process over HTTP, as the page drives it.

Usage: python benchmarks/studio.py [--runs 3] [--live-seconds 300] [--skip-live] [--work DIR]

1. **Click "Train" to a model that answers**: from ``POST /api/train`` to the first ``POST /api/predict`` answered
   by the new model (the page polls ``GET /api/train`` every 150 ms; here every 20 ms, so the figure is the
   server's), for the bundled 70 photos cold (an empty cache: every photo embedded) and warm (embeddings cached,
   one photo added since the last run, as after a correction), and for 600 photos made from flowers-bench by
   ``synthetic.py``, warm. Each run is a new project folder and a new server process; printed: each run, the
   median and the spread.
2. **Live preview**: one client sends camera-sized frames (320 × 240 JPEGs cut from flowers-bench photos, as the page
   grabs them) one at a time, the next as soon as the answer arrives, as the page's live loop does, for
   ``--live-seconds``; printed: answered frames per second, the median and 90th-percentile time from sending a
   frame to its answer, and the server's resident memory each minute (flat means it does not grow).
3. **Live preview in the page** (``--browser-seconds``, when Debian's chromium and chromium-driver are here): the
   page's own live loop in headless Chromium with a fake camera made from flowers-bench photos, the canvas grab and
   JPEG encoding included; printed: the page's answers a second and frame-to-answer median, read once a second.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image, ImageOps

from synthetic import BENCH, IMGCLF, ROOT, make_photos

EXAMPLE = ROOT / "examples" / "flowers" / "photos"


class Studio:
    """``imgclf studio FOLDER`` in a process of its own, with the page's token."""

    def __init__(self, folder: Path, env: dict):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([*IMGCLF, "studio", str(folder), "--port", str(self.port)], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                page = httpx.get(self.url + "/", timeout=1).text
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise SystemExit("the studio did not start")
                time.sleep(0.05)
        token = re.search(r'name="studio-token" content="([^"]+)"', page).group(1)
        self.client = httpx.Client(base_url=self.url, timeout=600,
                                   headers={"x-studio-token": token, "origin": self.url})

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def close(self) -> None:
        self.client.close()
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(10)


def click_train_to_answer(studio: Studio, probe: bytes) -> float:
    """Seconds from pressing Train to the first answer of the model it wrote."""
    start = time.perf_counter()
    studio.client.post("/api/train").raise_for_status()
    while (status := studio.client.get("/api/train").json())["state"] == "running":
        time.sleep(0.02)
    if status["state"] != "done":
        raise SystemExit(f"training {status['state']}: {status.get('error')}")
    studio.client.post("/api/predict", files={"file": ("probe.jpg", probe)}).raise_for_status()
    return time.perf_counter() - start


def train_runs(source: Path, runs: int, work: Path, env: dict, warm: bool, probe: bytes, extra: bytes) -> list[float]:
    """Per run: a new copy of ``source`` as a project; cold runs get an empty cache, warm runs train once first and
    then add a photo, as after a correction."""
    out = []
    for i in range(runs):
        folder = work / f"{source.name}-{'warm' if warm else 'cold'}-{i}"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(source, folder, ignore=shutil.ignore_patterns(".*"))
        run_env = dict(env)
        if not warm:
            run_env["IMGCLF_CACHE_DIR"] = tempfile.mkdtemp(prefix="cold-cache-", dir=work)
        studio = Studio(folder, run_env)
        try:
            if warm:
                click_train_to_answer(studio, probe)
                first = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))[0]
                studio.client.post(f"/api/labels/{first}/photos", files={"files": ("new.jpg", extra)}).raise_for_status()
            out.append(click_train_to_answer(studio, probe))
        finally:
            studio.close()
            if not warm:
                shutil.rmtree(run_env["IMGCLF_CACHE_DIR"], ignore_errors=True)
    return out


def frames(n: int = 40) -> list[bytes]:
    """Camera-sized JPEG frames cut from flowers-bench photos (320 × 240, quality 0.9 as the page's canvas)."""
    out = []
    for path in sorted(BENCH.glob("*/*.jpg"))[::12][:n]:
        with Image.open(path) as im:
            frame = ImageOps.fit(ImageOps.exif_transpose(im).convert("RGB"), (320, 240))
        buf = io.BytesIO()
        frame.save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def live(studio: Studio, seconds: float) -> None:
    shots = frames()
    latencies, memory = [], [(0.0, studio.rss_mb())]
    start = time.perf_counter()
    next_sample = 60.0
    i = 0
    while (elapsed := time.perf_counter() - start) < seconds:
        sent = time.perf_counter()
        studio.client.post("/api/predict", params={"top_k": 5},
                           files={"file": ("camera.jpg", shots[i % len(shots)])}).raise_for_status()
        latencies.append(time.perf_counter() - sent)
        i += 1
        if elapsed >= next_sample:
            memory.append((elapsed, studio.rss_mb()))
            next_sample += 60.0
    memory.append((time.perf_counter() - start, studio.rss_mb()))
    total = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=10)
    print(f"\nlive preview, {total:.0f} s, one frame in flight: {len(latencies) / total:.1f} answered frames a second; "
          f"frame to answer median {1000 * statistics.median(latencies):.0f} ms, 90th percentile {1000 * q[-1]:.0f} ms")
    print("server memory: " + ", ".join(f"{t / 60:.0f} min {mb:.0f} MB" for t, mb in memory))


def in_browser(studio: Studio, seconds: float, work: Path) -> None:
    import shutil as which

    sys.path.insert(0, str(ROOT / "scripts"))
    from fake_camera import write_y4m
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    if not (which.which("chromium") and which.which("chromedriver")):
        print("\nlive preview in the page: skipped (needs chromium and chromium-driver)")
        return
    video = write_y4m(work / "camera.y4m", sorted(BENCH.glob("*/*.jpg"))[::50], seconds=1.0, fps=30)
    opts = webdriver.ChromeOptions()
    opts.binary_location = which.which("chromium")
    for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900",
                 "--disable-background-networking", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-video-capture={video}", f"--user-data-dir={work / 'chromium'}"]:
        opts.add_argument(flag)
    d = webdriver.Chrome(service=Service(which.which("chromedriver")), options=opts)
    try:
        d.get(studio.url + "/")
        time.sleep(2)
        d.find_element(By.CSS_SELECTOR, '#tabs [data-view="try"]').click()
        d.find_element(By.ID, "live-toggle").click()
        time.sleep(3)
        rates, medians = [], []
        for _ in range(int(seconds)):
            time.sleep(1)
            text = d.find_element(By.ID, "live-rate").text
            found = re.match(r"([0-9.]+) answers a second, ([0-9]+) ms", text)
            if found:
                rates.append(float(found.group(1)))
                medians.append(int(found.group(2)))
    finally:
        d.quit()
    print(f"\nlive preview in the page (Chromium, fake camera, {len(rates)} one-second readings): "
          f"{statistics.median(rates):.1f} answers a second (spread {min(rates):.1f}–{max(rates):.1f}); frame grabbed "
          f"to answer shown, median {statistics.median(medians)} ms (spread {min(medians)}–{max(medians)} ms)")


def summary(name: str, runs: list[float]) -> None:
    print(f"{name:<38} " + "  ".join(f"{s:5.2f}" for s in runs) +
          f"   median {statistics.median(runs):.2f} s (spread {min(runs):.2f}–{max(runs):.2f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--live-seconds", type=float, default=300)
    ap.add_argument("--skip-live", action="store_true")
    ap.add_argument("--browser-seconds", type=float, default=60)
    ap.add_argument("--work", type=Path, default=None, help="Folder for projects and caches (default: a temporary one)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="imgclf-studio-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "IMGCLF_CACHE_DIR": str(work / "cache"), "IMGCLF_STATE_DIR": str(work / "state")}
    probe = frames(1)[0]
    extra = sorted(BENCH.glob("*/*.jpg"))[-1].read_bytes()
    six_hundred = make_photos(BENCH, work / "photos-600", 600)
    print(f"click Train to a model that answers (seconds per run; {os.cpu_count()} cores)")
    summary("bundled 70 photos, cold", train_runs(EXAMPLE, args.runs, work, env, False, probe, extra))
    summary("bundled 70 photos, warm (+1 photo)", train_runs(EXAMPLE, args.runs, work, env, True, probe, extra))
    summary("600 photos, warm (+1 photo)", train_runs(six_hundred, args.runs, work, env, True, probe, extra))
    if not args.skip_live:
        folder = work / "live"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(EXAMPLE, folder)
        studio = Studio(folder, env)
        try:
            click_train_to_answer(studio, probe)
            live(studio, args.live_seconds)
            if args.browser_seconds:
                in_browser(studio, args.browser_seconds, work)
        finally:
            studio.close()


if __name__ == "__main__":
    main()
