"""The studio page in a real headless Chromium whose camera is a video made from real photos (Chromium's fake
media-stream device): make two labels, record camera frames into each, train, read the estimate, take live answers,
correct one with "add to label", undo it, export the model folder as a zip.

Run alone with ``pytest -m browser``; skipped when Chromium or its driver is missing.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from scripts.fake_camera import write_y4m
from tests.conftest import PHOTOS
from tests.test_serve import free_port
from tests.test_web import LAPTOP, PHONE, chromium, wait

pytestmark = pytest.mark.browser
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

CAMERA = [sorted((PHOTOS / "daisy").glob("*.jpg"))[0], sorted((PHOTOS / "roses").glob("*.jpg"))[0]]


@contextmanager
def running_studio(folder: Path, log: Path):
    """``imgclf studio FOLDER`` in a subprocess on a free port; yields the base URL."""
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "imgclf.cli", "studio", str(folder), "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(url + "/api/project", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


@pytest.fixture(scope="module")
def camera_browser(tmp_path_factory):
    video = write_y4m(tmp_path_factory.mktemp("camera") / "camera.y4m", CAMERA, seconds=3.0, fps=10)
    with chromium(tmp_path_factory.mktemp("chromium-studio"), "--use-fake-ui-for-media-stream",
                  "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={video}") as driver:
        yield driver


#: Drop or paste a photo (fetched from the studio) on a label card, as a person dragging a file or pasting one would.
DROP_OR_PASTE = """
const [how, label, src, done] = arguments;
fetch(src).then((r) => r.blob()).then((blob) => {
  const data = new DataTransfer();
  data.items.add(new File([blob], how + ".jpg", { type: "image/jpeg" }));
  const card = document.querySelector(`.label-card[data-label="${label}"]`);
  if (how === "drop") card.dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
  else { card.focus(); document.dispatchEvent(new ClipboardEvent("paste", { clipboardData: data, bubbles: true })); }
  done();
});
"""


def thumb_of(url: str, label: str, side: int) -> str:
    """A thumbnail of one of ``label``'s photos, as the page shows it (a new file: not a copy of one there)."""
    path = httpx.get(url + f"/api/labels/{label}/photos").json()["photos"][0]
    return f"/api/photo?path={path}&side={side}"


def label_count(url: str, name: str) -> int:
    return next((lab["count"] for lab in httpx.get(url + "/api/labels").json()["labels"] if lab["name"] == name), -1)


def record(driver, label: str, seconds: float) -> None:
    card = driver.find_element(By.CSS_SELECTOR, f'.label-card[data-label="{label}"]')
    button = card.find_element(By.CSS_SELECTOR, ".record")
    wait(driver, lambda d: button.is_enabled())
    ActionChains(driver).click_and_hold(button).pause(seconds).release().perform()
    wait(driver, lambda d: "added" in card.find_element(By.CSS_SELECTOR, ".recorded").text)


def test_teach_from_the_camera_train_answer_live_correct_undo_and_export(camera_browser, tmp_path, cache_dir):
    d = camera_browser
    folder = tmp_path / "studio-project"
    with running_studio(folder, tmp_path / "studio.log") as url:
        d.set_window_size(*LAPTOP)
        d.get(url + "/")
        wait(d, lambda d: d.find_element(By.ID, "view-teach").is_displayed())
        for name in ("daisy", "roses"):
            d.find_element(By.ID, "label-name").send_keys(name)
            d.find_element(By.CSS_SELECTOR, "#add-label button").click()
            wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, f'.label-card[data-label="{name}"]'))
        d.find_element(By.ID, "camera-toggle").click()
        wait(d, lambda d: d.execute_script("return document.getElementById('teach-video').readyState") == 4)
        record(d, "daisy", 2.0)
        record(d, "roses", 2.0)
        # by keyboard: Space held on the focused button records too
        card = d.find_element(By.CSS_SELECTOR, '.label-card[data-label="roses"]')
        before_keys = label_count(url, "roses")
        card.find_element(By.CSS_SELECTOR, ".record").send_keys("")  # focus
        ActionChains(d).key_down(Keys.SPACE).pause(1.2).key_up(Keys.SPACE).perform()
        wait(d, lambda d: label_count(url, "roses") > before_keys)
        # the file picker, a drop and a paste, each of real photo files; a text file is refused by name
        daisy_card = d.find_element(By.CSS_SELECTOR, '.label-card[data-label="daisy"]')
        before_files = label_count(url, "daisy")
        notes = tmp_path / "notes.txt"
        notes.write_text("not a photo")
        picks = sorted((PHOTOS / "daisy").glob("*.jpg"))[:2]
        daisy_card.find_element(By.CSS_SELECTOR, 'input[type=file]:not([webkitdirectory])').send_keys(
            "\n".join(str(p) for p in [*picks, notes]))
        wait(d, lambda d: "Added 2 photos to daisy" in d.find_element(By.ID, "notice").text)
        assert "notes.txt: not an image" in d.find_element(By.ID, "notice").text
        for how in ("drop", "paste"):
            side = 300 if how == "drop" else 280  # two different files: the second is no exact copy of the first
            d.execute_async_script(DROP_OR_PASTE, how, "daisy", thumb_of(url, "roses", side))
            wait(d, lambda d: "Added 1 photo to daisy" in d.find_element(By.ID, "notice").text)
            d.execute_script("document.getElementById('notice').textContent = ''")
        assert label_count(url, "daisy") == before_files + 4
        counts = {name: label_count(url, name) - (4 if name == "daisy" else 0) for name in ("daisy", "roses")}
        assert all(5 <= n <= 16 for n in counts.values()), counts  # about 4 frames a second
        assert sorted(p.name for p in folder.iterdir()) == [".imgclf", "daisy", "roses"]
        assert all(p.suffix == ".jpg" for p in (folder / "daisy").iterdir())

        d.find_element(By.ID, "train").click()
        try:
            wait(d, lambda d: d.find_element(By.ID, "model-status").text.startswith("Trained "), 180)
        except Exception:
            raise AssertionError(f"not trained: {httpx.get(url + '/api/train').json()}") from None
        d.find_element(By.CSS_SELECTOR, '#tabs [data-view="results"]').click()
        wait(d, lambda d: "%" in d.find_element(By.ID, "estimate-big").text)
        assert len(d.find_elements(By.CSS_SELECTOR, "#per-label li")) == 2

        d.find_element(By.CSS_SELECTOR, '#tabs [data-view="try"]').click()
        d.find_element(By.ID, "live-toggle").click()
        wait(d, lambda d: "answers a second" in d.find_element(By.ID, "live-rate").text, 30)
        answer = d.find_element(By.ID, "answer").text
        assert answer in ("daisy", "roses", "I don't know this")
        assert len(d.find_elements(By.CSS_SELECTOR, "#answer-bars li")) == 2
        rate = float(d.find_element(By.ID, "live-rate").text.split()[0])
        assert rate > 2, rate  # answers keep coming (the target's figure is measured by benchmarks/studio.py)

        before = label_count(url, "roses")
        runs = httpx.get(url + "/api/train").json()["runs"]
        d.execute_script("document.getElementById('auto-train').checked = true")  # ticked earlier, in Teach
        Select(d.find_element(By.ID, "correct-label")).select_by_visible_text("roses")
        d.find_element(By.CSS_SELECTOR, "#correct button").click()
        wait(d, lambda d: "Added 1 photo to roses" in d.find_element(By.ID, "notice").text)
        assert label_count(url, "roses") == before + 1
        wait(d, lambda d: httpx.get(url + "/api/train").json()["runs"] == runs + 1)  # "train after every change"
        d.find_element(By.ID, "live-toggle").click()  # stop the camera
        undo = d.find_element(By.ID, "undo")
        assert "added 1 photo to roses from a correction" in undo.get_attribute("title")
        undo.click()
        wait(d, lambda d: "Done: undid" in d.find_element(By.ID, "notice").text)
        assert label_count(url, "roses") == before

        d.find_element(By.CSS_SELECTOR, '#tabs [data-view="export"]').click()
        wait(d, lambda d: d.find_element(By.ID, "command").text.startswith("imgclf train"))
        href = d.find_element(By.ID, "export-zip").get_attribute("href")
        names = zipfile.ZipFile(io.BytesIO(httpx.get(href, timeout=30).content)).namelist()
        assert "studio-project-model/model.onnx" in names

        # readable on a phone: nothing wider than its screen (emulated: a headless window is at least 500 px wide)
        d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                          {"width": PHONE[0], "height": PHONE[1], "deviceScaleFactor": 1, "mobile": True})
        for view in ("teach", "results", "try", "export"):
            d.find_element(By.CSS_SELECTOR, f'#tabs [data-view="{view}"]').click()
            time.sleep(0.3)
            inner, wide = d.execute_script("return [window.innerWidth, document.documentElement.scrollWidth]")
            assert inner == PHONE[0] and wide <= inner, (view, wide)
        d.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        errors = [e for e in d.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
