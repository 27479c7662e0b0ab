"""The HTML report, its plots and the model card, on the bundled example (no extra training)."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import pytest
from PIL import Image

from tests.conftest import LABELS, UNSEEN, copy_photos, run_cli

PLOTS = ("confusion_matrix.svg", "confusion_matrix_normalized.svg", "reliability.svg")


class _Elements(HTMLParser):
    """Every start tag with its attributes, and the page's text."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(html: str) -> _Elements:
    p = _Elements()
    p.feed(html)
    return p


def find(page: _Elements, tag: str, **attrs) -> list[dict]:
    return [a for t, a in page.tags if t == tag and all(a.get(k.rstrip("_")) == v for k, v in attrs.items())]


def with_class(page: _Elements, tag: str, cls: str) -> list[dict]:
    return [a for t, a in page.tags if t == tag and cls in (a.get("class") or "").split()]


def assert_offline(html: str) -> None:
    """No URL that leaves the page: every src/href is a data: URI or an in-page anchor."""
    assert not re.search(r"(?i)\b(?:https?|ftp|wss?):|//[a-z0-9.-]+\.[a-z]{2,}/", html), "external URL in report"
    page = parse(html)
    for tag, attrs in page.tags:
        for key in ("src", "href", "srcset", "action", "poster", "data"):
            value = attrs.get(key)
            if value is not None and key != "data":
                assert value.startswith(("data:", "#")), (tag, key, value[:80])
        assert tag not in ("link", "iframe", "object", "embed", "base"), tag
    for url in re.findall(r"url\(([^)]*)\)", html):
        assert url.strip("'\" ").startswith("data:"), url


def check_report(html: str, result: dict, photos_expected: list[dict], calibrated_on: list[dict] | None = None) -> _Elements:
    """The report shows exactly the numbers of ``result`` (a split's metrics or an evaluation); its calibration is
    measured on ``calibrated_on`` (a training report: every photo's out-of-fold answer), else on the photos shown."""
    assert_offline(html)
    page = parse(html)
    text = " ".join(page.text).replace("\u00a0", " ")  # figures keep their % with a no-break space
    labels = result["labels"]
    # Headline: accuracy, macro-F1, photo count.
    assert f"{100 * result['accuracy']:.1f} %" in text
    assert f"{result['macro_f1']:.3f}" in text
    correct = sum(result["confusion_matrix"][i][i] for i in range(len(labels)))
    assert f"{correct} of {result['n']} photos right" in text
    # Confusion-matrix pictures, with one link per non-empty cell leading to that cell's photos.
    for img_id in ("confusion-matrix", "confusion-matrix-normalized"):
        (img,) = find(page, "img", id=img_id)
        assert img["src"].startswith("data:image/svg+xml;base64,") and len(img["src"]) > 5000
    cells = {a["href"]: int(a["data-count"]) for a in with_class(page, "a", "cell")}
    groups = {a["id"]: int(a["data-count"]) for a in with_class(page, "div", "group")}
    expected = {f"cell-{i}-{j}": c for i, row in enumerate(result["confusion_matrix"]) for j, c in enumerate(row) if c}
    assert groups == expected
    assert cells == {f"#{k}": v for k, v in expected.items()}
    # One row per class with its numbers.
    rows = find(page, "tr")
    assert [r["data-label"] for r in rows if "data-label" in r] == labels
    for lab, m in result["per_class"].items():
        assert f'<tr data-label="{lab}"' in html
        if m["support"]:
            assert f'data-v="{m["recall"]}"' in html
    # The misclassified photos, worst first, each with top-k bars.
    wrong = sorted((p for p in photos_expected if p["label"] != p["predicted"]), key=lambda p: -p["confidence"])
    misses = with_class(page, "article", "miss")
    assert [(m["data-path"], m["data-label"], m["data-predicted"]) for m in misses] == [
        (p["path"], p["label"], p["predicted"]) for p in wrong
    ]
    assert html.count('class="br ') >= len(wrong) * 2
    # Photos are embedded as thumbnails.
    assert html.count("data:image/jpeg;base64,") >= len(photos_expected)
    # Calibration.
    (img,) = find(page, "img", id="reliability-diagram")
    assert img["src"].startswith("data:image/svg+xml;base64,")
    from imgclf.report.calibration import from_photos

    assert f"{from_photos(calibrated_on or photos_expected)['ece']:.3f}" in text
    return page


def test_train_writes_report_plots_and_card(trained_model):
    metrics = json.loads((trained_model / "metrics.json").read_text())
    for name in ("report.html", *PLOTS):
        assert (trained_model / name).stat().st_size > 1000, name
        if name.endswith(".svg"):
            svg = (trained_model / name).read_text()
            assert svg.startswith("<svg xmlns='http://www.w3.org/2000/svg'") and svg.endswith("</svg>")
    test = metrics["test"]
    assert len(test["photos"]) == test["n"]
    for p in test["photos"]:
        assert set(p) == {"path", "label", "predicted", "confidence", "label_confidence", "top_k"}
        assert p["top_k"][0] == {"label": p["predicted"], "confidence": p["confidence"]}
    html = (trained_model / "report.html").read_text()
    page = check_report(html, test, test["photos"], metrics["out_of_fold"]["photos"])
    text = " ".join(page.text).replace("\u00a0", " ")  # figures keep their % with a no-break space
    assert "efficientnet_lite0" in text and "test" in text
    # The data section: photos per label and split, and the warnings (none here).
    counts = find(page, "table", id="counts")
    assert counts and "total" in text and ">70<" in html
    assert "No skipped files and no data warnings." in text
    # The card links the confusion-matrix picture that sits beside it.
    card = (trained_model / "README.md").read_text()
    assert "![confusion matrix](confusion_matrix.svg)" in card
    for heading in ("## Intended use", "## Classes", "## Data split", "## Metrics", "## Known limitations",
                    "## How it was made", "## How to use it", "### Plain ONNX Runtime"):
        assert heading in card, heading
    meta = json.loads((trained_model / "imgclf.json").read_text())
    assert meta["command"] in card
    for lab in LABELS:
        c = metrics["counts"][lab]
        assert f"| {lab} | {c['train']} | {c['val']} | {c['test']} | {sum(c.values())} |" in card


def test_train_summary_ends_with_report_path(trained_model, capsys):
    from imgclf.cli import render
    from imgclf.training import TrainResult

    metrics = json.loads((trained_model / "metrics.json").read_text())
    render.train_summary(TrainResult(trained_model, LABELS, metrics["counts"], metrics))
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == f"report: {trained_model / 'report.html'}"


def test_evaluate_report(trained_model, tmp_path):
    out = tmp_path / "out" / "unseen.html"
    js = tmp_path / "unseen.json"
    r = run_cli("evaluate", str(trained_model), str(UNSEEN), "--report", str(out), "--json", str(js))
    assert r.returncode == 0, r.stderr
    assert f"report written to {out}" in r.stdout
    for name in PLOTS:
        assert (out.parent / f"unseen-{name}").stat().st_size > 1000
    res = json.loads(js.read_text())
    assert len(res["photos"]) == res["n"] == 10
    for p in res["photos"]:
        assert len(p["top_k"]) == 3 and 0 <= p["label_confidence"] <= 1
    assert [m["path"] for m in res["misclassified"]] == [
        p["path"] for p in sorted(res["photos"], key=lambda p: -p["confidence"]) if p["label"] != p["predicted"]
    ]
    html = out.read_text()
    page = check_report(html, res, res["photos"])
    assert str(UNSEEN) in " ".join(page.text)
    assert out.stat().st_size < 1_000_000


def _synthetic(labels, photos, **extra) -> dict:
    from imgclf.evaluation.metrics import summarize

    index = {lab: i for i, lab in enumerate(labels)}
    res = summarize([index[p["label"]] for p in photos], [index[p["predicted"]] for p in photos], labels)
    res.update({"kind": "evaluation", "photos": photos, "info": {"backbone": "test", "data": "somewhere"}, **extra})
    return res


def test_labels_and_paths_are_escaped(tmp_path):
    from imgclf.report import write_report

    evil = '<script>alert("x")</script>'
    labels = [evil, "a&b", 'q"uote']
    path = str(tmp_path / 'we"ird <img src=x onerror=alert(1)>.jpg')
    photos = [
        {"path": path, "label": evil, "predicted": "a&b", "confidence": 0.9,
         "top_k": [{"label": "a&b", "confidence": 0.9}, {"label": evil, "confidence": 0.1}]},
        {"path": path + "2", "label": "a&b", "predicted": "a&b", "confidence": 0.6, "top_k": [{"label": "a&b", "confidence": 0.6}]},
        {"path": path + "3", "label": 'q"uote', "predicted": 'q"uote', "confidence": 0.7, "top_k": []},
    ]
    res = _synthetic(labels, photos, skipped=[{"path": "<b>bad</b>.jpg", "reason": "not an image <x>"}],
                     warnings=["class imbalance: <i>"], unknown_labels=["<u>"])
    files = write_report(tmp_path / "r.html", res, title="<title>", plot_prefix="r-")
    assert [f.name for f in files] == ["r.html", *(f"r-{n}" for n in PLOTS)]
    for svg in files[1:]:  # the plots carry the labels too, escaped
        text = svg.read_text()
        assert "<img src=x" not in text and "<script>" not in text
        if "confusion" in svg.name:
            assert "a&amp;b" in text and "&lt;script&gt;" in text
    html = (tmp_path / "r.html").read_text()
    assert_offline(html)
    assert html.count("<script>") == 1  # the page's own sorting script only
    for raw in ("<img src=x", "<b>bad", "<i>", "<u>", "<title><"):
        assert raw not in html, raw
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html and "a&amp;b" in html
    page = parse(html)
    assert [r["data-label"] for r in find(page, "tr") if "data-label" in r] == labels
    assert "no preview" in html  # unreadable photos get a placeholder, not a broken image


def test_embedded_photos_are_capped(tmp_path):
    from imgclf.report import html as report_html
    from imgclf.report import write_report

    photo = str(next((UNSEEN / "daisy").iterdir()))
    labels = [f"c{i}" for i in range(4)]
    photos = [{"path": photo if k % 2 else f"{photo}-missing-{k}", "label": labels[k % 4], "predicted": labels[(k + 1) % 4],
               "confidence": round(0.3 + 0.6 * k / 900, 6), "top_k": []} for k in range(900)]
    photos += [{"path": photo, "label": lab, "predicted": lab, "confidence": 0.8, "top_k": []} for lab in labels for _ in range(50)]
    write_report(tmp_path / "big.html", _synthetic(labels, photos))
    html = (tmp_path / "big.html").read_text()
    page = parse(html)
    assert len(with_class(page, "article", "miss")) == report_html.MAX_MISCLASSIFIED
    assert len(with_class(page, "tr", "miss-row")) == 900 - report_html.MAX_MISCLASSIFIED
    thumbs = html.count("data:image/jpeg;base64,")
    assert 0 < thumbs <= report_html.MAX_MISCLASSIFIED + 16 * report_html.PER_CELL
    assert "and 217 more" in html  # 225 photos in each wrong cell, 8 shown
    assert len(html) < 3_000_000


def test_training_report_without_test_split_uses_val_and_shows_warnings(trained_model, tmp_path):
    from imgclf.report import from_training, write_report

    meta = json.loads((trained_model / "imgclf.json").read_text())
    metrics = json.loads((trained_model / "metrics.json").read_text())
    metrics["test"] = None
    metrics["warnings"] = ["class imbalance: tulips has 13 training photos, roses only 9"]
    metrics["leakage"] = [{"path": "photos/roses/a.jpg", "reason": "same content as test photo photos/roses/b.jpg"}]
    res = from_training(meta, metrics)
    assert res["split"] == "val" and res["n"] == metrics["val"]["n"]
    write_report(tmp_path / "report.html", res)
    html = (tmp_path / "report.html").read_text()
    text = " ".join(parse(html).text)
    assert "val" in text and "class imbalance: tulips" in text and "photos/roses/a.jpg" in text
    assert 'id="leakage"' in html
    # No held-out photos at all: the report still renders, without plots.
    metrics["val"] = None
    res = from_training(meta, metrics)
    files = write_report(tmp_path / "none.html", res)
    assert files == [tmp_path / "none.html", tmp_path / "reliability.svg"]  # calibration from the out-of-fold answers
    assert "No held-out photos" in (tmp_path / "none.html").read_text()


def _card_snippet(card: str) -> str:
    section = card.split("### Plain ONNX Runtime", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_card_onnx_snippet_runs_without_imgclf(trained_model, tmp_path):
    import imgclf

    snippet = _card_snippet((trained_model / "README.md").read_text())
    assert len(snippet.strip().splitlines()) <= 18
    imports = set()
    for node in ast.walk(ast.parse(snippet)):
        if isinstance(node, ast.Import):
            imports |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imports.add(node.module.split(".")[0])
    assert imports <= {"json", "math", "sys", "numpy", "onnxruntime", "PIL"}, imports
    script = tmp_path / "predict_onnx.py"
    script.write_text(snippet)
    # A landscape and a portrait JPEG, and a PNG whose EXIF says "rotate 90°".
    landscape = next(p for p in sorted(UNSEEN.glob("*/*")) if Image.open(p).width > Image.open(p).height)
    portrait = UNSEEN / "daisy" / "99306615_739eb94b9e_m.jpg"
    rotated = tmp_path / "rotated.png"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.open(landscape).save(rotated, exif=exif)
    photos = [landscape, portrait, rotated]
    runner = (
        "import runpy, sys\n"
        "sys.modules['imgclf'] = None  # any 'import imgclf' now fails\n"
        "script, model, *photos = sys.argv[1:]\n"
        "for photo in photos:\n"
        "    sys.argv = [script, model, photo]\n"
        "    runpy.run_path(script, run_name='__main__')\n"
        "    print('--')\n"
        "assert not any(m == 'imgclf' or m.startswith('imgclf.') for m in sys.modules if sys.modules[m] is not None)\n"
    )
    r = subprocess.run([sys.executable, "-I", "-c", runner, str(script), str(trained_model), *map(str, photos)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    outputs = [o for o in r.stdout.split("--\n") if o.strip()]
    model = imgclf.load(trained_model)
    for photo, out in zip(photos, outputs, strict=True):
        got = {lab: float(p) for lab, p in (line.split("\t") for line in out.strip().splitlines())}
        # The reference preprocessing (predict's pipeline may decode JPEGs faster, within tests/test_speed.py's tolerance)
        exact = model.scores(model.preprocessing(imgclf.runtime.images.load_image(photo))[None])[0]
        want = model.prediction(str(photo), exact, top_k=len(LABELS))
        assert list(got) == [t["label"] for t in want.top_k]
        for t in want.top_k:
            assert abs(got[t["label"]] - t["confidence"]) < 1e-5, (photo, t, got)


def test_predict_and_import_never_load_matplotlib(trained_model):
    code = (
        "import sys, imgclf, imgclf.report, imgclf.training, imgclf.report.card\n"
        "from imgclf.cli import main\n"
        "sys.argv = ['imgclf', 'predict', sys.argv[1], sys.argv[2], '-f', 'json']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "bad = [m for m in ('matplotlib', 'imgclf.report.plots') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(trained_model), str(UNSEEN / "tulips")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_training_draws_its_report_without_a_plotting_library(tmp_path, cache_dir, trained_model):
    code = (
        "import sys, imgclf\n"
        "imgclf.train(sys.argv[1], sys.argv[2])\n"
        "assert 'matplotlib' not in sys.modules\n"
    )
    data = copy_photos(tmp_path / "d", per_label=6)  # a validation and a test photo a label
    r = subprocess.run([sys.executable, "-c", code, str(data), str(tmp_path / "m")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "m" / "confusion_matrix.svg").read_text().count("<rect") >= 25


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed")
def test_report_renders_in_headless_chromium(trained_model, tmp_path):
    report = trained_model / "report.html"
    html = report.read_text()
    assert re.search(r'<img id="confusion-matrix" src="data:image/svg\+xml;base64,[A-Za-z0-9+/=]{1000,}"', html)
    shot = tmp_path / "report.png"
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2000",
        report.as_uri(),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and shot.exists(), r.stderr[-2000:]
    assert shot.stat().st_size > 20_000
    img = Image.open(shot).convert("RGB")
    assert img.size == (1280, 2000)
    assert len(img.getcolors(maxcolors=1 << 20) or range(1 << 20)) > 500  # text, plots and photos, not a blank page
    # The confusion matrix is drawn near the top: the band below the headline is far from uniform.
    band = img.crop((0, 350, 1280, 900)).convert("L")
    lo, hi = band.getextrema()
    assert hi - lo > 150


def test_calibration_verdict_is_shared_by_report_and_card():
    from imgclf.report.card import _limitations
    from imgclf.report.calibration import bias
    from imgclf.report.html import _calibration

    over = {"mean_confidence": 0.9, "accuracy": 0.8, "ece": 0.1, "n": 200, "bins": [], "thresholds": []}
    under = {**over, "mean_confidence": 0.7}
    matched = {**over, "mean_confidence": 0.81}
    assert [bias(c) for c in (over, under, matched)] == ["over", "under", "matched"]
    assert "<b>over-confident</b>: its mean confidence (90.0 %) exceeds its accuracy (80.0 %)" in _calibration(over, {}, {}).replace("\u00a0", " ")
    assert "<b>under-confident</b>: its mean confidence (70.0 %) is below its accuracy (80.0 %)" in _calibration(under, {}, {}).replace("\u00a0", " ")
    assert "Confidence matches accuracy closely" in _calibration(matched, {}, {}).replace("\u00a0", " ")
    m = {"n": 200, "accuracy": 0.8, "per_class": {}}
    assert "it was over-confident: mean confidence 90%, accuracy 80%" in _limitations(["a"], "test", m, over, {})
    assert "its confidence matched its accuracy closely" in _limitations(["a"], "test", m, matched, {})


def test_every_mistake_shown_has_its_heatmap(trained_model, tmp_path):
    """The training report and an evaluation report put where the model looked beside each misclassified photo."""
    page = (trained_model / "report.html").read_text()
    misses = page.count('<article class="miss"')
    assert misses >= 1 and page.count('<img class="heat" src="data:image/jpeg;base64,') == misses
    out = tmp_path / "eval.html"
    r = run_cli("evaluate", str(trained_model), str(UNSEEN), "--report", str(out))
    assert r.returncode == 0, r.stderr
    page = out.read_text()
    misses = page.count('<article class="miss"')
    assert misses >= 1 and page.count('<img class="heat"') == misses


def test_retraining_on_the_same_photos_reuses_the_reports_heatmaps(tmp_path, cache_dir):
    """The same photos give the same model: its report's overlays come from the cache, with no ONNX Runtime session."""
    import subprocess
    import sys

    data = copy_photos(tmp_path / "d", per_label=6)
    code = ("import sys, imgclf; imgclf.train(sys.argv[1], sys.argv[2], cache_dir=sys.argv[3]); "
            "print('onnxruntime' in sys.modules)")
    runs = [subprocess.run([sys.executable, "-c", code, str(data), str(tmp_path / "m"), str(tmp_path / "cache")],
                           capture_output=True, text=True) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[-1].stderr
    page = (tmp_path / "m" / "report.html").read_text()
    if '<article class="miss"' not in page:
        pytest.skip("this split made no mistake to draw")
    assert runs[0].stdout.split()[-1] == "True" and runs[1].stdout.split()[-1] == "False"
    assert page.count('<img class="heat"') == page.count('<article class="miss"')
    assert len(list((tmp_path / "cache" / "heatmaps").iterdir())) == page.count('<article class="miss"')
