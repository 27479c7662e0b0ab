"""End to end through the real command line, on the bundled photos and the real backbone."""

import csv
import io
import json
import re
import os

import pytest
from PIL import Image, ImageOps

from tests.conftest import LABELS, PHOTOS, UNSEEN, copy_photos, run_cli


def test_train_writes_a_self_contained_model(trained_model):
    names = {p.name for p in trained_model.iterdir()}
    assert {"model.onnx", "labels.json", "imgclf.json", "metrics.json", "README.md"} <= names
    assert json.loads((trained_model / "labels.json").read_text()) == LABELS
    meta = json.loads((trained_model / "imgclf.json").read_text())
    assert meta["backbone"]["name"] == "efficientnet_lite0"
    assert meta["preprocessing"]["input_size"] == 224 and meta["preprocessing"]["interpolation"] == "bicubic"
    metrics = json.loads((trained_model / "metrics.json").read_text())
    assert sum(sum(c.values()) for c in metrics["counts"].values()) == 70
    assert metrics["test"]["n"] > 0 and 0.5 <= metrics["test"]["accuracy"] <= 1.0
    card = (trained_model / "README.md").read_text()
    assert "daisy" in card and "test accuracy" in card


def test_train_summary_and_cache_hits(tmp_path, cache_dir, trained_model):
    data = copy_photos(tmp_path / "data", per_label=6)
    first = run_cli("train", str(data), "-o", str(tmp_path / "m"))
    assert first.returncode == 0, first.stderr
    out = first.stdout
    for lab in LABELS:
        assert lab in out
    assert "validation accuracy" in out and "test accuracy" in out and str(tmp_path / "m") in out
    # The 30 photos are a subset of the session model's photos (trained_model filled the cache): all cached already.
    assert "0 computed, 30 from cache" in out
    mirrored = ImageOps.mirror(Image.open(next((PHOTOS / "daisy").iterdir())).convert("RGB"))
    mirrored.putpixel((0, 0), tuple(os.urandom(3)))  # new content even for a cache kept between runs
    mirrored.save(data / "daisy" / "new.png")  # new content: one new embedding
    second = run_cli("train", str(data), "-o", str(tmp_path / "m"))
    assert second.returncode == 0, second.stderr
    assert "1 computed, 30 from cache" in second.stdout


def test_predict_json_contract(trained_model):
    r = run_cli("predict", str(trained_model), str(UNSEEN), "--format", "json", "--top-k", "3")
    assert r.returncode == 0, r.stderr
    preds = json.loads(r.stdout)
    assert len(preds) == 10
    correct = 0
    for p in preds:
        assert list(p) == ["path", "status", "label", "confidence", "similarity", "top_k", "error"]
        assert p["status"] in ("ok", "unknown") and p["error"] is None
        assert (p["label"] == "unknown") == (p["status"] == "unknown")
        assert 0.0 <= p["confidence"] <= 1.0
        assert len(p["top_k"]) == 3 and p["top_k"][0]["confidence"] == p["confidence"]
        assert p["status"] == "unknown" or p["top_k"][0]["label"] == p["label"]
        assert [t["confidence"] for t in p["top_k"]] == sorted((t["confidence"] for t in p["top_k"]), reverse=True)
        assert {t["label"] for t in p["top_k"]} <= set(LABELS)
        assert -1 <= p["similarity"] <= 1
        correct += p["top_k"][0]["label"] in p["path"]
    assert correct >= 6, f"only {correct}/10 unseen photos right"


def test_one_shape_for_json_jsonl_csv_and_http(trained_model, tmp_path):
    """``predict -f json``, ``predict -o x.jsonl``, ``-o x.csv`` and the HTTP API give the same rows."""
    from fastapi.testclient import TestClient

    from imgclf.runtime.prediction import csv_header, csv_row
    from imgclf.serve.app import create_app

    bad = tmp_path / "in" / "broken.jpg"
    bad.parent.mkdir()
    bad.write_bytes(b"\xff\xd8 not really")
    photos = sorted(UNSEEN.glob("roses/*"))[:2] + [bad]
    printed = json.loads(run_cli("predict", str(trained_model), *map(str, photos), "-f", "json").stdout)
    assert {p["status"] for p in printed[:2]} <= {"ok", "unknown"} and printed[2]["status"] == "error" and printed[2]["error"]
    assert run_cli("predict", str(trained_model), *map(str, photos), "-o", str(tmp_path / "p.jsonl")).returncode == 0
    streamed = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert streamed == printed
    assert run_cli("predict", str(trained_model), *map(str, photos), "-o", str(tmp_path / "p.csv")).returncode == 0
    expected = [csv_header(3), *(csv_row(r, 3) for r in printed)]  # every row as long as the header, an error's too
    assert (tmp_path / "p.csv").read_text() == "\n".join(",".join(c) for c in expected) + "\n"
    with TestClient(create_app(trained_model)) as client:
        for photo, want in zip(photos[:2], printed):
            got = client.post("/predict", files={"file": (photo.name, photo.read_bytes())}).json()
            assert got == {**want, "path": photo.name}


def test_predict_csv_and_table(trained_model):
    photo = next((UNSEEN / "tulips").iterdir())
    r = run_cli("predict", str(trained_model), str(photo), "--format", "csv", "-k", "2")
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert r.returncode == 0 and len(rows) == 1
    assert rows[0]["path"] == str(photo) and rows[0]["label"] in LABELS and rows[0]["top2_label"] in LABELS
    t = run_cli("predict", str(trained_model), str(UNSEEN), env={"COLUMNS": "80"})  # a folder: paths shown relative to it
    assert t.returncode == 0 and max(map(len, t.stdout.splitlines())) <= 80
    shown = f"{photo.parent.name}/{photo.name}"
    from imgclf.cli.render import PATH_WIDTH, _shortened

    shown = _shortened(shown, PATH_WIDTH)  # too long: the label folder, then the name's start and end
    row = next(line for line in t.stdout.splitlines() if line.startswith(shown + " "))
    cells = re.split(r"\s{2,}", row.strip())
    want = rows[0]["label"] if rows[0]["label"] != "unknown" else f"unknown ({rows[0]['top1_label']}?)"
    assert cells[1] == want  # the label in its own column, not just somewhere
    assert cells[2] == f"{100 * float(rows[0]['confidence']):.1f}%"
    assert str(UNSEEN) not in t.stdout


@pytest.mark.parametrize("fmt", ["table", "json"])
def test_predict_loads_only_what_it_uses(trained_model, fmt):
    """No torch, no training code, no server, no pydantic, and no Rich even for the table."""
    code = (
        "import sys; from imgclf.cli import main; sys.argv=['imgclf','predict',sys.argv[1],sys.argv[2],'-f',sys.argv[3]]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "bad = [m for m in ('torch', 'timm', 'sklearn', 'onnx', 'scipy', 'pydantic', 'rich', 'fastapi', 'typer',\n"
        "                   'imgclf.training', 'imgclf.heads.linear', 'imgclf.heads.rejection') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", code, str(trained_model), str(UNSEEN), fmt], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_evaluate_json_contract(trained_model, tmp_path):
    data = tmp_path / "eval"
    copy_photos(data, per_label=1)
    for f in UNSEEN.glob("*/*"):
        (data / f.parent.name / f.name).write_bytes(f.read_bytes())
    (data / "orchids").mkdir()
    (data / "orchids" / "x.jpg").write_bytes(next(UNSEEN.glob("daisy/*")).read_bytes())
    out = tmp_path / "eval.json"
    r = run_cli("evaluate", str(trained_model), str(data), "--json", str(out))
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert res["n"] == 15 and res["labels"] == LABELS
    assert res["unknown_labels"] == ["orchids"]
    cm = res["confusion_matrix"]
    assert [sum(row) for row in cm] == [res["per_class"][lab]["support"] for lab in LABELS] == [3] * 5
    assert abs(res["accuracy"] - sum(cm[i][i] for i in range(5)) / 15) < 1e-6
    assert len(res["misclassified"]) == 15 - sum(cm[i][i] for i in range(5))
    for m in res["misclassified"]:
        assert set(m) >= {"path", "label", "predicted", "confidence"} and m["label"] != m["predicted"]
    for lab, pc in res["per_class"].items():
        assert set(pc) == {"precision", "recall", "f1", "support"}
    assert "accuracy" in r.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("train", "/nonexistent/photos", "-o", "/tmp/x"),
        ("predict", "/nonexistent/model", str(PHOTOS)),
        ("evaluate", "/nonexistent/model", str(PHOTOS)),
    ],
)
def test_user_mistakes_exit_2_with_one_line(args, cache_dir):
    r = run_cli(*args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr


def test_predict_missing_file_exits_2(trained_model):
    r = run_cli("predict", str(trained_model), "/nonexistent.jpg")
    assert r.returncode == 2 and r.stderr.startswith("error: no such file")


def test_debug_shows_traceback(cache_dir):
    r = run_cli("--debug", "train", "/nonexistent/photos", "-o", "/tmp/x")
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_predict_and_evaluate_take_tta(trained_model, tmp_path):
    plain = json.loads(run_cli("predict", str(trained_model), str(UNSEEN), "--format", "json").stdout)
    result = run_cli("predict", str(trained_model), str(UNSEEN), "--format", "json", "--tta")
    assert result.returncode == 0, result.stderr
    tta = json.loads(result.stdout)
    assert [p["path"] for p in tta] == [p["path"] for p in plain]
    assert any(abs(a["confidence"] - b["confidence"]) > 1e-4 for a, b in zip(tta, plain))
    out = tmp_path / "e.json"
    assert run_cli("evaluate", str(trained_model), str(UNSEEN), "--tta", "--json", str(out)).returncode == 0
    assert json.loads(out.read_text())["tta"] == "flip"
    refused = run_cli("predict", str(trained_model), str(UNSEEN), "--tta", "--output", str(tmp_path / "p.csv"))
    assert refused.returncode == 2 and "--tta works with the local engine" in refused.stderr
