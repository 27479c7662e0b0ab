"""``imgclf check``: problems planted in a copy of the bundled photos are found, named and never acted on."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageEnhance, ImageFilter

from conftest import LABELS, PHOTOS, ROOT, copy_photos

runner = CliRunner()


def _cli(*args: str):
    from imgclf.cli import app

    return runner.invoke(app, list(args), catch_exceptions=False)


def _near_copy(src, dst, shrink: float = 0.7, quality: int = 55) -> None:
    img = Image.open(src).convert("RGB")
    img = img.resize((int(img.width * shrink), int(img.height * shrink)), Image.Resampling.BILINEAR)
    img = ImageEnhance.Color(img.crop((3, 3, img.width - 3, img.height - 3))).enhance(1.1)
    img.save(dst, "JPEG", quality=quality)


def _copy_into_another_split(data, original, stem: str) -> str:
    """A recompressed copy of ``original``, beside it, named so that the split its label's photos get (on a first
    scan, as the check's) differs from the original's; its name."""
    from imgclf.data import scan_labelled

    for k in range(100):
        target = original.parent / f"{stem}-{k}.jpg"
        _near_copy(original, target)
        split = {p.path: p.split for p in scan_labelled(data, 0.1, 0.1).photos}
        if split[target] != split[original]:
            return target.name
        target.unlink()
    raise AssertionError("no name found")


def _digest(folder) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def planted(tmp_path_factory, cache_dir):
    """The bundled photos with one problem of each kind planted; (folder, what was planted, the CLI's outputs)."""
    data = copy_photos(tmp_path_factory.mktemp("planted") / "photos")
    daisy, roses = sorted((data / "daisy").iterdir()), sorted((data / "roses").iterdir())
    plan = {}
    shutil.copy(daisy[0], data / "daisy" / "same-file.jpg")  # exact copy, same label
    plan["exact"] = ("daisy/same-file.jpg", f"daisy/{daisy[0].name}")
    shutil.copy(daisy[1], data / "tulips" / "daisy-as-tulip.jpg")  # the same file under another label
    plan["conflict"] = ("tulips/daisy-as-tulip.jpg", f"daisy/{daisy[1].name}")
    sunflower = sorted((data / "sunflowers").iterdir())[1]  # one the out-of-fold heads place confidently (15 photos a label)
    sunflower.rename(data / "daisy" / "a-sunflower.jpg")  # a wrong label
    plan["label_error"] = "daisy/a-sunflower.jpg"
    shutil.copy(ROOT / "examples" / "not-flowers" / "coins.jpg", data / "roses" / "scan.jpg")  # no flower at all
    plan["outlier"] = "roses/scan.jpg"
    Image.open(roses[3]).convert("RGB").filter(ImageFilter.GaussianBlur(6)).save(data / "roses" / "blurred.jpg", quality=90)
    Image.open(roses[4]).convert("RGB").resize((64, 48)).save(data / "roses" / "tiny.jpg")
    Image.new("RGB", (300, 300), (90, 120, 90)).save(data / "tulips" / "flat.png")
    leak = _copy_into_another_split(data, roses[0], "copy")  # last: the splits depend on every photo of the label
    plan["near"] = (f"roses/{leak}", f"roses/{roses[0].name}")
    (data / "tulips" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    before = _digest(data)
    out = tmp_path_factory.mktemp("check-out")
    result = _cli("check", str(data), "--json", str(out / "f.json"), "--fix-plan", str(out / "plan.csv"),
                  "--report", str(out / "check.html"), "-q")
    return data, plan, result, out, before


def _by_kind(out) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for f in json.loads((out / "f.json").read_text())["findings"]:
        found.setdefault(f["kind"], []).append(f)
    return found


def test_check_finds_each_planted_problem_and_names_it(planted):
    data, plan, result, out, _ = planted
    assert result.exit_code == 0, result.output
    found = _by_kind(out)
    rel = lambda p: str(p).removeprefix(str(data) + "/")  # noqa: E731
    pair = lambda f: frozenset((rel(f["path"]), rel(f["other"])))  # noqa: E731  (which is "the copy" follows the splits)
    exact = {pair(f): f for f in found["exact_duplicate"]}
    assert not exact[frozenset(plan["exact"])]["conflict"]
    assert exact[frozenset(plan["conflict"])]["conflict"] is True and exact[frozenset(plan["conflict"])]["similarity"] == 1.0
    near = {pair(f): f for f in found["near_duplicate"]}
    assert frozenset(plan["near"]) in near, near.keys()
    assert near[frozenset(plan["near"])]["leakage"] is True and near[frozenset(plan["near"])]["similarity"] >= 0.8
    errors = {rel(f["path"]): f for f in found["label_error"]}
    assert errors[plan["label_error"]]["suggested"] == "sunflowers" and errors[plan["label_error"]]["label"] == "daisy"
    assert all(rel(p).startswith("sunflowers/") for p in errors[plan["label_error"]]["examples"])
    assert plan["outlier"] in {rel(f["path"]) for f in found["outlier"]}
    assert {rel(f["path"]) for f in found["blurry"]} == {"roses/blurred.jpg"}
    assert {rel(f["path"]) for f in found["too_small"]} == {"roses/tiny.jpg"}
    assert {rel(f["path"]) for f in found["near_uniform"]} == {"tulips/flat.png"}
    assert "tulips/broken.jpg" in {rel(f["path"]) for f in found["unreadable"]}
    for f in sum(found.values(), []):
        assert f["reason"] and f["action"] and isinstance(f["score"], float)
    assert "label_error" in result.output and "roses/scan.jpg" in result.output


def test_check_changes_nothing_and_writes_an_editable_plan_and_a_page(planted):
    data, plan, _, out, before = planted
    assert _digest(data) == before  # nothing moved, deleted or added in the data folder
    rows = list(csv.DictReader(io.StringIO((out / "plan.csv").read_text())))
    assert list(rows[0]) == ["path", "kind", "label", "suggested", "other", "score", "action"]
    mislabel = [r for r in rows if r["kind"] == "label_error" and r["path"].endswith("a-sunflower.jpg")]
    assert mislabel and mislabel[0]["suggested"] == "sunflowers" and "move it to sunflowers/" in mislabel[0]["action"]
    page = (out / "check.html").read_text()
    assert "http://" not in page and "https://" not in page  # self-contained
    cards = [a.split("</article>")[0] for a in page.split("<article")[1:]]
    card = next(c for c in cards if 'data-kind="label_error"' in c and "a-sunflower.jpg" in c)
    assert card.count("data:image/jpeg;base64,") == 4  # the photo and 3 photos of the suggested label, side by side
    copy_card = next(c for c in cards if 'data-kind="near_duplicate"' in c and plan["near"][0].split("/")[1] in c)
    assert copy_card.count("data:image/jpeg;base64,") == 2 and "leakage" in copy_card


def test_check_refuses_to_write_into_the_data_folder(planted, tmp_path):
    data = planted[0]
    result = _cli("check", str(data), "--json", str(data / "findings.json"), "-q")
    assert result.exit_code == 2 and "inside the data folder" in result.output
    assert not (data / "findings.json").exists()
    out = planted[3]
    again = _cli("check", str(data), "--json", str(out / "f.json"), "--fix-plan", str(out / "plan.csv"),
                 "--report", str(out / "check.html"), "-q")
    assert again.exit_code == 0, again.output  # its own earlier results are replaced
    assert json.loads((out / "f.json").read_text())["generator"].startswith("imgclf check ")


def test_a_clean_folder_raises_few_alarms_and_a_change_is_seen_at_once(tmp_path, cache_dir):
    """The bundled photos as they are: no copies, blur or tiny photos; moving one photo to a wrong label is found on
    the next check (the cached result is keyed by the labels, not reused)."""
    import imgclf

    data = copy_photos(tmp_path / "photos")
    clean = imgclf.check(data, cache_dir=cache_dir)  # the Python verb
    about_photos = [f for f in clean.findings if f.path]
    assert len(about_photos) <= 5, [f.to_dict() for f in about_photos]  # 4 today: 3 label errors and an outlier
    assert not clean.of_kind("exact_duplicate") and not clean.of_kind("near_duplicate") and not clean.of_kind("blurry")
    moved = sorted((data / "dandelion").iterdir())[0]
    moved.rename(data / "roses" / moved.name)
    again = imgclf.check(data, cache_dir=cache_dir)
    assert str(data / "roses" / moved.name) in {f.path for f in again.of_kind("label_error")}


def test_near_duplicates_are_told_from_different_photos_of_one_label(tmp_path):
    """A resized, recompressed, cropped and recoloured copy matches its original; no two different photos of a label match."""
    from imgclf.checks.copies import MAX_HASH_DISTANCE, MIN_LAYOUT
    from imgclf.checks.fingerprints import fingerprint

    photos = sorted((PHOTOS / "daisy").iterdir())
    rows = np.stack([fingerprint(Image.open(p).convert("RGB")) for p in photos])
    _near_copy(photos[0], tmp_path / "c.jpg", shrink=0.6, quality=50)
    copy = fingerprint(Image.open(tmp_path / "c.jpg").convert("RGB"))
    bits, layout = rows[:, 4:68] > 0.5, rows[:, 68:]
    assert (bits[0] != (copy[4:68] > 0.5)).sum() <= MAX_HASH_DISTANCE and layout[0] @ copy[68:] >= MIN_LAYOUT
    distance = (bits[:, None] != bits[None]).sum(2)
    same = (distance <= MAX_HASH_DISTANCE) & (layout @ layout.T >= MIN_LAYOUT)
    assert same.sum() == len(photos)  # each photo matches itself only


def test_near_duplicate_search_finds_every_close_pair_once():
    """The packed search over blocks of hashes finds exactly the pairs a comparison of every pair finds."""
    from imgclf.checks import copies
    from imgclf.checks.data import CheckData
    from imgclf.checks.fingerprints import Fingerprints

    rng = np.random.default_rng(3)
    n = copies._BLOCK * 2 + 37  # pairs within a block and across blocks
    bits = rng.random((n, 64)) < 0.5
    layout = rng.normal(size=(n, 64))
    twins = rng.choice(n, size=(60, 2), replace=False)
    for a, b in twins:  # a few flipped bits and a nudged layout: copies (some beyond the hash distance)
        bits[b] = bits[a] ^ (rng.random(64) < rng.choice([0.05, 0.3]))
        layout[b] = layout[a] + 0.1 * rng.normal(size=64)
    layout /= np.linalg.norm(layout, axis=1, keepdims=True)
    rows = np.concatenate([np.full((n, 2), 300.0), np.full((n, 2), 50.0), bits, layout], 1).astype(np.float32)
    data = CheckData([f"p{i:04d}" for i in range(n)], np.array(["a"] * n, object), np.array(["train"] * n, object),
                     [str(i) for i in range(n)], np.eye(n, 8, dtype=np.float32), Fingerprints.from_rows(rows), ["a"])
    distance = (bits[:, None] != bits[None]).sum(2)
    close = (distance <= copies.MAX_HASH_DISTANCE) & (layout @ layout.T >= copies.MIN_LAYOUT)
    expected = {(f"p{j:04d}", f"p{i:04d}") for i, j in zip(*np.nonzero(np.triu(close, 1)))}
    found = copies.near_duplicates(data)
    assert {(f.path, f.other) for f in found} == expected and 20 < len(expected) < 60


def test_label_errors_need_a_confident_other_label():
    from imgclf.checks.data import CheckData
    from imgclf.checks.fingerprints import Fingerprints
    from imgclf.checks.labels import label_errors

    probs = np.array([[0.9, 0.1], [0.25, 0.75], [0.2, 0.8], [0.6, 0.4]], np.float32)
    y = np.array([0, 0, 1, 1])
    x = np.eye(4, dtype=np.float32)
    data = CheckData([f"p{i}" for i in range(4)], np.array(["a", "a", "b", "b"], object), np.array(["train"] * 4, object),
                     [str(i) for i in range(4)], x, Fingerprints.from_rows(np.zeros((4, 132), np.float32)), ["a", "b"])
    found = label_errors(data, np.arange(4), y, probs, ["a", "b"])
    assert [(f.path, f.suggested) for f in found] == [("p1", "b")]  # p3's margin 0.2 is below 0.4; p0 and p2 agree
    assert found[0].score == pytest.approx(0.5, abs=1e-6)


def test_train_runs_the_checks_into_metrics_and_report(trained_model):
    metrics = json.loads((trained_model / "metrics.json").read_text())
    check = metrics["check"]
    assert set(check["counts"]) == {"unreadable", "exact_duplicate", "near_duplicate", "label_error", "missing_label",
                                    "extra_label", "outlier", "too_small", "blurry", "near_uniform", "imbalance",
                                    "confused_labels"}
    assert check["photos"] == sum(sum(c.values()) for c in metrics["counts"].values())
    assert check["thresholds"]["near_duplicate"]["max_hash_distance"] == 12
    page = (trained_model / "report.html").read_text()
    assert 'id="check"' in page and "Photos to check" in page
    assert sorted(check["labels"]) == LABELS


def test_a_second_check_of_the_same_photos_comes_from_the_cache(tmp_path, cache_dir, monkeypatch):
    """Label-level findings included: re-training on the same photos must not fit the out-of-fold heads again."""
    import imgclf
    from imgclf.checks import labels

    data = copy_photos(tmp_path / "photos", per_label=8)
    first = imgclf.check(data, cache_dir=cache_dir)
    assert first.of_kind("confused_labels") or first.of_kind("label_error")

    def refit(*_a, **_k):
        raise AssertionError("the checks ran again")

    monkeypatch.setattr(labels, "label_findings", refit)
    second = imgclf.check(data, cache_dir=cache_dir)
    assert [f.to_dict() for f in second.findings] == [f.to_dict() for f in first.findings]


def test_label_level_findings_imbalance_and_confused_pairs():
    from imgclf.checks.labels import confused, imbalance_findings

    assert imbalance_findings({"cats": 30, "dogs": 12}) == []  # 2.5x: within the ratio
    (found,) = imbalance_findings({"cats": 30, "dogs": 9, "owls": 20})
    assert found.kind == "imbalance" and found.label == "dogs" and found.score == pytest.approx(30 / 9) and found.path is None
    y = np.array([0] * 10 + [1] * 10 + [2] * 10)
    guess = y.copy()
    guess[:2] = 1  # two cats taken for dogs: 2 of 20 photos of the pair (10 %)
    probs = np.eye(3, dtype=np.float32)[guess]
    (pair,) = confused(y, probs, ["cats", "dogs", "owls"])
    assert pair.labels == ["cats", "dogs"] and pair.score == pytest.approx(0.1) and "2 photos of cats look like dogs" in pair.reason


def test_every_kind_of_finding_has_a_title_on_the_pages():
    from imgclf.checks.findings import KINDS
    from imgclf.report.findings import _TITLES

    assert set(_TITLES) == set(KINDS)
