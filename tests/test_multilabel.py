"""Several labels per photo: manifests and shared label folders, the heads and thresholds, every answer's shape, the
report, checks, exports and the server, on real photos and collages of them with the real backbone."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from imgclf.data.manifest import read_manifest
from imgclf.errors import ImgclfError
from imgclf.heads import sigmoid
from imgclf.runtime.model import Model
from tests.conftest import EXAMPLE, LABELS, PHOTOS, UNSEEN, run_cli


@pytest.fixture(scope="module")
def model(multilabel_model) -> Model:
    return Model.load(multilabel_model)


@pytest.fixture(scope="module")
def unseen_rows(multilabel_model, multilabel_data) -> list[dict]:
    """``predict -f json`` of the unseen collages (two labels each) and the unseen single photos (one label each)."""
    r = run_cli("predict", str(multilabel_model), str(multilabel_data / "unseen"), str(UNSEEN), "-f", "json", "--top-k", "5")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _truth(path: str) -> set[str]:
    name = Path(path)
    return set(name.stem.split("+")) if "+" in name.stem else {name.parent.name}


# --- answers --------------------------------------------------------------------------------------------


def test_collages_get_several_labels_and_single_photos_one(unseen_rows):
    collages = [r for r in unseen_rows if "+" in Path(r["path"]).stem]
    singles = [r for r in unseen_rows if "+" not in Path(r["path"]).stem]
    assert len(collages) == 5 and len(singles) == 10
    for r in unseen_rows:
        assert r["status"] in ("ok", "none", "unknown")
        assert [a["label"] for a in r["labels"]] == sorted((a["label"] for a in r["labels"]),
                                                            key=lambda lab: -dict((t["label"], t["confidence"]) for t in r["top_k"])[lab])
    # each collage shows two flowers: one of them is answered for nearly all, and more labels than for a single photo
    assert sum(bool(_truth(r["path"]) & {a["label"] for a in r["labels"]}) for r in collages) >= 4
    assert np.mean([len(r["labels"]) for r in collages]) >= 1.4
    assert np.mean([len(r["labels"]) for r in singles]) <= 1.3
    # a photo's own labels rank above the others (average precision over the unseen photos)
    truth = np.array([[lab in _truth(r["path"]) for lab in LABELS] for r in unseen_rows])
    probs = np.array([[dict((t["label"], t["confidence"]) for t in r["top_k"])[lab] for lab in LABELS] for r in unseen_rows])
    assert sigmoid.mean_average_precision(truth, probs) >= 0.8


def test_an_answer_is_each_label_over_its_threshold(model, multilabel_data):
    preds = model.predict([multilabel_data / "unseen"], top_k=5)
    for p in preds:
        probs = {t["label"]: t["confidence"] for t in p.top_k}
        over = {lab for lab, t in zip(model.labels, model.label_thresholds) if probs[lab] >= t}
        assert {a["label"] for a in p.labels} == over
        if over:
            assert p.status == "ok" and p.label == p.labels[0]["label"] and p.confidence == p.labels[0]["confidence"]
        else:
            assert (p.status, p.label, p.labels) == ("none", "none", [])


def test_photos_of_nothing_known_are_none_or_unknown(model):
    preds = [p for p in model.predict([EXAMPLE.parent / "not-flowers"]) if p.status != "error"]
    assert len(preds) >= 10
    assert np.mean([p.status in ("none", "unknown") for p in preds]) >= 0.8


def test_every_output_format_has_the_same_row_shape(multilabel_model, multilabel_data, tmp_path):
    photos = [str(multilabel_data / "unseen"), str(EXAMPLE / "LICENSE.txt")]  # a collage folder and a file that is no photo
    rows = json.loads(run_cli("predict", multilabel_model.as_posix(), *photos, "-f", "json").stdout)
    error = next(r for r in rows if r["status"] == "error")
    assert error["labels"] == [] and all("labels" in r for r in rows)
    text = run_cli("predict", str(multilabel_model), *photos, "-f", "csv").stdout
    table = list(csv.reader(io.StringIO(text)))
    assert table[0][-2:] == ["labels", "labels_confidence"] and all(len(row) == len(table[0]) for row in table)
    for row, r in zip(table[1:], rows):
        assert row[-2] == ";".join(a["label"] for a in r["labels"])
    parquet = ("parquet",) if importlib.util.find_spec("pyarrow") else ()  # the ray extra; .ci/run installs it
    for suffix in ("jsonl", "csv", *parquet):
        out = tmp_path / f"rows.{suffix}"
        r = run_cli("predict", str(multilabel_model), *photos, "-o", str(out))
        assert r.returncode == 0, r.stderr
        if suffix == "jsonl":
            written = [json.loads(line) for line in out.read_text().splitlines()]
        elif suffix == "csv":
            written = list(csv.DictReader(out.open()))
            assert [w["labels"] for w in written] == [";".join(a["label"] for a in r["labels"]) for r in rows]
            continue
        else:
            import pyarrow.parquet as pq

            written = pq.read_table(out).to_pylist()
        assert [[a["label"] for a in w["labels"]] for w in written] == [[a["label"] for a in r["labels"]] for r in rows]


def test_the_table_names_every_answered_label(multilabel_model, multilabel_data):
    r = run_cli("predict", str(multilabel_model), str(multilabel_data / "unseen"), env={"COLUMNS": "100"})
    assert r.returncode == 0, r.stderr
    rows = json.loads(run_cli("predict", str(multilabel_model), str(multilabel_data / "unseen"), "-f", "json").stdout)
    for row in rows:
        line = next(x for x in r.stdout.splitlines() if x.startswith(Path(row["path"]).name))
        if len(row["labels"]) > 1:
            block = r.stdout[r.stdout.index(line):].split("\n" + Path(rows[-1]["path"]).name)[0]
            assert all(f"{a['label']} {100 * a['confidence']:.0f}%" in " ".join(block.split()) for a in row["labels"])


def test_explain_draws_a_map_per_answered_label(multilabel_model, multilabel_data, tmp_path):
    r = run_cli("predict", str(multilabel_model), str(multilabel_data / "unseen"), "--explain", str(tmp_path / "maps"), "-f", "json")
    assert r.returncode == 0, r.stderr
    for row in json.loads(r.stdout):
        maps = row["explanation"]["maps"]
        assert [m["label"] for m in maps] == ([a["label"] for a in row["labels"]] or [row["top_k"][0]["label"]])
        assert all(Path(m["heatmap"]).is_file() for m in maps) and len({m["heatmap"] for m in maps}) == len(maps)
    # the collage of roses (left) and tulips (right): each map peaks on its own half
    row = next(x for x in json.loads(r.stdout) if Path(x["path"]).stem == "roses+tulips")
    peaks = {m["label"]: m["peak"][0] for m in row["explanation"]["maps"]}
    assert peaks.get("roses", 0) < 224 <= peaks.get("tulips", 448)


# --- training input -------------------------------------------------------------------------------------


def test_json_lines_and_label_folders_train_the_same_photos(multilabel_model, multilabel_data, tmp_path):
    rows = list(csv.DictReader((multilabel_data / "labels.csv").open()))
    (multilabel_data / "labels.jsonl").write_text("".join(
        json.dumps({"path": r["path"], "labels": r["labels"].split(";")}) + "\n" for r in rows))
    out = tmp_path / "from-jsonl"
    r = run_cli("train", str(multilabel_data), "--labels", str(multilabel_data / "labels.jsonl"), "-o", str(out), "-q")
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "imgclf.json").read_text())["multi_label"]["thresholds"] == \
        json.loads((multilabel_model / "imgclf.json").read_text())["multi_label"]["thresholds"]
    # the same photos as label folders: a collage sits in the folder of each label it shows
    folders = tmp_path / "folders"
    for r in rows:
        for lab in r["labels"].split(";"):
            (folders / lab).mkdir(parents=True, exist_ok=True)
            shutil.copy(multilabel_data / r["path"], folders / lab / Path(r["path"]).name.replace("/", "-"))
    out2 = tmp_path / "from-folders"
    r = run_cli("train", str(folders), "--multi-label", "-o", str(out2), "-q")
    assert r.returncode == 0, r.stderr
    metrics = json.loads((out2 / "metrics.json").read_text())
    assert metrics["photos"] == json.loads((multilabel_model / "metrics.json").read_text())["photos"]
    assert "copies of another photo" in " ".join(metrics["warnings"])
    assert metrics["counts"] == {lab: {"photos": 30} for lab in LABELS}


def test_a_photo_with_no_label_is_a_negative(multilabel_data, tmp_path):
    manifest = tmp_path / "labels.csv"
    negatives = sorted((EXAMPLE.parent / "not-flowers").glob("*.jpg"))[:8]
    (multilabel_data / "negatives").mkdir(exist_ok=True)
    for f in negatives:
        shutil.copy(f, multilabel_data / "negatives" / f.name)
    manifest.write_text((multilabel_data / "labels.csv").read_text() + "".join(f"negatives/{f.name},\n" for f in negatives))
    tagged = read_manifest(multilabel_data, manifest)
    assert sum(not p.labels for p in tagged.photos) == 8 and tagged.labels == LABELS


@pytest.mark.parametrize("text, line, words", [
    ("path,labels\nphotos/daisy/nope.jpg,daisy\n", 2, "no file 'photos/daisy/nope.jpg'"),
    ("path,labels,colour\n", 1, "unknown column 'colour'"),
    ("path,labels\n{photo},daisy;;roses\n", 2, "an empty label"),
    ("path,labels\n{photo},daisy\n{photo},roses\n", 3, "listed already on line 2"),
    ("path,labels\n../outside.jpg,daisy\n", 2, "not a path inside the data folder"),
    ("path,labels,split\n{photo},daisy,later\n", 2, "split 'later'"),
    ("path,labels\n{photo},daisy,roses\n", 2, "separate labels with ';'"),
    ('{"path": "{photo}", "labels": "daisy"}\n', 1, "a list of strings"),
    ('{"path": "{photo}", "labels": ["daisy"], "colour": 1}\n', 1, "unknown key 'colour'"),
    ('{"path": "{photo}", "labels": ["daisy"]}\nnot json\n', 2, "not a JSON object"),
])
def test_bad_rows_are_named_by_line_and_nothing_is_trained(multilabel_data, tmp_path, text, line, words):
    photo = "photos/daisy/" + sorted(p.name for p in (PHOTOS / "daisy").iterdir())[0]
    manifest = tmp_path / ("labels.jsonl" if text.startswith("{") else "labels.csv")
    manifest.write_text(text.replace("{photo}", photo))
    with pytest.raises(ImgclfError, match=f"line {line}: .*{words[:20]}"):
        read_manifest(multilabel_data, manifest)
    r = run_cli("train", str(multilabel_data), "--labels", str(manifest), "-o", str(tmp_path / "m"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert f"line {line}" in r.stderr and not (tmp_path / "m").exists()


def test_options_that_do_not_apply_are_refused_in_one_line(multilabel_data, tmp_path):
    for args, words in ((["--multi-label", "--augment", "2"], "--augment is not available"),
                        (["--min-precision", "0.9"], "--min-precision sets the thresholds"),
                        (["--multi-label", "--min-precision", "1.5"], "between 0 and 1")):
        r = run_cli("train", str(PHOTOS), *args, "-o", str(tmp_path / "m"))
        assert r.returncode == 2 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


# --- heads, thresholds, metrics ---------------------------------------------------------------------------


def test_heads_match_scikit_learn_and_average_precision_matches():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 40)).astype(np.float32)
    Y = (x[:, :3] + rng.normal(scale=0.5, size=(120, 3)) > 0.3).astype(int)
    heads = sigmoid.fit(x, Y, C=10.0, balanced=False)
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    for k in range(3):
        ref = LogisticRegression(C=10.0, max_iter=10000, tol=1e-10).fit(u, Y[:, k]).predict_proba(u)[:, 1]
        assert np.abs(heads.probabilities(x)[:, k] - ref).max() < 2e-3
        assert sigmoid.average_precision(Y[:, k], ref) == pytest.approx(average_precision_score(Y[:, k], ref), abs=1e-9)


def test_thresholds_give_the_best_f1_or_the_precision_asked_for():
    probs = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2])[:, None]
    truth = np.array([1, 1, 0, 1, 0, 1, 0, 0])[:, None]
    best = sigmoid.thresholds(probs, truth)[0]
    assert 0.6 < best <= 0.7 or 0.3 < best <= 0.4  # F1 0.857 answering the top four, or the top six
    f1 = lambda t: 2 * ((probs[:, 0] >= t) & (truth[:, 0] > 0)).sum() / ((probs[:, 0] >= t).sum() + truth.sum())  # noqa: E731
    assert f1(best) == max(f1(t) for t in probs[:, 0])
    strict = sigmoid.thresholds(probs, truth, min_precision=0.99)[0]
    assert 0.8 < strict <= 0.9  # only the top two are all right
    assert sigmoid.thresholds(probs, np.zeros_like(truth))[0] == 1.0  # a label without photos is never answered


def test_min_precision_raises_precision_on_the_estimate(multilabel_model, multilabel_data, tmp_path):
    out = tmp_path / "precise"
    r = run_cli("train", str(multilabel_data), "--labels", str(multilabel_data / "labels.csv"), "--min-precision", "0.95",
                "-o", str(out), "-q")
    assert r.returncode == 0, r.stderr
    loose = json.loads((multilabel_model / "metrics.json").read_text())["multi_label"]["per_label"]
    strict = json.loads((out / "metrics.json").read_text())["multi_label"]["per_label"]
    assert np.mean([strict[lab]["precision"]["value"] for lab in LABELS]) > np.mean([loose[lab]["precision"]["value"] for lab in LABELS])
    meta = json.loads((out / "imgclf.json").read_text())["multi_label"]
    assert meta["min_precision"] == 0.95 and "0.95" in meta["rule"]


def test_the_estimate_and_report_cover_every_label(multilabel_model):
    m = json.loads((multilabel_model / "metrics.json").read_text())["multi_label"]
    assert m["photos"] == 110 and "nested" in m["method"]
    assert set(m["per_label"]) == set(LABELS)
    for row in m["per_label"].values():
        for key in ("precision", "recall"):
            lo, hi = row[key]["interval"]
            assert lo <= row[key]["value"] <= hi and row[key]["n"] > 0
        assert 0 <= row["average_precision"] <= 1 and row["calibration_error"] < 0.2
    assert 0.85 <= m["mean_average_precision"] <= 1 and m["exact_set"]["n"] == 110 and m["hamming_loss"]["n"] == 550
    page = (multilabel_model / "report.html").read_text()
    assert "Each label" in page and "What each label missed and added" in page and "Photos to check" in page
    assert all(f"<td>{lab}</td>" in page for lab in LABELS)
    card = (multilabel_model / "README.md").read_text()
    assert "several labels per photo" in card and "| daisy |" in card


def test_evaluate_measures_a_manifest(multilabel_model, multilabel_data, tmp_path):
    r = run_cli("evaluate", str(multilabel_model), str(multilabel_data), "--labels", str(multilabel_data / "unseen.csv"),
                "--json", str(tmp_path / "e.json"), "--report", str(tmp_path / "e.html"))
    assert r.returncode == 0, r.stderr
    got = json.loads((tmp_path / "e.json").read_text())
    assert got["n"] == 5 and got["multi_label"]["per_label"]["daisy"]["photos"] == 2
    assert "exactly the right labels" in r.stdout and (tmp_path / "e.html").is_file()


def test_check_finds_a_missing_and_an_extra_label(multilabel_data, tmp_path):
    rows = (multilabel_data / "labels.csv").read_text().splitlines()
    collage = next(i for i, r in enumerate(rows) if r.startswith("collages/03.jpg"))
    first, second = rows[collage].split(",")[1].split(";")
    rows[collage] = f"collages/03.jpg,{first}"  # a collage that lost one of its two labels
    daisy = next(i for i, r in enumerate(rows) if r.startswith("photos/daisy/"))
    rows[daisy] += ";tulips"  # a daisy photo that gained one
    manifest = tmp_path / "wrong.csv"
    manifest.write_text("\n".join(rows) + "\n")
    r = run_cli("check", str(multilabel_data), "--labels", str(manifest), "--json", str(tmp_path / "found.json"),
                "--report", str(tmp_path / "found.html"))
    assert r.returncode == 0, r.stderr
    page = (tmp_path / "found.html").read_text()
    assert "Labels a photo probably lacks" in page and "Labels a photo probably should not have" in page
    found = json.loads((tmp_path / "found.json").read_text())["findings"]
    missing = [f for f in found if f["kind"] == "missing_label"]
    extra = [f for f in found if f["kind"] == "extra_label"]
    assert any(f["path"].endswith("collages/03.jpg") and f["label"] == second for f in missing[:3])
    assert any(f["path"].endswith(rows[daisy].split(",")[0]) and f["label"] == "tulips" for f in extra[:3])


# --- the model folder and where it runs --------------------------------------------------------------------


def test_changed_thresholds_are_refused(multilabel_model, tmp_path):
    copy = tmp_path / "m"
    shutil.copytree(multilabel_model, copy)
    meta = json.loads((copy / "imgclf.json").read_text())
    meta["multi_label"]["thresholds"][0] = 0.01
    (copy / "imgclf.json").write_text(json.dumps(meta))
    with pytest.raises(ImgclfError, match="label thresholds are not what model.onnx was trained with"):
        Model.load(copy)


def test_onnx_export_carries_the_thresholds_and_answers_alike(multilabel_model, tmp_path):
    out = tmp_path / "several.onnx"
    r = run_cli("export", str(multilabel_model), "--format", "onnx", "-o", str(out))
    assert r.returncode == 0, r.stderr
    side = json.loads(Path(str(out) + ".json").read_text())
    meta = json.loads((multilabel_model / "imgclf.json").read_text())
    assert list(side["label_thresholds"].values()) == meta["multi_label"]["thresholds"]
    assert side["parity"]["max_probability_diff"] <= 1e-3


def test_the_server_answers_several_labels(multilabel_model, multilabel_data, tmp_path):
    import httpx

    from tests.test_serve import running_server

    collage = multilabel_data / "unseen" / "roses+tulips.jpg"
    want = json.loads(run_cli("predict", str(multilabel_model), str(collage), "-f", "json").stdout)[0]
    with running_server(multilabel_model, tmp_path / "server.log") as (url, _):
        got = httpx.post(url + "/predict", files={"file": (collage.name, collage.read_bytes(), "image/jpeg")}, timeout=60).json()
        batch = httpx.post(url + "/predict/batch", files=[("files", (collage.name, collage.read_bytes(), "image/jpeg")),
                                                           ("files", ("x.jpg", b"not a photo", "image/jpeg"))], timeout=60).json()
        model = httpx.get(url + "/model", timeout=10).json()
    assert [a["label"] for a in got["labels"]] == [a["label"] for a in want["labels"]]
    for a, b in zip(got["labels"], want["labels"]):
        assert a["confidence"] == pytest.approx(b["confidence"], abs=2e-5)
    assert batch[0]["labels"] == got["labels"] and batch[1]["status"] == "error" and batch[1]["labels"] == []
    assert model["multi_label"]["thresholds"] == json.loads((multilabel_model / "imgclf.json").read_text())["multi_label"]["thresholds"]


@pytest.mark.slow
def test_tflite_export_answers_as_the_model_does(multilabel_model, tmp_path):
    pytest.importorskip("onnx2tf")
    out = tmp_path / "several.tflite"
    r = run_cli("export", str(multilabel_model), "--format", "tflite", "-o", str(out))
    assert r.returncode == 0, r.stderr
    side = json.loads(Path(str(out) + ".json").read_text())
    assert side["parity"]["max_probability_diff"] <= 1e-3 and side["parity"]["top1_agreement"] >= 0.995
    assert list(side["label_thresholds"]) == LABELS and "views" in side["preprocessing"]


def test_one_label_photos_trained_as_several_answer_as_the_one_label_model(trained_model, tmp_path):
    out = tmp_path / "as-several"
    r = run_cli("train", str(PHOTOS), "--multi-label", "-o", str(out), "-q")
    assert r.returncode == 0, r.stderr
    single = json.loads(run_cli("predict", str(trained_model), str(UNSEEN), "-f", "json").stdout)
    several = json.loads(run_cli("predict", str(out), str(UNSEEN), "-f", "json").stdout)
    truth = [Path(r["path"]).parent.name for r in single]
    right = lambda rows: sum(r["top_k"][0]["label"] == t for r, t in zip(rows, truth))  # noqa: E731
    assert right(several) >= right(single)
    assert sum(t in {a["label"] for a in r["labels"]} for r, t in zip(several, truth)) >= 9
    assert np.mean([len(r["labels"]) for r in several]) <= 1.5


def test_the_python_api_has_the_same_verbs(multilabel_model, multilabel_data):
    import imgclf

    result = imgclf.evaluate(multilabel_model, multilabel_data, labels_file=multilabel_data / "unseen.csv")
    assert result["n"] == 5 and set(result["multi_label"]["per_label"]) == set(LABELS)
    with pytest.raises(ImgclfError, match="--tta is for models of one label per photo"):
        imgclf.evaluate(multilabel_model, multilabel_data, labels_file=multilabel_data / "unseen.csv", tta=True)
    found = imgclf.check(multilabel_data, labels_file=multilabel_data / "labels.csv")
    assert found.photos == 110 and set(found.counts()) >= {"missing_label", "extra_label"}
    preds = imgclf.load(multilabel_model).predict([multilabel_data / "unseen" / "roses+tulips.jpg"])
    assert [a["label"] for a in preds[0].labels] == ["roses", "tulips"]
