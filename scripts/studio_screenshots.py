"""The README's studio case, played in headless Chromium and photographed: one person's face from 20 camera frames,
a model that names them in a photo it never saw and says "Not barack-obama" for anyone else.

    python scripts/studio_screenshots.py [--out docs/images]

The camera is Chromium's fake device playing a video made from the bundled portraits (scripts/fake_camera.py); the
studio is a real ``imgclf studio`` process with a new "faces" project made from its landing page. Prints what the
page answered for each photo tried, and writes studio-1-teach.png … studio-4-unknown.png.
Needs the face extra (``pip install 'imgclf[face]'``), Selenium, Debian's chromium and chromium-driver.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_camera import write_y4m  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FACES = ROOT / "examples" / "faces"
#: Photos tried after training, and the screenshot each gets (None: its answer is only printed).
TRIED = [("studio-3-known.png", FACES / "unseen" / "obama-oval-office.jpg"),
         ("studio-4-unknown.png", FACES / "people" / "biden" / "biden-portrait.jpg"),
         (None, FACES / "strangers" / "grace-hopper.jpg"),
         (None, FACES / "strangers" / "eileen-collins.jpg")]


def wait(driver, condition, timeout: float = 120):
    """``condition`` met, across the page reloading under it (a new project reloads the page)."""
    return WebDriverWait(driver, timeout, poll_frequency=0.1,
                         ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(condition)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="imgclf-studio-shots-"))
    video = write_y4m(work / "camera.y4m", sorted((FACES / "people" / "obama").glob("*.jpg")), seconds=2.0, fps=10,
                      whole=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "IMGCLF_STUDIO_HOME": str(work / "projects"), "IMGCLF_STATE_DIR": str(work / "state")}
    server = subprocess.Popen([sys.executable, "-m", "imgclf.cli", "studio", "--port", str(port)], env=env,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--force-device-scale-factor=1",
                 "--disable-background-networking", "--disable-dev-shm-usage", "--window-size=1280,900",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-video-capture={video}", f"--user-data-dir={work / 'profile'}"]:
        opts.add_argument(flag)
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    started = time.perf_counter()
    try:
        for _ in range(300):
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        d.get(url)
        wait(d, lambda d: d.find_element(By.ID, "view-landing").is_displayed())
        d.find_element(By.ID, "new-name").send_keys("who-is-it")
        d.find_element(By.CSS_SELECTOR, 'input[name="kind"][value="faces"]').click()
        d.find_element(By.CSS_SELECTOR, "#new-project button[type=submit]").click()
        wait(d, lambda d: d.find_element(By.ID, "view-teach").is_displayed())
        d.find_element(By.ID, "label-name").send_keys("barack-obama")  # one label: "is it him?"
        d.find_element(By.CSS_SELECTOR, "#add-label button").click()
        wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, '.label-card[data-label="barack-obama"]'))
        d.find_element(By.ID, "camera-toggle").click()
        wait(d, lambda d: d.execute_script("return document.getElementById('teach-video').readyState") == 4)
        button = d.find_element(By.CSS_SELECTOR, ".record")
        ActionChains(d).click_and_hold(button).pause(5.0).release().perform()
        wait(d, lambda d: "added" in d.find_element(By.CSS_SELECTOR, ".recorded").text)
        wait(d, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".label-card .thumbs img")) >= 18)
        time.sleep(1)
        d.save_screenshot(str(args.out / "studio-1-teach.png"))
        frames = d.find_element(By.CSS_SELECTOR, ".recorded").text
        d.find_element(By.ID, "camera-toggle").click()
        d.find_element(By.ID, "train").click()
        wait(d, lambda d: d.find_element(By.ID, "model-status").text.startswith("Trained "))
        d.find_element(By.CSS_SELECTOR, '#tabs [data-view="results"]').click()
        wait(d, lambda d: "%" in d.find_element(By.ID, "estimate-big").text)
        time.sleep(1)
        d.save_screenshot(str(args.out / "studio-2-results.png"))
        d.find_element(By.CSS_SELECTOR, '#tabs [data-view="try"]').click()
        for name, photo in TRIED:
            d.find_element(By.ID, "try-file").send_keys(str(photo))
            wait(d, lambda d: d.execute_script("return state.lastAnswer && state.lastAnswer.name") == photo.name)
            time.sleep(1.5)
            print(f"{photo.name}: {d.find_element(By.ID, 'answer').text} ({d.find_element(By.ID, 'answer-note').text})")
            if name:
                d.save_screenshot(str(args.out / name))
        print(f"{frames} from the camera; {time.perf_counter() - started:.0f} s from an empty page to the last answer; "
              f"screenshots in {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
        errors = [e["message"] for e in d.get_log("browser") if e["level"] == "SEVERE"]
        if errors:
            raise SystemExit("the page logged errors: " + "; ".join(errors))
    finally:
        d.quit()
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)


if __name__ == "__main__":
    main()
