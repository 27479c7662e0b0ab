"""The web page at ``/`` in a real headless Chromium (Debian's chromium + chromium-driver, Selenium).

Run alone with ``pytest -m browser``; skipped when Chromium or its driver is missing.
"""

from __future__ import annotations

import shutil
import time
from contextlib import contextmanager

import httpx
import pytest
from pathlib import Path

from tests.conftest import LABELS, UNSEEN
from tests.test_serve import PHOTOS, running_server

pytestmark = pytest.mark.browser
UNSEEN_PHOTO = sorted((UNSEEN / "tulips").glob("*.jpg"))[0]

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
CHROMEDRIVER = shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
                allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

#: Without the background-networking flags Chromium hangs on a closed network.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--force-device-scale-factor=1",
]
LAPTOP = (1280, 900)
PHONE = (390, 844)


@pytest.fixture(scope="module")
def site(trained_model, tmp_path_factory):
    log = tmp_path_factory.mktemp("web") / "server.log"
    with running_server(trained_model, log) as (url, _proc):
        yield url


@contextmanager
def chromium(profile: Path, *flags: str):
    """Headless Chromium at laptop size with a fresh ``profile`` and ``flags`` added, driven by chromedriver."""
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, *flags, f"--user-data-dir={profile}", f"--window-size={LAPTOP[0]},{LAPTOP[1]}"]:
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver


@pytest.fixture
def page(browser, site):
    browser.set_window_size(*LAPTOP)
    browser.get(site + "/")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#model .chip"))
    return browser


def wait(driver, condition, timeout: float = 30):
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition)


def cards_done(driver, n: int):
    cards = driver.find_elements(By.CSS_SELECTOR, "#results .card")
    return cards if len(cards) == n and all(c.get_attribute("data-state") != "pending" for c in cards) else False


def screenshot(driver, path, size) -> bytes:
    driver.set_window_size(*size)
    time.sleep(0.2)
    driver.save_screenshot(str(path))
    data = path.read_bytes()
    assert len(data) > 5000 and data[:8] == b"\x89PNG\r\n\x1a\n"
    return data


def test_upload_a_photo_read_the_label_and_screenshot(page, site, tmp_path):
    photo = PHOTOS[0]
    want = httpx.post(site + "/predict", files={"file": (photo.name, photo.read_bytes())}, timeout=30).json()

    header = page.find_element(By.ID, "model").text
    for lab in LABELS:
        assert lab in header
    assert "times in 100 on new photos" in header  # the estimate, from the most photos, in plain words
    assert "unknown: unlike every training photo" in header and "below 0." not in header and "%" not in header.split("unknown")[1]

    page.find_element(By.ID, "file").send_keys(str(photo))
    (card,) = wait(page, lambda d: cards_done(d, 1))
    assert card.get_attribute("data-state") == "done"
    assert card.find_element(By.CSS_SELECTOR, ".label").text == want["label"]
    assert card.get_attribute("data-label") == want["label"]
    assert card.find_element(By.CSS_SELECTOR, ".name").text == photo.name
    bars = card.find_elements(By.CSS_SELECTOR, ".bar")
    assert [b.get_attribute("data-label") for b in bars] == [t["label"] for t in want["top_k"]]
    top_pct = bars[0].find_element(By.CSS_SELECTOR, ".bar-pct").text
    assert top_pct.endswith("%") and abs(float(top_pct.rstrip("%").lstrip("<")) - 100 * want["confidence"]) < 0.1
    assert not card.find_element(By.CSS_SELECTOR, ".badge").is_displayed()  # not "unknown"
    img_ok = page.execute_script("const i = arguments[0].querySelector('img'); return !!i && i.complete && i.naturalWidth > 0", card)
    assert img_ok, "thumbnail did not render"

    screenshot(page, tmp_path / "laptop.png", LAPTOP)
    screenshot(page, tmp_path / "phone.png", PHONE)
    overflow = page.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"page is {overflow}px wider than a phone screen"
    assert page.find_element(By.CSS_SELECTOR, ".card .label").is_displayed()


def test_where_it_looked_toggle_and_neighbour_thumbnails(page, tmp_path):
    photo = UNSEEN_PHOTO
    page.find_element(By.ID, "file").send_keys(str(photo))
    (card,) = wait(page, lambda d: cards_done(d, 1))
    button = card.find_element(By.CSS_SELECTOR, ".explain-toggle")
    assert button.is_displayed() and button.get_attribute("aria-pressed") == "false"
    src = lambda: page.execute_script("return arguments[0].querySelector('.thumb img').src", card)  # noqa: E731
    assert src().startswith("blob:")
    button.click()
    assert button.get_attribute("aria-pressed") == "true" and src().startswith("data:image/png;base64,")
    wait(page, lambda d: d.execute_script("const i = arguments[0].querySelector('.thumb img'); return i.complete && i.naturalWidth > 0", card))
    screenshot(page, tmp_path / "explained.png", LAPTOP)
    button.click()
    assert src().startswith("blob:") and button.get_attribute("aria-pressed") == "false"
    neighbours = card.find_elements(By.CSS_SELECTOR, ".neighbors .neighbor")
    assert len(neighbours) == 3 and all(n.get_attribute("data-label") in LABELS for n in neighbours)
    # the training photos are on this machine: every thumbnail loads
    wait(page, lambda d: d.execute_script(
        "return Array.from(arguments[0].querySelectorAll('.neighbor img')).every(i => i.complete && i.naturalWidth > 0)"
        " && arguments[0].querySelectorAll('.neighbor img').length === 3", card))


def test_an_unsure_answer_names_the_labels_it_cannot_tell_apart(page, site):
    photo = UNSEEN_PHOTO.parents[1] / "daisy" / "99306615_739eb94b9e_m.jpg"  # daisy 59 %, sunflowers 36 %
    want = httpx.post(site + "/predict?error_rate=0.05", files={"file": (photo.name, photo.read_bytes())}, timeout=30).json()
    assert want["set"] == ["daisy", "sunflowers"]
    page.find_element(By.ID, "file").send_keys(str(photo))
    (card,) = wait(page, lambda d: cards_done(d, 1))
    line = card.find_element(By.CSS_SELECTOR, ".set")
    assert line.is_displayed() and line.text == "Can't tell for sure: daisy or sunflowers"
    page.find_element(By.ID, "file").send_keys(str(PHOTOS[0]))  # a sure answer says nothing more
    first = wait(page, lambda d: cards_done(d, 2))[0]
    assert not first.find_element(By.CSS_SELECTOR, ".set").is_displayed()


def test_several_photos_and_a_bad_file(page, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photo at all")
    files = [*PHOTOS[1:4], bad]
    page.find_element(By.ID, "file").send_keys("\n".join(map(str, files)))
    cards = wait(page, lambda d: cards_done(d, 4))
    by_name = {c.find_element(By.CSS_SELECTOR, ".name").text: c for c in cards}
    assert set(by_name) == {f.name for f in files}
    failed = by_name.pop("notes.jpg")
    assert failed.get_attribute("data-state") == "error"
    assert "not an image" in failed.find_element(By.CSS_SELECTOR, ".error").text
    for card in by_name.values():
        assert card.get_attribute("data-state") == "done"
        assert card.find_element(By.CSS_SELECTOR, ".label").text in LABELS
    screenshot(page, tmp_path / "many-laptop.png", LAPTOP)


MAKE_PHOTO_JS = """
const done = arguments[arguments.length - 1];
const c = document.createElement('canvas'); c.width = 240; c.height = 180;
const g = c.getContext('2d');
g.fillStyle = '#3a7d2c'; g.fillRect(0, 0, 240, 180);
g.fillStyle = '#f5d90a'; g.beginPath(); g.arc(120, 90, 50, 0, 7); g.fill();
c.toBlob(b => { window.__photo = new File([b], arguments[0], {type: 'image/png'}); done(true); }, 'image/png');
"""


def test_drop_and_paste(page):
    page.execute_async_script(MAKE_PHOTO_JS, "dropped.png")
    page.execute_script("""
        const dt = new DataTransfer(); dt.items.add(window.__photo);
        document.getElementById('drop').dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
    """)
    (card,) = wait(page, lambda d: cards_done(d, 1))
    assert card.find_element(By.CSS_SELECTOR, ".name").text == "dropped.png"
    assert card.find_element(By.CSS_SELECTOR, ".label").text in LABELS + ["unknown"]  # a drawn circle is no flower
    page.execute_async_script(MAKE_PHOTO_JS, "pasted.png")
    page.execute_script("""
        const dt = new DataTransfer(); dt.items.add(window.__photo);
        document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: dt, bubbles: true, cancelable: true}));
    """)
    cards = wait(page, lambda d: cards_done(d, 2))
    assert cards[0].find_element(By.CSS_SELECTOR, ".name").text == "pasted.png"
    assert cards[0].find_element(By.CSS_SELECTOR, ".label").text in LABELS + ["unknown"]


def test_unknown_is_marked(page, tmp_path):
    """A real photo of no flower (a cat) comes back ``unknown``, and the card says so visibly."""
    cat = Path(__file__).resolve().parents[1] / "examples" / "not-flowers" / "chelsea.jpg"
    page.find_element(By.ID, "file").send_keys(str(cat))
    (card,) = wait(page, lambda d: cards_done(d, 1))
    assert "is-unknown" in card.get_attribute("class").split()
    assert card.find_element(By.CSS_SELECTOR, ".label").text == "unknown"
    assert card.find_element(By.CSS_SELECTOR, ".badge").text == "unlike every training photo"
    why = card.find_element(By.CSS_SELECTOR, ".why").text  # the reason on the similarity's own scale, no percentage
    assert why.startswith("similarity 0.") and ", below 0." in why and "closest label:" in why and "%" not in why
    assert not card.find_element(By.CSS_SELECTOR, ".bars").is_displayed() and card.find_element(By.CSS_SELECTOR, ".conf").text == ""
    colour = page.execute_script("return getComputedStyle(arguments[0]).color", card.find_element(By.CSS_SELECTOR, ".label"))
    normal = page.execute_script("return getComputedStyle(document.querySelector('h1')).color")
    assert colour != normal
    screenshot(page, tmp_path / "unknown.png", LAPTOP)


def test_no_face_is_marked_for_a_face_model(browser, tmp_path, cache_dir):
    """A face model's answer for a photo without a face reads "no face", marked like "unknown"."""
    pytest.importorskip("dlib", reason="the face extra is not installed")
    from tests.conftest import ROOT, UNSEEN, run_cli

    model = tmp_path / "faces"
    result = run_cli("train", str(ROOT / "examples" / "faces" / "people"), "-o", str(model), "--backbone", "face", "-q")
    assert result.returncode == 0, result.stderr
    with running_server(model, tmp_path / "server.log") as (url, _proc):
        browser.set_window_size(*LAPTOP)
        browser.get(url + "/")
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#model .chip"))
        flower = sorted((UNSEEN / "daisy").glob("*.jpg"))[0]
        browser.find_element(By.ID, "file").send_keys(str(flower))
        (card,) = wait(browser, lambda d: cards_done(d, 1))
        assert card.find_element(By.CSS_SELECTOR, ".label").text == "no face"
        assert card.find_element(By.CSS_SELECTOR, ".badge").text == "no face found"
        assert "is-unknown" in card.get_attribute("class").split()
        assert not card.find_elements(By.CSS_SELECTOR, ".bars li")
        browser.find_element(By.ID, "file").send_keys(str(ROOT / "examples" / "faces" / "unseen" / "obama-oval-office.jpg"))
        cards = wait(browser, lambda d: cards_done(d, 2))
        assert cards[0].find_element(By.CSS_SELECTOR, ".label").text == "obama"
        assert not cards[0].find_element(By.CSS_SELECTOR, ".badge").is_displayed()
        screenshot(browser, tmp_path / "no-face.png", LAPTOP)


def test_several_labels_are_named_with_their_marks_and_maps(browser, tmp_path, multilabel_model, multilabel_data):
    """A model of several labels per photo: a collage reads "roses + tulips", each bar carries the mark its label must
    reach, the map toggle steps through each label answered, and a photo of none reads "none of these" and why."""
    from tests.conftest import UNSEEN

    with running_server(multilabel_model, tmp_path / "server.log") as (url, _proc):
        browser.set_window_size(*LAPTOP)
        browser.get(url + "/")
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#model .chip"))
        assert "of the labels a photo shows" in browser.find_element(By.ID, "model").text
        collage = multilabel_data / "unseen" / "roses+tulips.jpg"
        want = httpx.post(url + "/predict", files={"file": (collage.name, collage.read_bytes())}, timeout=60).json()
        browser.find_element(By.ID, "file").send_keys(str(collage))
        (card,) = wait(browser, lambda d: cards_done(d, 1))
        named = [a["label"] for a in want["labels"]]
        assert card.find_element(By.CSS_SELECTOR, ".label").text == " + ".join(named) and len(named) == 2
        bars = card.find_elements(By.CSS_SELECTOR, ".bars li")
        assert len(card.find_elements(By.CSS_SELECTOR, ".bars .mark")) == len(bars) == 3
        assert [b.get_attribute("data-label") for b in bars if "top" in b.get_attribute("class").split()] == named
        toggle = card.find_element(By.CSS_SELECTOR, ".explain-toggle")
        seen = []
        for _ in named:
            assert toggle.text == f"show where it saw {named[len(seen)]}"
            toggle.click()
            seen.append(card.find_element(By.CSS_SELECTOR, ".thumb").get_attribute("data-map"))
        assert seen == named and toggle.text == "show the photo"
        screenshot(browser, tmp_path / "several.png", LAPTOP)
        toggle.click()
        assert card.find_element(By.CSS_SELECTOR, ".thumb").get_attribute("data-map") is None
        rows = [(p, httpx.post(url + "/predict", files={"file": (p.name, p.read_bytes())}, timeout=60).json())
                for p in sorted(UNSEEN.rglob("*.jpg"))]
        none = next(p for p, r in rows if r["status"] == "none")
        browser.find_element(By.ID, "file").send_keys(str(none))
        cards = wait(browser, lambda d: cards_done(d, 2))
        assert cards[0].find_element(By.CSS_SELECTOR, ".label").text == "none of these"
        assert "no label reached its mark" in cards[0].find_element(By.CSS_SELECTOR, ".why").text
